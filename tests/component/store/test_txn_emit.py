"""``emit`` and ``insert_row`` bind positional parameters on the hot path: what they store must
be exactly what the named forms (``outbox_entry``, the row dict) describe."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.hlc import Clock
from daemon.store import migrate
from daemon.store.codec import RowCodec
from daemon.store.schema import ENTITY_TABLES
from daemon.store.sql import CHANGELOG_KEYS, OUTBOX_KEYS, insert_positional_sql, insert_row_sql
from daemon.store.txn import WriteContext

from .linking import link_ids


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WriteContext]:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    migrate.migrate(conn)
    codecs = {t: RowCodec(t) for t in ENTITY_TABLES}
    yield WriteContext(
        conn, clock=Clock("dev"), codecs=codecs, changelog_retain=1000, last_seq=0, first_seq=0
    )
    conn.close()


def workspace(ctx: WriteContext) -> dict[str, Any]:
    stamp = ctx.tick()
    row = {"id": "w1", "name": "W", "path": None, "status": "active",
           "progress_data": {"p": 1}, "created_at": stamp.iso, "updated_at": stamp.iso,
           "hlc": stamp.hlc, "origin": "dev", "field_hlc": {"name": stamp.hlc}}  # fmt: skip
    ctx.insert_row("workspaces", row)  # keys not in column order: the named form
    fields = {"name": "W", "progress_data": {"p": 1}}
    ctx.emit(table="workspaces", op="insert", topic="workspace.created", row=row, fields=fields,
             stamp=stamp)  # fmt: skip
    return {"row": row, "fields": fields, "stamp": stamp}


def test_emit_stores_what_outbox_entry_describes(ctx: WriteContext) -> None:
    link_ids(ctx, "w1")  # linked: its writes get outbox entries
    made = ctx.run_batch([workspace]).results[0][1]
    hlc, iso = made["stamp"].hlc, made["stamp"].iso
    expected = ctx.outbox_entry("workspaces", "insert", "w1", "w1", made["fields"], made["stamp"])
    # outbox_entry names outbox_values' tuple: spelled out, so a value in the wrong place shows
    assert expected == {"table_name": "workspaces", "row_id": "w1", "workspace_id": "w1",
                        "op": "insert", "fields": '{"name":"W","progress_data":{"p":1}}',
                        "field_hlc": "{}", "hlc": hlc,  # one clock: every field at hlc
                        "origin": "dev", "created_at": iso, "attempts": 0}  # fmt: skip
    stored = ctx.conn.execute(f"SELECT {', '.join(OUTBOX_KEYS)} FROM outbox").fetchall()
    assert [dict(r) for r in stored] == [expected]
    entry = ctx.conn.execute(f"SELECT {', '.join(CHANGELOG_KEYS)} FROM changelog").fetchone()
    assert dict(entry) == {"topic": "workspace.created", "row_id": "w1", "workspace_id": "w1",
                           "data": entry["data"], "created_at": made["stamp"].iso}  # fmt: skip
    assert ctx.codecs["workspaces"].decode(
        ctx.conn.execute("SELECT * FROM workspaces").fetchone()
    ) == {**dict.fromkeys(ctx.codecs["workspaces"].columns), **made["row"]}


def test_a_row_in_column_order_binds_positionally_and_stores_the_same(ctx: WriteContext) -> None:
    row = {"id": "w2", "name": "N", "path": "/p", "description": None, "status": "active",
           "task_goal": None, "current_step": None, "progress_data": [1], "next_steps": None,
           "shared_memory": None, "created_at": "t", "updated_at": "t", "deleted_at": None,
           "hlc": "h", "field_hlc": {}, "origin": "dev"}  # fmt: skip
    assert insert_row_sql("workspaces", tuple(row))[1] is True
    ctx.conn.execute("BEGIN")
    ctx.insert_row("workspaces", row)
    ctx.conn.execute("COMMIT")
    stored = ctx.conn.execute("SELECT * FROM workspaces").fetchone()
    assert ctx.codecs["workspaces"].decode(stored) == row


def test_positional_inserts_refuse_keys_out_of_column_order() -> None:
    with pytest.raises(ValueError, match="column order"):
        insert_positional_sql("changelog", ("row_id", "topic"))
    assert insert_row_sql("changelog", ("row_id", "topic"))[1] is False  # named instead
