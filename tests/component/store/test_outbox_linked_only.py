"""Only linked workspaces get outbox entries (an unlinked one is local-only data, I6): the
writer's set of linked workspaces, kept right through link, unlink, failed batches and
restarts, and the cleanup at open of the entries a store written before that rule holds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.config import StoreSettings
from daemon.hlc import Clock
from daemon.store import Store, migrate
from daemon.store.codec import RowCodec
from daemon.store.schema import ENTITY_TABLES
from daemon.store.sync_outbox import drop_unlinked_entries, link_op, unlink_op
from daemon.store.txn import WriteContext, WriteOp

from .conftest import rows
from .linking import ORG, create_linked, link
from .test_doc_batch import edits


def outbox_rows(conn: sqlite3.Connection, workspace_id: str) -> list[str]:
    """The row ids of a workspace's outbox entries, oldest first."""
    found = rows(conn, "SELECT row_id FROM outbox WHERE workspace_id = ? ORDER BY id", workspace_id)
    return [row_id for (row_id,) in found]


# -- through the Store ----------------------------------------------------------------------------


async def test_writes_in_an_unlinked_workspace_leave_no_outbox_entry(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="local")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    await store.tasks.create(workspace_id=ws["id"], kind="build")
    await store.workspaces.update(ws["id"], name="renamed")
    doc = await store.documents.open(workspace_id=ws["id"], name="notes")
    for update in edits(3):
        await store.documents.apply_update(doc["id"], update)
    assert rows(raw, "SELECT count(*) FROM outbox") == [(0,)]
    assert rows(raw, "SELECT count(*) FROM doc_updates") == [(3,)]
    # UIs still see every change
    assert rows(raw, "SELECT count(*) FROM changelog WHERE workspace_id = ?", ws["id"]) == [(8,)]


async def test_link_then_unlink_switches_entries_on_and_off(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    await link(store, ws["id"])
    assert outbox_rows(raw, ws["id"]) == [ws["id"], conv["id"]]  # the link's snapshot
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="x")
    doc = await store.documents.open(workspace_id=ws["id"], name="notes")
    [update] = edits(1)
    written = await store.documents.apply_update(doc["id"], update)
    after_link = [ws["id"], conv["id"], msg["id"], doc["id"], written["update_id"]]
    assert outbox_rows(raw, ws["id"]) == after_link
    await store.sync.unlink(ws["id"])
    await store.messages.create(conversation_id=conv["id"], role="user", content="y")
    await store.conversations.update(conv["id"], name="renamed")
    await store.documents.apply_update(doc["id"], edits(2)[1])
    assert rows(raw, "SELECT count(*) FROM outbox") == [(0,)]


async def test_a_link_is_known_again_after_a_restart(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings())
    try:
        ws = await create_linked(store, name="w")
        other = await store.workspaces.create(name="local")
    finally:
        await store.close()
    store = await Store.open(db_path, StoreSettings())
    try:
        await store.workspaces.update(ws["id"], name="after restart")
        await store.workspaces.update(other["id"], name="still local")
        taken = await store.sync.take_outbox(workspace_ids=[ws["id"]])
        assert [c.fields.get("name") for c in taken] == ["after restart"]  # coalesced
        assert (await store.sync.counts())["outbox"] == 2  # the snapshot and the update
    finally:
        await store.close()
    conn = sqlite3.connect(db_path)
    try:
        assert outbox_rows(conn, other["id"]) == []
    finally:
        conn.close()


# -- the writer's set, batch by batch -------------------------------------------------------------


class Abort(BaseException):
    """Fails the whole transaction (an op's Exception fails only its own savepoint)."""


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WriteContext]:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate.migrate(conn)
    codecs = {t: RowCodec(t) for t in ENTITY_TABLES}
    yield WriteContext(
        conn, clock=Clock("dev"), codecs=codecs, changelog_retain=1000, last_seq=0, first_seq=0
    )
    conn.close()


def rename(workspace_id: str, name: str) -> WriteOp:
    """A local edit of workspace ``workspace_id`` (its row written on first use)."""

    def op(ctx: WriteContext) -> None:
        stamp = ctx.tick()
        row: dict[str, Any] = {"id": workspace_id, "name": name, "status": "active",
                               "created_at": stamp.iso, "updated_at": stamp.iso,
                               "hlc": stamp.hlc, "field_hlc": {}, "origin": "dev"}  # fmt: skip
        if ctx.exists("workspaces", workspace_id):
            ctx.update_row("workspaces", workspace_id, {"name": name})
        else:
            ctx.insert_row("workspaces", row)
        ctx.emit(table="workspaces", op="update", topic="workspace.updated", row=row,
                 fields={"name": name}, stamp=stamp)  # fmt: skip

    return op


def then_fail(op: WriteOp, error: BaseException) -> WriteOp:
    def failing(ctx: WriteContext) -> None:
        op(ctx)
        raise error

    return failing


def names(ctx: WriteContext, workspace_id: str) -> list[str]:
    """The names the workspace's outbox entries carry (a snapshot's, an edit's), oldest first."""
    found = rows(
        ctx.conn,
        "SELECT json_extract(fields, '$.name') FROM outbox WHERE workspace_id = ? ORDER BY id",
        workspace_id,
    )
    return [name for (name,) in found]


def test_a_write_in_the_linking_batch_and_the_next_gets_its_entry(ctx: WriteContext) -> None:
    ctx.run_batch([rename("w", "before")])
    assert names(ctx, "w") == []
    outcome = ctx.run_batch([link_op("w", ORG, None), rename("w", "same batch")])
    assert [ok for ok, _ in outcome.results] == [True, True]
    ctx.run_batch([rename("w", "next batch")])
    assert names(ctx, "w") == ["before", "same batch", "next batch"]  # snapshot, then edits


def test_writes_after_an_unlink_get_none(ctx: WriteContext) -> None:
    ctx.run_batch([link_op("w", ORG, None)])
    ctx.run_batch([rename("w", "linked")])
    outcome = ctx.run_batch([unlink_op("w"), rename("w", "same batch")])
    assert [ok for ok, _ in outcome.results] == [True, True]
    ctx.run_batch([rename("w", "next batch")])
    assert names(ctx, "w") == []


def test_an_unlink_in_a_failed_op_keeps_the_workspace_linked(ctx: WriteContext) -> None:
    ctx.run_batch([link_op("w", ORG, None), rename("w", "a")])
    # alone: its transaction rolls back
    outcome = ctx.run_batch([then_fail(unlink_op("w"), RuntimeError("bug"))])
    assert outcome.results[0][0] is False
    ctx.run_batch([rename("w", "b")])
    # in a group: its savepoint rolls back, the next op of the batch still sees the link
    outcome = ctx.run_batch([then_fail(unlink_op("w"), RuntimeError("bug")), rename("w", "c")])
    assert [ok for ok, _ in outcome.results] == [False, True]
    ctx.run_batch([rename("w", "d")])
    assert names(ctx, "w") == ["a", "b", "c", "d"]
    assert rows(ctx.conn, "SELECT workspace_id FROM cloud_links") == [("w",)]


def test_an_unlink_in_a_failed_transaction_keeps_the_workspace_linked(
    ctx: WriteContext,
) -> None:
    ctx.run_batch([link_op("w", ORG, None)])
    with pytest.raises(Abort):  # the unlink ran, then the whole transaction failed
        ctx.run_batch([unlink_op("w"), rename("w", "lost"), then_fail(rename("x", "x"), Abort())])
    ctx.run_batch([rename("w", "after")])
    assert names(ctx, "w") == ["after"]
    assert rows(ctx.conn, "SELECT workspace_id FROM cloud_links") == [("w",)]


def test_a_link_in_a_failed_transaction_leaves_the_workspace_unlinked(
    ctx: WriteContext,
) -> None:
    with pytest.raises(Abort):
        ctx.run_batch([link_op("w", ORG, None), then_fail(rename("w", "lost"), Abort())])
    ctx.run_batch([rename("w", "local")])
    assert rows(ctx.conn, "SELECT count(*) FROM outbox") == [(0,)]


# -- the cleanup at open --------------------------------------------------------------------------


def add_entries(conn: sqlite3.Connection, workspace_id: str | None, n: int) -> None:
    """Entries as a store written before the rule held them (one per message)."""
    conn.executemany(
        "INSERT INTO outbox (table_name, row_id, workspace_id, op, fields, field_hlc, hlc,"
        " origin, created_at, attempts) VALUES ('messages', ?, ?, 'insert', '{}', '{}', 'h',"
        " 'dev', 't', 0)",
        [(f"m{i}", workspace_id) for i in range(n)],
    )


async def test_open_drops_unlinked_entries_and_keeps_the_rest(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings())
    try:
        linked = await create_linked(store, name="linked")
        await store.workspaces.update(linked["id"], name="pending")
    finally:
        await store.close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        add_entries(conn, "old-a", 12_000)  # more than two chunks
        add_entries(conn, "old-b", 3)
        add_entries(conn, None, 2)  # without a workspace: kept
        before = outbox_rows(conn, linked["id"])
        assert len(before) == 2
        for _ in range(2):  # idempotent: the second open finds nothing to drop
            store = await Store.open(db_path, StoreSettings())
            await store.close()
            found = rows(conn, "SELECT workspace_id, count(*) FROM outbox GROUP BY 1 ORDER BY 1")
            assert found == [(None, 2), (linked["id"], 2)]
            assert outbox_rows(conn, linked["id"]) == before
    finally:
        conn.close()


def test_the_cleanup_commits_chunk_by_chunk(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        migrate.migrate(conn)
        conn.execute(
            "INSERT INTO cloud_links (workspace_id, org_id, path, linked_at) VALUES ('kept', ?,"
            " NULL, 't')",
            (ORG,),
        )
        add_entries(conn, "dead", 7)
        add_entries(conn, "kept", 4)
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        assert drop_unlinked_entries(conn, chunk=3) == 7
        conn.set_trace_callback(None)
        assert statements.count("COMMIT") == 3  # 3 + 3 + 1
        assert rows(conn, "SELECT workspace_id, count(*) FROM outbox GROUP BY 1") == [("kept", 4)]
        assert drop_unlinked_entries(conn, chunk=3) == 0
    finally:
        conn.close()
