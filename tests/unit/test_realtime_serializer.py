"""The Phoenix codec: V1 objects, V2 arrays, V2 binary broadcast frames (captures of §A.1/A.2)."""

from __future__ import annotations

import json

import pytest

from devcloud.realtime.serializer import (
    Frame,
    FrameError,
    Vsn,
    decode_binary,
    decode_text,
    encode_text,
    encode_user_broadcast,
    encode_user_broadcast_push,
    parse_vsn,
)


def test_vsn_negotiation() -> None:
    assert parse_vsn(None) is Vsn.V1
    assert parse_vsn("") is Vsn.V1
    assert parse_vsn("1.0.0") is Vsn.V1
    assert parse_vsn("2.0.0") is Vsn.V2
    with pytest.raises(FrameError):
        parse_vsn("3.0.0")


def test_decode_v1_join_from_supabase_py_capture() -> None:
    text = (
        '{"event":"phx_join","payload":{"config":{"broadcast":{"ack":true,"self":true}},'
        '"access_token":"t"},"topic":"realtime:room1","ref":"1","join_ref":"1"}'
    )
    frame = decode_text(Vsn.V1, text)
    assert frame.topic == "realtime:room1" and frame.event == "phx_join"
    assert frame.ref == "1" and frame.join_ref == "1"
    assert frame.payload["access_token"] == "t"


def test_decode_v1_heartbeat_with_null_refs() -> None:
    text = '{"event":"heartbeat","payload":{},"topic":"phoenix","ref":null,"join_ref":null}'
    assert decode_text(Vsn.V1, text) == Frame("phoenix", "heartbeat", {}, None, None)


def test_decode_v2_array() -> None:
    frame = decode_text(Vsn.V2, '["6","7","realtime:room1","presence",{"event":"track"}]')
    assert frame == Frame("realtime:room1", "presence", {"event": "track"}, "7", "6")


@pytest.mark.parametrize(
    ("vsn", "text"),
    [
        (Vsn.V1, "not json"),
        (Vsn.V1, "[1,2]"),
        (Vsn.V1, '{"topic":"t","event":"e"}'),
        (Vsn.V1, '{"topic":"t","event":"e","payload":[1]}'),
        (Vsn.V1, '{"topic":1,"event":"e","payload":{}}'),
        (Vsn.V1, '{"topic":"t","event":"e","payload":{},"ref":1.5}'),
        (Vsn.V2, '{"topic":"t"}'),
        (Vsn.V2, '["1","2","t","e"]'),
    ],
)
def test_malformed_text_frames_are_rejected(vsn: Vsn, text: str) -> None:
    with pytest.raises(FrameError):
        decode_text(vsn, text)


def test_integer_refs_are_tolerated_as_strings() -> None:
    frame = decode_text(Vsn.V1, '{"topic":"t","event":"e","payload":{},"ref":3}')
    assert frame.ref == "3"


def test_encode_v1_has_exactly_four_keys_and_null_ref() -> None:
    frame = Frame("realtime:room1", "presence_state", {}, None, "1")
    assert json.loads(encode_text(Vsn.V1, frame)) == {
        "topic": "realtime:room1",
        "event": "presence_state",
        "payload": {},
        "ref": None,
    }


def test_encode_v2_array_keeps_join_ref() -> None:
    frame = Frame("realtime:room1", "phx_reply", {"status": "ok", "response": {}}, "7", "6")
    assert json.loads(encode_text(Vsn.V2, frame)) == [
        "6",
        "7",
        "realtime:room1",
        "phx_reply",
        {"status": "ok", "response": {}},
    ]


def test_decode_binary_kind3_exactly_as_realtime_js_sends_it() -> None:
    # Capture A.2: header 03 01 01 0e 06 00 01 | "6" "8" "realtime:room1" "cursor" | {"x":1}
    data = bytes([3, 1, 1, 14, 6, 0, 1]) + b"68realtime:room1cursor" + b'{"x":1}'
    frame = decode_binary(data)
    assert frame.topic == "realtime:room1" and frame.event == "broadcast"
    assert frame.join_ref == "6" and frame.ref == "8"
    assert frame.payload == {"type": "broadcast", "event": "cursor", "payload": {"x": 1}}
    assert frame.from_binary and frame.binary_payload is None
    assert encode_user_broadcast_push("6", "8", "realtime:room1", "cursor", {"x": 1}) == data


def test_decode_binary_raw_payload_and_metadata() -> None:
    header = bytes([3, 1, 0, 3, 1, 8, 0])
    frame = decode_binary(header + b"1" + b"r:x" + b"e" + b'{"id":1}' + b"\x00\xff")
    assert frame.ref is None and frame.binary_payload == b"\x00\xff"
    assert frame.payload == {"type": "broadcast", "event": "e", "payload": None, "meta": {"id": 1}}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([4, 1, 1, 1, 1, 0, 1]),  # kind 4 is server -> client only
        bytes([3, 1, 1, 14, 6, 0, 1]) + b"6",  # shorter than the header says
        bytes([3, 0, 0, 1, 1, 0, 1]) + b"te" + b"{",  # payload not JSON
        bytes([3, 0, 0, 1, 1, 0, 7]) + b"te",  # unknown encoding
        bytes([3, 0, 0, 1, 1, 2, 1]) + b"te[]{}",  # metadata not an object
    ],
)
def test_malformed_binary_frames_are_rejected(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode_binary(data)


def test_encode_kind4_matches_capture() -> None:
    # Capture A.2: 04 0e 06 00 01 "realtime:room1" "cursor" {"x":1}
    expected = bytes([4, 14, 6, 0, 1]) + b"realtime:room1cursor" + b'{"x":1}'
    assert encode_user_broadcast("realtime:room1", "cursor", {"x": 1}) == expected
    raw = encode_user_broadcast("t", "e", None, raw=b"\x01\x02")
    assert raw == bytes([4, 1, 1, 0, 0]) + b"te\x01\x02"


def test_encode_kind4_refuses_oversized_header_fields() -> None:
    with pytest.raises(FrameError):
        encode_user_broadcast("t" * 256, "e", {})
