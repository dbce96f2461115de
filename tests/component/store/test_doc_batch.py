"""Batched local document updates (doc_ops.LocalBatch) on a real SQLite file: multi-row inserts
keep every update's row, changelog entry (with the seq its event announces) and outbox entry."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from typing import Any

import orjson
from pycrdt import Doc, Text

from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.store.sql import insert_many

from .conftest import rows
from .linking import create_linked


def edits(n: int) -> list[bytes]:
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        with doc.transaction():
            text.insert(len(text), f"{i};")
    return updates


def test_insert_many_keeps_the_order_across_statement_sizes() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT, b INTEGER)")
    for n in (0, 1, 3, 64, 150):  # 150 = 64 + 64 + 16 + 4 + 1 + 1
        conn.execute("DELETE FROM t")
        values = [(f"row {i}", i) for i in range(n)]
        insert_many(conn, "t", ("a", "b"), values)
        assert conn.execute("SELECT a, b FROM t ORDER BY seq").fetchall() == values


def test_insert_many_keeps_each_statement_under_999_parameters() -> None:
    """SQLite before 3.32 refuses statements with more than 999 parameters."""
    keys = tuple(f"c{i}" for i in range(16))  # 64 rows would be 1024 parameters
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE t (seq INTEGER PRIMARY KEY, {', '.join(keys)})")
    statements: list[str] = []
    values = [tuple(range(i, i + 16)) for i in range(100)]
    conn.set_trace_callback(
        lambda sql: statements.append(sql) if sql.startswith("INSERT") else None
    )
    insert_many(conn, "t", keys, values)
    assert len(statements) == 7  # six of 16 rows and one of 4, none of 64
    conn.set_trace_callback(None)
    assert conn.execute(f"SELECT {', '.join(keys)} FROM t ORDER BY seq").fetchall() == values


async def test_a_large_batch_gives_each_update_its_row_entry_seq_and_outbox(
    store: Store, raw: sqlite3.Connection
) -> None:
    workspace = await create_linked(store, name="docs")  # linked: its updates get entries
    doc_id = (await store.documents.open(workspace_id=workspace["id"]))["id"]
    seen: list[ChangeEvent] = []
    store.add_commit_listener(seen.extend)
    updates = edits(300)
    results = await asyncio.gather(*(store.documents.apply_update(doc_id, u) for u in updates))

    stored = rows(raw, "SELECT id, data FROM doc_updates ORDER BY seq")
    assert [r["update_id"] for r in results] == [update_id for update_id, _ in stored]
    assert [data for _, data in stored] == updates
    # every event names the changelog entry (by seq) that holds exactly its data
    assert [e.data["update_id"] for e in seen] == [r["update_id"] for r in results]
    for event in seen:
        [(topic, data)] = rows(raw, "SELECT topic, data FROM changelog WHERE seq = ?", event.seq)
        assert topic == "doc.updated" and orjson.loads(data) == event.data
    outbox = rows(
        raw, "SELECT row_id, fields FROM outbox WHERE table_name = 'doc_updates' ORDER BY id"
    )
    assert [row_id for row_id, _ in outbox] == [r["update_id"] for r in results]
    assert [base64.b64decode(orjson.loads(f)["data"]) for _, f in outbox] == updates
