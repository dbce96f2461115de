"""Shared helpers of the store's sync tests (no tests here): the real merge, adapted to the
store's MergeFn as the sync driver adapts it, and builders of remote (pulled) rows."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from typing import Any

import orjson

from daemon.store.ids import uuid7
from daemon.store.sync import MergeOutcome
from daemon.sync.merge import RowState, merge_row, row_hlc

from .conftest import rows

OTHER = "device-b"


def merge(
    table: str, local: dict[str, Any] | None, remote: dict[str, Any], pending: frozenset[str]
) -> MergeOutcome:
    """daemon.sync.merge.merge_row over local-shaped rows (what the driver injects)."""
    before = None if local is None else RowState.from_row(local)
    result = merge_row(table, before, RowState.from_row(remote), pending_local=pending)
    row = {
        "id": remote["id"],
        **result.row.fields,
        "field_hlc": dict(result.row.field_hlc),
        "hlc": row_hlc(result.row),
    }
    conflicts = tuple(dataclasses.asdict(c) for c in result.conflicts)
    return MergeOutcome(row, result.row_changed, result.changed, conflicts)


def clock(offset_ms: int = 0, counter: int = 0, device: str = OTHER) -> str:
    """A clock of another device, ``offset_ms`` from now."""
    return f"{time.time_ns() // 1_000_000 + offset_ms:013d}-{counter:06d}-{device}"


def iso(c: str) -> str:
    ms = int(c[:13])
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def stamped(fields: dict[str, Any], c: str, origin: str = OTHER) -> dict[str, Any]:
    """A remote row whose every field was written at clock ``c``."""
    clocks = {k: c for k in fields if k != "id"}
    return {**fields, "field_hlc": clocks, "hlc": c, "origin": origin}


def remote_workspace(c: str, *, id: str | None = None, **fields: Any) -> dict[str, Any]:
    base = {
        "id": id or uuid7(),
        "name": "remote",
        "description": None,
        "status": "active",
        "task_goal": None,
        "current_step": None,
        "progress_data": {},
        "next_steps": [],
        "shared_memory": {},
        "created_at": iso(c),
        "updated_at": iso(c),
        "deleted_at": None,
    }
    return stamped({**base, **fields}, c)


def remote_conversation(c: str, workspace_id: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": uuid7(),
        "workspace_id": workspace_id,
        "name": "chat",
        "type": "chat",
        "is_archived": False,
        "created_at": iso(c),
        "updated_at": iso(c),
        "deleted_at": None,
    }
    return stamped({**base, **fields}, c)


def remote_message(c: str, workspace_id: str, conversation_id: str, **fields: Any) -> dict:
    base = {
        "id": uuid7(),
        "workspace_id": workspace_id,
        "conversation_id": conversation_id,
        "role": "user",
        "content": "hello",
        "created_at": iso(c),
        "updated_at": iso(c),
        "deleted_at": None,
    }
    return stamped({**base, **fields}, c)


def remote_task(c: str, workspace_id: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": uuid7(),
        "workspace_id": workspace_id,
        "kind": "build",
        "payload": None,
        "status": "queued",
        "priority": 0,
        "progress": None,
        "attempts": 0,
        "created_at": iso(c),
        "updated_at": iso(c),
        "deleted_at": None,
    }
    return stamped({**base, **fields}, c)


def change(table: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"table": table, "row": row}


def changelog_since(raw: sqlite3.Connection, seq: int) -> list[tuple[str, dict[str, Any]]]:
    found = rows(raw, "SELECT topic, data FROM changelog WHERE seq > ? ORDER BY seq", seq)
    return [(topic, orjson.loads(data)) for topic, data in found]


def last_seq(raw: sqlite3.Connection) -> int:
    return int(rows(raw, "SELECT coalesce(max(seq), 0) FROM changelog")[0][0])


def test_origin_of_names_the_device_of_exactly_the_clocks_hlc_decodes() -> None:
    from daemon.hlc import ClockError, decode
    from daemon.store.sync_rows import origin_of

    for value in [
        "1790000000000-000001-dev-a",
        "1790000000000-000001-a.b:c_d",
        "1790000000000-000001-",
        "179000000000-000001-dev",
        "1790000000000-000001-dev a",
        "1790000000000-000001-dev\n",
        "x",
    ]:
        try:
            expected: str | None = decode(value).device_id
        except ClockError:
            expected = None
        assert origin_of(value) == expected, value
    assert origin_of(None) is None and origin_of(12) is None
