"""Phoenix vsn 1.0.0 JSON frames and the typed events the client reports (pure, no I/O).

A V1 frame is one JSON object. The client sends ``{"topic","event","payload","ref","join_ref"}``;
the server answers with ``{"topic","event","payload","ref"}`` (no ``join_ref``; broadcast-type
pushes carry ``"ref": null``). ``decode_frame`` accepts what a Supabase Realtime server sends and
raises ``FrameError`` for anything else; ``encode_frame`` refuses payloads that are not JSON.
Frames are UTF-8 JSON (non-ASCII text is not escaped, as the server's own frames): ``json_size``
is what a value takes in one, the measure of every size limit on what the daemon sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from daemon import jsonnumbers
from daemon.errors import InvalidInput

__all__ = [
    "BroadcastReceived",
    "ChannelClosed",
    "ChannelError",
    "ChannelJoined",
    "ConnectionLost",
    "ConnectionOpened",
    "Event",
    "Frame",
    "FrameError",
    "InvalidFrame",
    "PostgresChange",
    "PostgresSubscribed",
    "PresenceDiff",
    "PresenceState",
    "Reply",
    "check_payload",
    "decode_frame",
    "encode_frame",
    "json_size",
]

Metas = Mapping[str, tuple[Mapping[str, Any], ...]]
CHANGE_TYPES = ("INSERT", "UPDATE", "DELETE")


class FrameError(ValueError):
    """A frame from the server that is not a usable Phoenix V1 frame (the server's fault)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``ref`` is a string or None (an integer ref is turned into a string)."""

    topic: str
    event: str
    payload: Mapping[str, Any]
    ref: str | None = None
    join_ref: str | None = None


def encode_frame(frame: Frame) -> str:
    """The V1 JSON text of a client frame; raises TypeError/ValueError for non-JSON payloads."""
    body = {
        "topic": frame.topic,
        "event": frame.event,
        "payload": frame.payload,
        "ref": frame.ref,
        "join_ref": frame.join_ref,
    }
    return _dumps(body)


def check_payload(field: str, value: Any) -> None:
    """Raise InvalidInput unless ``value`` is a JSON object (no NaN, no foreign types)."""
    if not isinstance(value, Mapping):
        raise InvalidInput(field, "must be a JSON object")
    json_size(field, value)


def json_size(field: str, value: Any) -> int:
    """The bytes ``value`` takes in a frame: its compact JSON, UTF-8 encoded (``é`` counts 2,
    not the 6 of ``\\u00e9``). Raises InvalidInput for a value that is not JSON (NaN, foreign
    types, a lone surrogate, which UTF-8 cannot carry)."""
    try:
        return len(_dumps(value).encode())
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInput(field, f"is not JSON: {exc}") from None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def decode_frame(text: str | bytes) -> Frame:
    """Parse one server frame; raises FrameError with a short reason (never the frame's text)."""
    try:  # orjson, like every cloud response: integers beyond 64 bits arrive as floats, and
        raw = jsonnumbers.loads(text)  # numbers beyond the double range as WideNumbers
    except orjson.JSONDecodeError as exc:
        raise FrameError("not JSON") from exc
    if not isinstance(raw, dict):
        raise FrameError("not a vsn 1.0.0 frame (expected a JSON object)")
    topic, event, payload = raw.get("topic"), raw.get("event"), raw.get("payload", {})
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise FrameError(f"{event}: payload must be an object")
    return Frame(topic, event, payload, _ref(raw.get("ref")), _ref(raw.get("join_ref")))


def _ref(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FrameError("ref must be a string or null")


# Events ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """The socket is open; every channel is being (re)joined."""


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The socket is gone (``reason``: e.g. ``heartbeat timeout``); the adapter reconnects."""

    reason: str


@dataclass(frozen=True, slots=True)
class ChannelJoined:
    """The join was accepted. ``bindings``: the server's postgres_changes echo (each with ``id``).

    Every (re)join is followed by a catch-up pull: changes made while not joined are not replayed.
    """

    topic: str
    bindings: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ChannelError:
    """The server reported an error for the channel: a refused or timed-out join, a crashed
    channel, or a ``system`` error message. ``reason`` is the server's text (no tokens)."""

    topic: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The channel is no longer joined: left on request (``rejoining`` False) or closed by the
    server (e.g. its token expired), in which case it is rejoined after a delay."""

    topic: str
    reason: str
    rejoining: bool


@dataclass(frozen=True, slots=True)
class PostgresSubscribed:
    """The ``system`` message "Subscribed to PostgreSQL": from now on changes are delivered
    (changes committed between the join and this message may have been missed)."""

    topic: str


@dataclass(frozen=True, slots=True)
class PostgresChange:
    """One row change. ``record`` is absent (None) for DELETE, ``old_record`` for INSERT."""

    topic: str
    schema: str
    table: str
    type: str  # INSERT | UPDATE | DELETE
    record: Mapping[str, Any] | None
    old_record: Mapping[str, Any] | None
    commit_timestamp: str | None


@dataclass(frozen=True, slots=True)
class PresenceState:
    """The full presence state of a topic (sent after every join): key → metas."""

    topic: str
    state: Metas


@dataclass(frozen=True, slots=True)
class PresenceDiff:
    """Presence joins and leaves since the last state or diff: key → metas."""

    topic: str
    joins: Metas
    leaves: Metas


@dataclass(frozen=True, slots=True)
class BroadcastReceived:
    """A broadcast from another client of the topic."""

    topic: str
    event: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's reply to one of our pushes (not joins, leaves or heartbeats)."""

    topic: str
    ref: str | None
    status: str
    response: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class InvalidFrame:
    """A frame that could not be used was ignored; ``reason`` never contains its content."""

    reason: str


Event = (
    ConnectionOpened
    | ConnectionLost
    | ChannelJoined
    | ChannelError
    | ChannelClosed
    | PostgresSubscribed
    | PostgresChange
    | PresenceState
    | PresenceDiff
    | BroadcastReceived
    | Reply
    | InvalidFrame
)


# Server pushes → events ------------------------------------------------------------------------


def postgres_change(topic: str, payload: Mapping[str, Any]) -> PostgresChange:
    """The event for a ``postgres_changes`` push; raises FrameError when it is malformed."""
    data = payload.get("data")
    if not isinstance(data, dict):
        raise FrameError("postgres_changes: data must be an object")
    kind, table, schema = data.get("type"), data.get("table"), data.get("schema", "public")
    if kind not in CHANGE_TYPES:
        raise FrameError("postgres_changes: type must be INSERT, UPDATE or DELETE")
    if not isinstance(table, str) or not isinstance(schema, str):
        raise FrameError("postgres_changes: schema and table must be strings")
    record, old = data.get("record"), data.get("old_record")
    if not isinstance(record, dict | None) or not isinstance(old, dict | None):
        raise FrameError("postgres_changes: record and old_record must be objects")
    stamp = data.get("commit_timestamp")
    return PostgresChange(
        topic=topic,
        schema=schema,
        table=table,
        type=kind,
        record=record,
        old_record=old,
        commit_timestamp=stamp if isinstance(stamp, str) else None,
    )


def presence_metas(value: Any) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """``{key: {"metas": [meta, ...]}}`` → ``{key: (meta, ...)}``; raises FrameError if unusable.

    Metas that are not objects are dropped (one bad meta must not hide the others).
    """
    if not isinstance(value, dict):
        raise FrameError("presence: expected an object of keys")
    result: dict[str, tuple[Mapping[str, Any], ...]] = {}
    for key, entry in value.items():
        metas = entry.get("metas") if isinstance(entry, dict) else None
        if not isinstance(metas, list):
            raise FrameError("presence: every key needs a metas list")
        result[str(key)] = tuple(meta for meta in metas if isinstance(meta, dict))
    return result


def broadcast(topic: str, payload: Mapping[str, Any]) -> BroadcastReceived:
    """The event for a ``broadcast`` push; raises FrameError without a string ``event``."""
    event = payload.get("event")
    if not isinstance(event, str):
        raise FrameError("broadcast: event must be a string")
    return BroadcastReceived(topic, event, payload.get("payload"))


def reason_of(response: Any, default: str) -> str:
    """The ``reason`` of an error reply or ``phx_error`` payload, or ``default``."""
    if isinstance(response, dict):
        reason = response.get("reason")
        if isinstance(reason, str) and reason:
            return reason
    return default
