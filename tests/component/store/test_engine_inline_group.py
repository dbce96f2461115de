"""Inline group commit: small writes that meet each other are group-committed on the event
loop's thread, at most ``INLINE_BATCH`` per transaction; a write that is not small, an
unreported commit or another connection's lock sends them to the writer's thread instead."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from daemon.store import Store, engine
from daemon.store.txn import WriteContext
from tests.helpers import wait_for

from .test_engine_inline import LOOP_THREAD, failing, names, publishing, record, yielded


@pytest.mark.usefixtures("untimed_groups")
async def test_a_burst_larger_than_the_inline_batch_is_split_and_the_loop_runs_between(
    store: Store, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "INLINE_BATCH", 8)
    commits = record(store)
    threads: list[int] = []
    between: list[int] = []

    def ticker() -> None:  # counts loop turns while the burst commits
        between.append(len(commits))
        if len(commits) < 4:
            asyncio.get_running_loop().call_soon(ticker)

    asyncio.get_running_loop().call_soon(ticker)
    writes = [store._writer.submit(publishing(str(i), threads), small=True) for i in range(25)]
    assert await asyncio.gather(*writes) == [str(i) for i in range(25)]
    assert [len(c) for c in commits] == [1, 8, 8, 8]  # the first inline, then batches of 8
    assert threads == [LOOP_THREAD] * 25
    assert set(between) >= {1, 2, 3}  # the loop ran other callbacks between two batches
    seqs = [seq for commit in commits for seq in commit]
    assert seqs == sorted(seqs) and names(raw) == [str(i) for i in range(25)]


async def test_a_write_that_is_not_small_sends_the_group_to_the_thread(
    store: Store, raw: sqlite3.Connection
) -> None:
    commits = record(store)
    threads: list[int] = []
    big: list[int] = []
    writes = [store._writer.submit(publishing(str(i), threads), small=True) for i in range(5)]
    writes.insert(3, store._writer.submit(publishing("big", big)))
    await asyncio.gather(*writes)
    assert big and big[0] != LOOP_THREAD  # a write not marked small never runs on the loop
    assert threads[0] == LOOP_THREAD and LOOP_THREAD not in threads[1:]  # the others joined it
    seqs = [seq for commit in commits for seq in commit]
    assert seqs == sorted(seqs) and names(raw) == ["0", "1", "2", "big", "3", "4"]


async def test_a_group_meeting_another_connections_lock_waits_in_the_thread(
    store: Store, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "GROUP_COMMIT_HOLD_S", 0.0)  # the lone write at the end
    raw.execute("BEGIN IMMEDIATE")
    threads: list[int] = []
    try:
        writes = [
            asyncio.create_task(store._writer.submit(publishing(str(i), threads), small=True))
            for i in range(5)
        ]
        await wait_for(
            lambda: store._writer._draining and store._writer.queued == 0,
            message="the thread took the group and waits for the lock",
        )
        assert not any(w.done() for w in writes) and threads == []
    finally:
        raw.execute("COMMIT")
    assert await asyncio.gather(*writes) == [str(i) for i in range(5)]
    assert threads and LOOP_THREAD not in threads
    assert not await yielded(store._writer.submit(publishing("lone"), small=True))  # inline again


async def test_small_writes_meeting_a_thread_commit_are_reported_after_it(store: Store) -> None:
    commits = record(store)
    writer = store._writer
    started, release = threading.Event(), threading.Event()

    def slow(ctx: WriteContext) -> str:
        started.set()
        release.wait(5)
        ctx.publish("test.inline", {"id": "slow"})
        return "slow"

    blocker = asyncio.create_task(writer.submit(slow))
    await wait_for(started.is_set, message="blocker running")
    release.set()
    group = [writer.submit(publishing(str(i)), small=True) for i in range(3)]
    assert await asyncio.gather(blocker, *group) == ["slow", "0", "1", "2"]
    seqs = [seq for commit in commits for seq in commit]
    assert seqs == sorted(seqs) and len(seqs) == 4


async def test_an_inline_group_starts_no_write_past_its_time_budget(
    store: Store, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "INLINE_BUDGET_S", 0.0)  # every op "overruns": one per group
    commits = record(store)
    threads: list[int] = []
    ops = [publishing(str(i), threads) for i in range(6)]
    ops[3] = failing  # a failing op counts as run (its savepoint rolled back alone)
    results = await asyncio.gather(
        *(store._writer.submit(op, small=True) for op in ops), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["str"] * 3 + ["InvalidInput"] + ["str"] * 2
    assert [len(c) for c in commits] == [1, 1, 1, 1, 1]  # each group ran one op, then yielded
    assert threads == [LOOP_THREAD] * 5
    assert names(raw) == ["0", "1", "2", "4", "5"]
