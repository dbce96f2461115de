"""Realtime events in the daemon's terms (pure: no I/O, no clock).

``remote_change`` turns a ``postgres_changes`` event into the change shape the store's
``apply_pull`` takes (mapping.py's ``local_change``), or says why it cannot be used as it is:
a realtime record is a hint, so anything but a complete row of a synced table of the channel's
own workspace is not merged; a hint the daemon cannot use (a row too large for the frame and
sent without its big fields, a hard delete) asks for a pull instead, which is the truth. A
pure echo of this device's own writes (every clock the row carries is this device's) is not
merged: it holds nothing this device does not have.

``doc_broadcast`` builds the low-latency broadcast of a local document update (None when it is
too large for one), ``doc_batch`` one broadcast of several updates of a document (live_pacer.py)
and ``doc_updates_of`` reads one back, refusing anything malformed. Its event name is one of
``RESERVED_EVENTS``: the names a UI's broadcast may not use.

``member_json`` is a presence member as the local API shows it, ``fit_members`` the members
that fit in one frame of the local API, ``next_away_at`` the next time an active member turns
``away`` (so that the daemon can announce it without any traffic).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from daemon import hlc
from daemon.realtime.frames import PostgresChange
from daemon.realtime.presence import IDLE_AFTER_S, Member, parse_time
from daemon.sync.mapping import CLOUD_TABLES, LOCAL_COLUMNS, LOCAL_ONLY, local_change

__all__ = [
    "DOC_UPDATE_EVENT",
    "RESERVED_EVENTS",
    "DocBroadcast",
    "RemoteChange",
    "doc_batch",
    "doc_broadcast",
    "doc_update_of",
    "doc_updates_of",
    "fit_members",
    "member_json",
    "next_away_at",
    "remote_change",
]

#: The broadcast event carrying document updates: payload ``{id, update_id, update, origin}``
#: and, when several updates of the document go together, ``more``: ``[{update_id, update}]``,
#: the ones after it in order. A daemon older than ``more`` merges the first update only (the
#: others wait for the pull, and any later update that depends on them waits with them).
DOC_UPDATE_EVENT: Final = "doc.update"
#: Broadcast events the daemon itself sends and handles on a workspace channel: a UI's
#: ``broadcast.send`` may not use them (a peer daemon would take the message for its own).
RESERVED_EVENTS: Final = frozenset({DOC_UPDATE_EVENT})
#: Larger updates (base64 characters) are not broadcast: the pull delivers them.
MAX_DOC_BROADCAST: Final = 128 * 1024
_ID_LEN: Final = 36

Verdict = Literal["apply", "pull", "ignore"]
#: Columns every usable row carries (local names): the others are checked per table.
_SCHEMA: Final = "public"


@dataclass(frozen=True, slots=True)
class RemoteChange:
    """What to do with one realtime change: ``apply`` ``change`` (local shape), ``pull`` (the
    hint is not usable as it is: ask the cloud), or ``ignore`` it; ``reason`` for the logs."""

    verdict: Verdict
    reason: str
    change: dict[str, Any] | None = None


def _required(table: str) -> frozenset[str]:
    return LOCAL_COLUMNS[table] - LOCAL_ONLY.get(table, frozenset())


_REQUIRED: Final[Mapping[str, frozenset[str]]] = {t: _required(t) for t in CLOUD_TABLES}


def remote_change(event: PostgresChange, workspace_id: str, device_id: str) -> RemoteChange:
    """How to use ``event``, received on the channel of ``workspace_id`` by ``device_id``.

    A row whose every clock is this device's is our own push coming back: this device already
    has every value of it (maybe newer ones), so it is not merged at all. The row's ``origin``
    alone does not tell that: it names the device of the newest clock, and a row another
    device has just written older fields into still names this one (an offline edit pushed
    late); the merge takes those fields, and ignores the rest, which is idempotent and tells no
    UI."""
    if event.schema != _SCHEMA or event.table not in CLOUD_TABLES:
        return RemoteChange("ignore", "not a synced table")
    if event.type == "DELETE" or event.record is None:
        # Synced rows are never hard-deleted (tombstones are updates): the pull tells the truth.
        return RemoteChange("pull", "no record")
    record = event.record
    if _is_own_echo(record, device_id):
        return RemoteChange("ignore", "own echo")
    row_id = record.get("id")
    if not isinstance(row_id, str):
        return RemoteChange("pull", "record without id")
    owner = row_id if event.table == "workspaces" else record.get("workspace_id")
    change = local_change(
        {"table": event.table, "id": row_id, "workspace_id": owner, "row": dict(record)}
    )
    if change is None:
        return RemoteChange("ignore", "not a synced table")
    if change["workspace_id"] != workspace_id:
        return RemoteChange("ignore", "another workspace")
    missing = _REQUIRED[event.table] - change["row"].keys()
    if missing or not isinstance(change["row"].get("hlc"), str):
        return RemoteChange("pull", "incomplete record")
    return RemoteChange("apply", "complete record", change)


def _is_own_echo(record: Mapping[str, Any], device_id: str) -> bool:
    """Whether every clock of ``record`` (its row clock and each field's) is ``device_id``'s."""
    clocks = record.get("field_hlc")
    if clocks is None:
        clocks = {}
    if not isinstance(clocks, Mapping):
        return False
    return all(_device_of(clock) == device_id for clock in (record.get("hlc"), *clocks.values()))


def _device_of(clock: Any) -> str | None:
    try:
        return hlc.decode(clock).device_id if isinstance(clock, str) else None
    except hlc.ClockError:
        return None


@dataclass(frozen=True, slots=True)
class DocBroadcast:
    """A document update received by broadcast, checked (ids are canonical UUID strings)."""

    doc_id: str
    update_id: str
    update: bytes
    origin: str


def doc_broadcast(event: Mapping[str, Any], device_id: str) -> dict[str, Any] | None:
    """The broadcast payload for a ``doc.updated`` changelog event of this device, or None
    (not ours, no workspace, or too large for a broadcast)."""
    update = event.get("update")
    if event.get("origin") != device_id or not isinstance(event.get("workspace_id"), str):
        return None
    if not isinstance(update, str) or len(update) > MAX_DOC_BROADCAST:
        return None
    return {
        "id": event.get("id"),
        "update_id": event.get("update_id"),
        "update": update,
        "origin": device_id,
    }


def doc_batch(payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One broadcast of several ``doc_broadcast`` payloads of one document, in order."""
    first, *rest = payloads
    batch = dict(first)
    if rest:
        batch["more"] = [{"update_id": p["update_id"], "update": p["update"]} for p in rest]
    return batch


def doc_updates_of(payload: Any) -> list[DocBroadcast]:
    """The updates of a received ``doc.update`` payload in order; none when anything in it is
    malformed."""
    first = doc_update_of(payload)
    more = payload.get("more", []) if first is not None else None
    if first is None or not isinstance(more, list):
        return []
    found = [first]
    for entry in more:
        if not isinstance(entry, Mapping):
            return []
        entry_of = doc_update_of({**entry, "id": first.doc_id, "origin": first.origin})
        if entry_of is None:
            return []
        found.append(entry_of)
    return found


def doc_update_of(payload: Any) -> DocBroadcast | None:
    """A received ``doc.update`` payload, or None when anything in it is malformed."""
    if not isinstance(payload, Mapping):
        return None
    doc_id, update_id = payload.get("id"), payload.get("update_id")
    update, origin = payload.get("update"), payload.get("origin")
    if not (_is_id(doc_id) and _is_id(update_id)) or not isinstance(update, str):
        return None
    if len(update) > MAX_DOC_BROADCAST or not isinstance(origin, str) or not origin:
        return None
    try:
        data = base64.b64decode(update, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not data:
        return None
    return DocBroadcast(str(doc_id), str(update_id), data, origin[:200])


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == _ID_LEN and value == value.lower()


def member_json(member: Member, own_device_id: str) -> dict[str, Any]:
    """A presence member for ``presence.list`` / ``presence.changed``."""
    return {
        "user_id": member.user_id,
        "display_name": member.display_name,
        "device_id": member.device_id,
        "status": member.status,
        "active_file": member.active_file,
        "cursor": member.cursor,
        "since": member.since,
        "active_at": member.active_at,
        "self": member.device_id == own_device_id,
    }


def fit_members(members: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int]:
    """The members (``member_json``'s) that fit in ``budget`` bytes as a UTF-8 JSON array, and
    how many were left out. This device's (``self``) is kept whatever its size (a UI never
    loses "you"); then the others in order, each that still fits (a member too large for what
    is left is skipped, a smaller one after it may fit). Those kept keep their order.

    Each of ~30 devices may track up to 16 KiB of cursor and a 4096-character file path, and a
    client that is not syncd may track more: the whole list can exceed a frame of the local API
    (1 MiB by default, the size a Python websockets client accepts), which would close the UI's
    connection (1009) instead of showing who is online."""
    sizes = [_json_size(m) for m in members]
    used = 2 + sum(size + 1 for m, size in zip(members, sizes, strict=True) if m.get("self"))
    kept: list[dict[str, Any]] = []
    for member, size in zip(members, sizes, strict=True):
        if member.get("self"):
            kept.append(member)
        elif used + size + 1 <= budget:
            used += size + 1
            kept.append(member)
    return kept, len(members) - len(kept)


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as UTF-8 JSON, as the frame carries it (orjson: unescaped UTF-8);
    a value that cannot be encoded never fits."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return 1 << 62


def next_away_at(
    members: Iterable[Member], now: float, idle_after_s: float = IDLE_AFTER_S
) -> float | None:
    """The next time after ``now`` (Unix seconds) one of ``members`` turns ``away``, if any."""
    times: list[float] = []
    for member in members:
        if member.status != "active":
            continue
        last = parse_time(member.active_at)
        if last is None:
            last = parse_time(member.since)
        if last is not None and last + idle_after_s > now:
            times.append(last + idle_after_s)
    return min(times, default=None)
