"""ui_bridge.wire: the hot path's frames, checked against websockets' own serialisation."""

from __future__ import annotations

import pytest
from websockets.frames import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, Frame

from ui_bridge.wire import take_text_frame, text_frame

SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70000)


def client_frame(payload: bytes, opcode: object = OP_TEXT, *, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin).serialize(mask=True)  # type: ignore[arg-type]


def with_bits(frame: bytes, bits: int) -> bytes:
    """``frame`` with ``bits`` also set in its first byte (websockets refuses to make these)."""
    return bytes((frame[0] | bits,)) + frame[1:]


def payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize("size", SIZES)
def test_a_reply_frame_is_what_websockets_sends(size: int) -> None:
    data = payload(size)
    assert text_frame(data) == Frame(OP_TEXT, data).serialize(mask=False)


@pytest.mark.parametrize("size", SIZES)
def test_a_whole_masked_text_frame_is_unmasked(size: int) -> None:
    data = client_frame(payload(size))
    assert take_text_frame(data, 0, None) == (payload(size), len(data))


def test_frames_in_one_chunk_are_taken_one_after_the_other() -> None:
    first, second = client_frame(b'{"a":1}'), client_frame(payload(300))
    chunk = first + second + client_frame(b"x")[:-1]
    assert take_text_frame(chunk, 0, None) == (b'{"a":1}', len(first))
    assert take_text_frame(chunk, len(first), None) == (payload(300), len(first + second))
    assert take_text_frame(chunk, len(first + second), None) is None  # cut short


@pytest.mark.parametrize("size", (5, 200, 70000))
def test_a_frame_cut_anywhere_is_left_alone(size: int) -> None:
    data = client_frame(payload(size))
    for end in (*range(min(16, len(data))), len(data) - 1):
        assert take_text_frame(data[:end], 0, None) is None


@pytest.mark.parametrize(
    "frame",
    [
        client_frame(b"x", OP_BINARY),
        client_frame(b"x", OP_PING),
        client_frame(b"x", OP_CONT),
        client_frame(b"xxxxxx", fin=False),
        with_bits(client_frame(b"xxxxxx"), 0x40),
        with_bits(client_frame(b"xxxxxx"), 0x20),
        with_bits(client_frame(b"xxxxxx"), 0x10),
        Frame(OP_TEXT, b"unmasked").serialize(mask=False),
    ],
    ids=["binary", "ping", "continuation", "fragment", "rsv1", "rsv2", "rsv3", "unmasked"],
)
def test_anything_but_a_whole_masked_text_frame_is_left_to_websockets(frame: bytes) -> None:
    assert take_text_frame(frame, 0, None) is None


@pytest.mark.parametrize("size", (10, 126, 65536))
def test_a_payload_over_max_size_is_left_to_websockets(size: int) -> None:
    data = client_frame(payload(size))
    assert take_text_frame(data, 0, size - 1) is None
    assert take_text_frame(data, 0, size) == (payload(size), len(data))
