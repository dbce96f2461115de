"""The Phoenix socket codec (sans-I/O): vsn 1.0.0 JSON objects, vsn 2.0.0 JSON arrays and the
vsn 2.0.0 binary user-broadcast frames.

V1 (what supabase-py speaks): ``{"topic","event","payload","ref"[,"join_ref"]}`` in; out exactly
``{"topic","event","payload","ref"}`` with ``ref`` always present (``null`` for pushes): the Python
client drops a frame whose ``ref`` is missing or not a string/null.

V2 (supabase-js's default): ``[join_ref, ref, topic, event, payload]`` text frames, plus binary
frames whose first byte is the kind. Clients send kind 3 (user broadcast push)::

    [3][join_ref_len][ref_len][topic_len][event_len][meta_len][enc]
        join_ref ref topic event meta payload

and the server may answer kind 4 (user broadcast)::

    [4][topic_len][event_len][meta_len][enc] topic event meta payload

``enc`` 1 means the payload is UTF-8 JSON, 0 raw bytes. Header lengths are single bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

KIND_USER_BROADCAST_PUSH = 3
KIND_USER_BROADCAST = 4
ENCODING_BINARY = 0
ENCODING_JSON = 1


class Vsn(Enum):
    """The serializer a socket negotiated with ``?vsn=``."""

    V1 = "1.0.0"
    V2 = "2.0.0"


class FrameError(ValueError):
    """A frame the client sent does not follow the Phoenix framing (the client's fault)."""


@dataclass(frozen=True)
class Frame:
    """One Phoenix message, whatever its framing.

    ``binary_payload`` is set only for a V2 binary broadcast whose payload is raw bytes (enc 0);
    ``payload`` then holds ``{"type":"broadcast","event":…,"payload":None}``.
    """

    topic: str
    event: str
    payload: dict[str, Any]
    ref: str | None = None
    join_ref: str | None = None
    binary_payload: bytes | None = field(default=None, compare=False)
    from_binary: bool = field(default=False, compare=False)


def parse_vsn(value: str | None) -> Vsn:
    """The serializer for a ``vsn`` query value: missing means 1.0.0; 1.x and 2.x accepted."""
    if value is None or value == "":
        return Vsn.V1
    if value.startswith("1."):
        return Vsn.V1
    if value.startswith("2."):
        return Vsn.V2
    raise FrameError(f"unsupported vsn {value!r}")


def decode_text(vsn: Vsn, text: str) -> Frame:
    """Decode one text frame; raises FrameError on anything malformed."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FrameError("frame is not JSON") from exc
    if vsn is Vsn.V1:
        return _decode_v1(data)
    return _decode_v2(data)


def _decode_v1(data: Any) -> Frame:
    if not isinstance(data, dict):
        raise FrameError("a vsn 1.0.0 frame must be a JSON object")
    missing = [key for key in ("topic", "event", "payload") if key not in data]
    if missing:
        raise FrameError(f"frame lacks {', '.join(missing)}")
    return _make_frame(
        data.get("join_ref"), data.get("ref"), data["topic"], data["event"], data["payload"]
    )


def _decode_v2(data: Any) -> Frame:
    if not isinstance(data, list) or len(data) != 5:
        raise FrameError("a vsn 2.0.0 frame must be a 5-element JSON array")
    return _make_frame(*data)


def _make_frame(join_ref: Any, ref: Any, topic: Any, event: Any, payload: Any) -> Frame:
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    if not isinstance(payload, dict):
        raise FrameError("payload must be a JSON object")
    return Frame(topic, event, payload, _ref(ref), _ref(join_ref))


def _ref(value: Any) -> str | None:
    # Phoenix refs are strings; tolerate integers from hand-written clients.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FrameError("ref and join_ref must be strings or null")


def decode_binary(data: bytes) -> Frame:
    """Decode a V2 binary frame; only kind 3 (user broadcast push) is valid from a client.

    The result is the same ``broadcast`` frame a JSON client would send:
    ``payload = {"type": "broadcast", "event": <event>, "payload": <user payload>}``.
    """
    if len(data) < 7 or data[0] != KIND_USER_BROADCAST_PUSH:
        raise FrameError("only binary kind 3 (user broadcast push) frames are accepted")
    join_ref_len, ref_len, topic_len, event_len, meta_len, encoding = data[1:7]
    offset = 7
    parts: list[bytes] = []
    for length in (join_ref_len, ref_len, topic_len, event_len, meta_len):
        parts.append(data[offset : offset + length])
        offset += length
    if offset > len(data):
        raise FrameError("binary frame is shorter than its header says")
    join_ref, ref, topic, event, meta = (_utf8(p) for p in parts)
    body = data[offset:]
    payload: dict[str, Any] = {"type": "broadcast", "event": event}
    raw: bytes | None = None
    if encoding == ENCODING_JSON:
        try:
            payload["payload"] = json.loads(body)
        except ValueError as exc:
            raise FrameError("binary broadcast payload is not JSON") from exc
    elif encoding == ENCODING_BINARY:
        raw = bytes(body)
        payload["payload"] = None
    else:
        raise FrameError(f"unknown binary payload encoding {encoding}")
    if meta:
        payload["meta"] = _json_object(meta)
    return Frame(topic, "broadcast", payload, ref or None, join_ref or None, raw, True)


def _utf8(part: bytes) -> str:
    try:
        return part.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError("binary frame header field is not UTF-8") from exc


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FrameError("binary frame metadata is not JSON") from exc
    if not isinstance(value, dict):
        raise FrameError("binary frame metadata must be a JSON object")
    return value


def encode_text(vsn: Vsn, frame: Frame) -> str:
    """Encode a server frame as a text frame (V1 never carries ``join_ref``)."""
    if vsn is Vsn.V1:
        body: Any = {
            "topic": frame.topic,
            "event": frame.event,
            "payload": frame.payload,
            "ref": frame.ref,
        }
    else:
        body = [frame.join_ref, frame.ref, frame.topic, frame.event, frame.payload]
    try:  # orjson: ~10x faster on a postgres_changes payload (one per change per subscriber)
        return orjson.dumps(body).decode()
    except TypeError:  # what only json can write (integers beyond 64 bits, non-str keys)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def encode_user_broadcast(
    topic: str, event: str, payload: Any, *, raw: bytes | None = None
) -> bytes:
    """A V2 binary kind-4 frame: the user payload as JSON, or ``raw`` bytes (enc 0) when given."""
    topic_b, event_b = topic.encode(), event.encode()
    if len(topic_b) > 255 or len(event_b) > 255:
        raise FrameError("topic and event must be at most 255 bytes in a binary frame")
    if raw is not None:
        encoding, body = ENCODING_BINARY, raw
    else:
        encoding = ENCODING_JSON
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    header = bytes([KIND_USER_BROADCAST, len(topic_b), len(event_b), 0, encoding])
    return header + topic_b + event_b + body


def encode_user_broadcast_push(
    join_ref: str, ref: str, topic: str, event: str, payload: Any
) -> bytes:
    """A V2 binary kind-3 frame as realtime-js sends it (used by tests and tools)."""
    fields = [join_ref.encode(), ref.encode(), topic.encode(), event.encode(), b""]
    if any(len(f) > 255 for f in fields):
        raise FrameError("header fields must be at most 255 bytes in a binary frame")
    body = json.dumps(payload, separators=(",", ":")).encode()
    header = bytes([KIND_USER_BROADCAST_PUSH, *(len(f) for f in fields), ENCODING_JSON])
    return header + b"".join(fields) + body
