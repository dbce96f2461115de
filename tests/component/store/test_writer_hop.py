"""The writer's hop: batches handed to the connection's thread, which goes on by itself; the
background checkpointer; and the private aiosqlite contract both rely on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from daemon.config import StoreSettings
from daemon.errors import StoreError
from daemon.events import ChangeEvent
from daemon.store import Store, engine
from daemon.store.engine import run_in_thread
from daemon.store.txn import WriteContext
from tests.helpers import MS, wait_for

from .conftest import rows

BLOCK = 5_000 * MS


async def make_conversation(store: Store) -> str:
    ws = await store.workspaces.create(name="A")
    return str((await store.conversations.create(workspace_id=ws["id"], name="c"))["id"])


def blocking_op(started: threading.Event, release: threading.Event) -> Any:
    """A mutation that holds the writer's thread until ``release`` (and writes nothing)."""

    def op(ctx: WriteContext) -> str:
        started.set()
        release.wait(BLOCK)
        return "blocker"

    return op


async def test_aiosqlite_runs_a_job_without_a_future_in_the_connection_thread(
    store: Store,
) -> None:
    # The writer relies on this private aiosqlite contract (Connection._tx, (None, fn) items).
    conn = store._writer_conn
    ran: list[int] = []
    done = threading.Event()

    def job() -> None:
        ran.append(threading.get_ident())
        done.set()

    conn._tx.put_nowait((None, job))
    await wait_for(done.is_set, message="job ran")
    assert ran == [conn._thread.ident] and ran[0] != threading.get_ident()


async def test_writes_queued_during_a_commit_share_the_next_transaction(store: Store) -> None:
    conv = await make_conversation(store)
    commits: list[int] = []
    store.add_commit_listener(lambda events: commits.append(len(events)))
    started, release = threading.Event(), threading.Event()
    writer = store._writer
    blocker = asyncio.create_task(writer.submit(blocking_op(started, release)))
    await wait_for(started.is_set, message="blocker running")
    sends = [
        asyncio.create_task(
            store.messages.create(conversation_id=conv, role="user", content=str(i))
        )
        for i in range(20)
    ]
    await wait_for(lambda: writer.queued == 20, message="20 writes queued")
    release.set()
    assert await blocker == "blocker"
    sent = await asyncio.gather(*sends)
    assert [m["content"] for m in sent] == [str(i) for i in range(20)]
    assert commits == [20]  # the blocker wrote nothing; the 20 committed together


async def test_the_thread_starts_the_next_batch_without_the_event_loop(store: Store) -> None:
    # While the loop is stuck in the first batch's listener, the second batch still commits:
    # the thread takes it as soon as the first committed (no hand-over by the loop).
    writer = store._writer
    first_started, release_first = threading.Event(), threading.Event()
    second_ran = threading.Event()
    seen: list[bool] = []

    def first(ctx: WriteContext) -> None:
        first_started.set()
        release_first.wait(BLOCK)
        ctx.publish("test.first", {"id": "first"})

    def second(ctx: WriteContext) -> None:
        second_ran.set()
        ctx.publish("test.second", {"id": "second"})

    def listener(events: Sequence[ChangeEvent]) -> None:
        if events[0].topic == "test.first":
            seen.append(second_ran.wait(BLOCK))  # blocks the event loop

    store.add_commit_listener(listener)
    one = asyncio.create_task(writer.submit(first))
    await wait_for(first_started.is_set, message="first batch running")
    two = asyncio.create_task(writer.submit(second))
    await wait_for(lambda: writer.queued == 1, message="second write queued")
    release_first.set()
    await asyncio.gather(one, two)
    assert seen == [True]


async def test_a_failed_transaction_fails_its_writers_and_the_next_one_commits(
    store: Store, raw: sqlite3.Connection
) -> None:
    class Abort(BaseException):  # not an Exception: it escapes the op's savepoint
        pass

    def aborting(ctx: WriteContext) -> None:
        ctx.publish("test.lost", {"id": "lost"})
        raise Abort

    writer = store._writer
    with pytest.raises(StoreError, match="commit failed"):
        await writer.submit(aborting)
    ws = await store.workspaces.create(name="after")
    assert rows(raw, "SELECT name FROM workspaces") == [(ws["name"],)]
    assert rows(raw, "SELECT count(*) FROM changelog WHERE topic = 'test.lost'") == [(0,)]


async def test_checkpoints_run_in_the_background_and_close_with_the_writer(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "CHECKPOINT_EVERY", 8)
    monkeypatch.setattr(engine, "WAL_BACKSTOP_PAGES", 200)
    store = await Store.open(db_path, StoreSettings())
    try:
        conv = await make_conversation(store)
        for i in range(100):  # several pages each, one transaction each
            await store.messages.create(conversation_id=conv, role="user", content=str(i))
        checkpointer = store._writer.checkpointer
        assert checkpointer is not None
        await wait_for(lambda: checkpointer.checkpoints >= 1, message="a background checkpoint")

        def autocheckpoint(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

        assert await run_in_thread(store._writer_conn, autocheckpoint) == 200
    finally:
        await store.close()
    assert store._writer.checkpointer is not None
    assert store._writer.checkpointer._db is None  # closed with the writer
    conn = sqlite3.connect(db_path)
    try:
        assert rows(conn, "SELECT count(*) FROM messages") == [(100,)]
        assert rows(conn, "PRAGMA integrity_check") == [("ok",)]
    finally:
        conn.close()


async def test_a_large_batch_starts_a_background_checkpoint_at_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few batches of many rows (a first sync's pages) are checkpointed in the background
    as soon as they changed ``CHECKPOINT_ROWS`` rows, not after ``CHECKPOINT_EVERY`` batches:
    otherwise the WAL reaches the writer's own backstop, which checkpoints inside a COMMIT."""
    monkeypatch.setattr(engine, "CHECKPOINT_ROWS", 500)
    store = await Store.open(db_path, StoreSettings())
    try:
        checkpointer = store._writer.checkpointer
        assert checkpointer is not None

        def insert(first: int, count: int) -> Any:
            def op(ctx: WriteContext) -> None:
                ctx.conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, 'x')",
                    [(f"bulk-{i}",) for i in range(first, first + count)],
                )

            return op

        for i in range(3):  # small batches: far from either threshold
            await store._writer.submit(insert(i, 1))
        assert checkpointer.checkpoints == 0 and checkpointer._running is None
        await store._writer.submit(insert(100, 300))
        assert checkpointer.checkpoints == 0 and checkpointer._running is None
        await store._writer.submit(insert(400, 300))  # over 500 rows in 5 batches
        await wait_for(lambda: checkpointer.checkpoints == 1, message="a background checkpoint")
    finally:
        await store.close()


async def test_the_writers_statement_journals_stay_in_memory(store: Store) -> None:
    # A pulled page's multi-row INSERTs spill their statement journals to temporary files
    # otherwise (engine.Writer._prepare); readers keep SQLite's default (their sorts may spill).
    def temp_store(raw: sqlite3.Connection) -> int:
        return int(raw.execute("PRAGMA temp_store").fetchone()[0])

    assert await run_in_thread(store._writer_conn, temp_store) == 2  # MEMORY
    assert await run_in_thread(store._reader_conn, temp_store) == 0  # DEFAULT
