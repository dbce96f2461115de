"""Inline writes: a small write that finds the writer idle runs on the event loop's thread as
its own transaction; writes that meet a busy writer (or each other) still share the thread's
transactions. The store's contract holds either way (see daemon/store/engine.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from daemon.errors import InvalidInput, ShuttingDown, StoreError
from daemon.events import ChangeEvent
from daemon.store import Store, engine
from daemon.store.txn import WriteContext
from tests.helpers import MS, wait_for

from .conftest import rows

BLOCK = 5_000 * MS
LOOP_THREAD = threading.get_ident()


def publishing(name: str, threads: list[int] | None = None) -> Callable[[WriteContext], str]:
    """A small write: one changelog entry; records the thread it ran in."""

    def op(ctx: WriteContext) -> str:
        if threads is not None:
            threads.append(threading.get_ident())
        ctx.publish("test.inline", {"id": name})
        return name

    return op


def failing(ctx: WriteContext) -> None:
    ctx.publish("test.inline", {"id": "failed"})
    raise InvalidInput("name", "refused")


def blocking(started: threading.Event, release: threading.Event) -> Callable[..., str]:
    def op(ctx: WriteContext) -> str:
        started.set()
        release.wait(BLOCK)
        ctx.publish("test.inline", {"id": "blocker"})
        return "blocker"

    return op


def record(store: Store) -> list[list[int]]:
    """The seqs of each commit the listener saw, in the order it saw them."""
    commits: list[list[int]] = []
    store.add_commit_listener(lambda events: commits.append([e.seq for e in events]))
    return commits


async def yielded(write: Awaitable[Any]) -> bool:
    """Await ``write``; True if it let the loop run something else before it returned (it
    was queued for a later transaction), False if it ran at once (a lone inline write)."""
    ran: list[bool] = []
    asyncio.get_running_loop().call_soon(ran.append, True)
    await write
    return bool(ran)


def names(raw: sqlite3.Connection) -> list[str]:
    return [
        str(name)
        for (name,) in rows(
            raw,
            "SELECT json_extract(data, '$.id') FROM changelog WHERE topic = 'test.inline'"
            " ORDER BY seq",
        )
    ]


async def test_a_lone_small_write_runs_inline_and_commits_before_its_await_returns(
    store: Store, raw: sqlite3.Connection
) -> None:
    threads: list[int] = []
    seen: list[Sequence[ChangeEvent]] = []
    store.add_commit_listener(seen.append)
    assert await store._writer.submit(publishing("one", threads), small=True) == "one"
    assert threads == [LOOP_THREAD]
    assert [e.data["id"] for events in seen for e in events] == ["one"]  # listener ran first
    assert names(raw) == ["one"]  # committed: another connection sees it
    assert store._writer.last_seq == seen[0][0].seq


async def test_writes_are_not_inline_unless_marked_small(store: Store) -> None:
    threads: list[int] = []
    await store._writer.submit(publishing("big", threads))
    assert threads and threads[0] != LOOP_THREAD


@pytest.mark.usefixtures("untimed_groups")
async def test_a_burst_of_concurrent_writes_is_group_committed_in_seq_order(
    store: Store, raw: sqlite3.Connection
) -> None:
    commits = record(store)
    threads: list[int] = []
    ops = [publishing(str(i), threads) for i in range(50)]
    results = await asyncio.gather(*(store._writer.submit(op, small=True) for op in ops))
    assert results == [str(i) for i in range(50)]
    assert len(commits[0]) == 1  # the first went inline on its own...
    assert len(commits) == 2  # ...the others queued up behind it and shared one transaction,
    assert threads == [LOOP_THREAD] * 50  # group-committed on the loop's thread (no hop)
    seqs = [seq for commit in commits for seq in commit]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    assert names(raw) == [str(i) for i in range(50)]


@pytest.mark.usefixtures("untimed_groups")
async def test_after_a_group_commit_small_writes_keep_grouping_for_a_moment(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "GROUP_COMMIT_HOLD_S", 3600.0)  # hold "for a moment": forever
    commits = record(store)
    ops = [publishing(str(i)) for i in range(20)]
    await asyncio.gather(*(store._writer.submit(op, small=True) for op in ops))
    assert [len(c) for c in commits] == [1, 19]  # a batch of several committed...
    # ...so a lone write right after is queued for the next group, not run at once
    assert await yielded(store._writer.submit(publishing("lone"), small=True))
    assert [len(c) for c in commits] == [1, 19, 1]


async def test_once_the_hold_is_over_a_lone_write_goes_inline_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "GROUP_COMMIT_HOLD_S", 0.0)
    ops = [publishing(str(i)) for i in range(20)]
    await asyncio.gather(*(store._writer.submit(op, small=True) for op in ops))
    after: list[int] = []
    assert not await yielded(store._writer.submit(publishing("lone", after), small=True))
    assert after == [LOOP_THREAD]


async def test_a_failing_inline_write_rolls_back_only_itself(
    store: Store, raw: sqlite3.Connection
) -> None:
    commits = record(store)
    with pytest.raises(InvalidInput):
        await store._writer.submit(failing, small=True)
    assert names(raw) == [] and commits == []
    assert await store._writer.submit(publishing("after"), small=True) == "after"
    assert names(raw) == ["after"]


async def test_a_failing_write_in_a_burst_rolls_back_only_itself(
    store: Store, raw: sqlite3.Connection
) -> None:
    ops: list[Callable[[WriteContext], Any]] = [publishing(str(i)) for i in range(10)]
    ops[0] = ops[5] = failing  # the inline one and one in the thread's batch
    results = await asyncio.gather(
        *(store._writer.submit(op, small=True) for op in ops), return_exceptions=True
    )
    assert [type(r) for r in results].count(InvalidInput) == 2
    assert names(raw) == [str(i) for i in range(10) if i not in (0, 5)]


async def test_a_small_write_meeting_a_busy_writer_joins_the_thread(store: Store) -> None:
    started, release = threading.Event(), threading.Event()
    blocker = asyncio.create_task(store._writer.submit(blocking(started, release)))
    await wait_for(started.is_set, message="blocker running")
    threads: list[int] = []
    queued = asyncio.create_task(store._writer.submit(publishing("queued", threads), small=True))
    await wait_for(lambda: store._writer.queued == 1, message="small write queued")
    release.set()
    assert await asyncio.gather(blocker, queued) == ["blocker", "queued"]
    assert threads and threads[0] != LOOP_THREAD


async def test_an_inline_write_never_overtakes_an_unreported_commit(
    store: Store, raw: sqlite3.Connection
) -> None:
    commits = record(store)
    writer = store._writer
    started, release = threading.Event(), threading.Event()
    blocker = asyncio.create_task(writer.submit(blocking(started, release)))
    await wait_for(started.is_set, message="blocker running")
    drained = threading.Event()
    store._writer_conn._tx.put_nowait((None, drained.set))  # runs once the thread is idle
    release.set()
    assert drained.wait(BLOCK)  # blocks the loop: the blocker committed, not yet reported
    threads: list[int] = []
    assert await yielded(writer.submit(publishing("next", threads), small=True))  # waited
    assert await blocker == "blocker"
    seqs = [seq for commit in commits for seq in commit]
    assert seqs == sorted(seqs) and len(seqs) == 2  # reported after the blocker's commit
    assert names(raw) == ["blocker", "next"]


async def test_a_task_writing_in_a_loop_yields_to_the_others(store: Store) -> None:
    threads: list[int] = []
    ran: list[bool] = []
    asyncio.get_running_loop().call_soon(ran.append, True)  # another task's turn
    for i in range(engine.MAX_INLINE_PER_TURN):  # awaits that never yield to the loop
        await store._writer.submit(publishing(str(i), threads), small=True)
    assert ran == []
    assert threads == [LOOP_THREAD] * engine.MAX_INLINE_PER_TURN
    assert await yielded(store._writer.submit(publishing("yields", threads), small=True))
    assert ran == [True]


async def test_a_locked_database_sends_the_write_to_the_thread_without_blocking_the_loop(
    store: Store, raw: sqlite3.Connection
) -> None:
    raw.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    try:
        threads: list[int] = []
        write = asyncio.create_task(store._writer.submit(publishing("late", threads), small=True))
        ticks = 0

        def loop_runs() -> bool:
            nonlocal ticks
            ticks += 1
            return ticks > 3 and store._writer._draining and store._writer.queued == 0

        await wait_for(loop_runs, message="the loop keeps running, the thread waits")
        assert not write.done() and threads == []  # waiting for the lock in the thread
    finally:
        raw.execute("COMMIT")
    assert await write == "late"
    assert threads == [threads[0]] and threads[0] != LOOP_THREAD
    assert await store._writer.submit(publishing("after", threads), small=True) == "after"
    assert threads[-1] == LOOP_THREAD  # the lock is gone: inline again


async def test_close_commits_queued_writes_then_refuses_new_ones(
    store: Store, raw: sqlite3.Connection
) -> None:
    started, release = threading.Event(), threading.Event()
    writer = store._writer
    blocker = asyncio.create_task(writer.submit(blocking(started, release)))
    await wait_for(started.is_set, message="blocker running")
    queued = [asyncio.create_task(writer.submit(publishing(str(i)), small=True)) for i in range(5)]
    await wait_for(lambda: writer.queued == 5, message="5 writes queued")
    closing = asyncio.create_task(store.close())
    await wait_for(lambda: writer._closing, message="closing")
    with pytest.raises(ShuttingDown):
        await writer.submit(publishing("refused"), small=True)
    release.set()
    await closing
    assert await asyncio.gather(blocker, *queued) == ["blocker", "0", "1", "2", "3", "4"]
    assert names(raw) == ["blocker", "0", "1", "2", "3", "4"]
    with pytest.raises((ShuttingDown, StoreError)):
        await writer.submit(publishing("after close"), small=True)
