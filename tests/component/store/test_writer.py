"""The group-committing writer: batching, isolation of failures, listeners, shutdown."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import InvalidInput, ShuttingDown
from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.store.ids import uuid7

from .conftest import rows
from .linking import create_linked


async def make_conversation(store: Store) -> str:
    ws = await create_linked(store, name="A")  # linked: its writes get outbox entries
    return str((await store.conversations.create(workspace_id=ws["id"], name="c"))["id"])


async def test_concurrent_writes_commit_in_fewer_transactions(
    store: Store, raw: sqlite3.Connection
) -> None:
    conv = await make_conversation(store)
    commits: list[int] = []
    store.add_commit_listener(lambda events: commits.append(len(events)))
    sent = await asyncio.gather(
        *(
            store.messages.create(conversation_id=conv, role="user", content=str(i))
            for i in range(300)
        )
    )
    assert len({m["id"] for m in sent}) == 300
    assert sum(commits) == 300
    assert len(commits) < 300  # several writes shared a transaction
    assert max(commits) > 1
    assert rows(raw, "SELECT count(*) FROM messages") == [(300,)]
    assert rows(raw, "SELECT count(*) FROM outbox WHERE table_name = 'messages'") == [(300,)]


async def test_a_lone_write_commits_on_its_own(store: Store) -> None:
    conv = await make_conversation(store)
    commits: list[int] = []
    store.add_commit_listener(lambda events: commits.append(len(events)))
    for i in range(5):
        await store.messages.create(conversation_id=conv, role="user", content=str(i))
    assert commits == [1, 1, 1, 1, 1]


async def test_a_bad_write_in_a_batch_fails_alone(store: Store, raw: sqlite3.Connection) -> None:
    conv = await make_conversation(store)
    commits: list[list[str]] = []
    store.add_commit_listener(lambda events: commits.append([e.data["content"] for e in events]))
    good = [
        store.messages.create(conversation_id=conv, role="user", content=f"ok{i}")
        for i in range(20)
    ]
    bad = store.messages.create(conversation_id=uuid7(), role="user", content="orphan")
    results = await asyncio.gather(*good[:10], bad, *good[10:], return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], InvalidInput)
    assert failures[0].field == "conversation_id"
    assert rows(raw, "SELECT count(*) FROM messages") == [(20,)]
    assert rows(raw, "SELECT count(*) FROM changelog WHERE topic = 'message.created'") == [(20,)]
    # the bad write sat between ok9 and ok10 in the queue: they committed in one transaction
    assert any("ok9" in batch and "ok10" in batch for batch in commits)
    # and it left no hole in the changelog's numbering
    seqs = [r[0] for r in rows(raw, "SELECT seq FROM changelog ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_listener_sees_events_in_seq_order_before_the_writer_resumes(store: Store) -> None:
    conv = await make_conversation(store)
    seen: list[ChangeEvent] = []
    resumed: list[str] = []
    order: list[str] = []

    def listener(events: Sequence[ChangeEvent]) -> None:
        seen.extend(events)
        order.append(f"listener:{len(resumed)}")

    store.add_commit_listener(listener)

    async def send(i: int) -> None:
        msg = await store.messages.create(conversation_id=conv, role="user", content=str(i))
        assert any(e.data["id"] == msg["id"] for e in seen)  # already delivered
        resumed.append(msg["id"])

    await asyncio.gather(*(send(i) for i in range(50)))
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    assert seqs == list(range(seqs[0], seqs[0] + 50))
    assert {e.topic for e in seen} == {"message.created"}
    assert await store.changelog.last_seq() == seqs[-1]


async def test_removed_listener_is_not_called(store: Store) -> None:
    calls: list[int] = []
    remove = store.add_commit_listener(lambda events: calls.append(len(events)))
    await store.workspaces.create(name="A")
    remove()
    await store.workspaces.create(name="B")
    assert calls == [1]


async def test_a_failing_listener_is_logged_and_harms_nobody(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(events: Sequence[ChangeEvent]) -> None:
        raise RuntimeError("listener bug")

    later: list[int] = []
    store.add_commit_listener(broken)
    store.add_commit_listener(lambda events: later.append(len(events)))
    with caplog.at_level(logging.ERROR):
        ws = await store.workspaces.create(name="A")
    assert ws["name"] == "A" and later == [1]
    assert "store.listener.failed" in caplog.text


async def test_close_commits_queued_writes_then_refuses_new_ones(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings())
    conv = await make_conversation(store)
    writes = [
        store.messages.create(conversation_id=conv, role="user", content=str(i)) for i in range(100)
    ]
    # gather starts its tasks in order: every write is queued before close() begins
    *done, _ = await asyncio.gather(*writes, store.close())
    assert len({m["id"] for m in done}) == 100
    with pytest.raises(ShuttingDown):
        await store.workspaces.create(name="late")
    with pytest.raises(ShuttingDown):
        await store.workspaces.list()
    conn = sqlite3.connect(db_path)
    try:
        assert rows(conn, "SELECT count(*) FROM messages") == [(100,)]
    finally:
        conn.close()


async def test_synchronous_full_is_selectable(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings(synchronous="FULL"))
    try:
        await store.workspaces.create(name="A")
        assert await _pragma(store, "synchronous") == 2  # FULL
        assert await _pragma(store, "journal_mode") == "wal"
        assert await _pragma(store, "foreign_keys") == 1
        # busy_timeout: see test_writer_locks.py (what it does, not the PRAGMA's value)
    finally:
        await store.close()


async def _pragma(store: Store, name: str) -> object:
    from daemon.store.engine import run_in_thread

    def read(conn: sqlite3.Connection) -> object:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]

    return await run_in_thread(store._writer_conn, read)


async def test_clock_continues_after_a_restart_even_if_the_wall_clock_went_back(
    db_path: Path,
) -> None:
    store = await Store.open(db_path, StoreSettings())
    device = store.device_id
    await store.workspaces.create(name="before")
    await store.close()
    future = f"9999999999999-000005-{device}"  # as if the last run had a clock far ahead
    conn = sqlite3.connect(db_path, isolation_level=None)
    changed = conn.execute("UPDATE meta SET value = ? WHERE key = 'hlc_last'", (future,))
    assert changed.rowcount == 1
    conn.close()
    reopened = await Store.open(db_path, StoreSettings())
    try:
        ws = await reopened.workspaces.create(name="after")
        assert ws["hlc"] == f"9999999999999-000006-{device}"
    finally:
        await reopened.close()


async def test_the_event_data_is_not_the_dict_returned_to_the_writer(store: Store) -> None:
    seen: list[ChangeEvent] = []
    store.add_commit_listener(seen.extend)
    ws = await store.workspaces.create(name="A")
    ws["name"] = "changed by the caller"
    assert seen[0].data["name"] == "A"
