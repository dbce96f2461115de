"""Frame encoding and JSON sizes (daemon/realtime/frames.py): size limits count the UTF-8 JSON
a frame carries, not JSON with non-ASCII escaped."""

from __future__ import annotations

import math

import pytest

from daemon.errors import InvalidInput
from daemon.realtime.frames import Frame, check_payload, encode_frame, json_size


@pytest.mark.parametrize(
    ("text", "utf8_bytes"),
    [("a", 1), ("é", 2), ("中", 3), ("\U0001f600", 4)],
)
def test_json_size_counts_utf8_bytes(text: str, utf8_bytes: int) -> None:
    assert json_size("cursor", text * 3000) == 3000 * utf8_bytes + 2  # the quotes
    assert json_size("payload", {"t": text}) == len('{"t":""}') + utf8_bytes


def test_json_size_is_what_the_payload_takes_in_its_frame() -> None:
    payload = {"text": "中" * 1000, "emoji": "\U0001f600", "quote": 'a"b\\c\n'}
    empty = encode_frame(Frame("realtime:t", "broadcast", {}, "1", "1")).encode()
    frame = encode_frame(Frame("realtime:t", "broadcast", payload, "1", "1")).encode()
    assert len(frame) - len(empty) == json_size("payload", payload) - len("{}")
    assert "中".encode() in frame  # not escaped as \u4e2d


@pytest.mark.parametrize("bad", [math.nan, math.inf, object(), "\ud800"])
def test_json_size_refuses_what_is_not_json_naming_the_field(bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        json_size("cursor", {"x": bad})
    assert caught.value.field == "cursor" and "not JSON" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        check_payload("payload", {"x": bad})
    assert caught.value.field == "payload"


def test_a_frame_holding_a_number_beyond_the_double_range_is_still_a_frame() -> None:
    """The cloud's jsonb takes 1e400 (a postgres_changes record may carry it): the hint is
    decoded, its number as a WideNumber, which the store sets aside (daemon/jsonnumbers.py),
    instead of being dropped as "not JSON"; what is not JSON still is refused."""
    from daemon.jsonnumbers import WideNumber
    from daemon.realtime.frames import FrameError, decode_frame

    frame = decode_frame(
        '{"topic":"realtime:t","event":"postgres_changes","payload":{"data":{"n":1e400}},'
        '"ref":null}'
    )
    assert frame.payload == {"data": {"n": WideNumber("1e400")}}
    with pytest.raises(FrameError):
        decode_frame('{"topic":"realtime:t","event":"x","payload":{"n":1e400}')
