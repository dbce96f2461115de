"""The writer meets another connection's lock: a write waits for it up to ``busy_timeout`` (in
the writer's thread, never on the event loop), fails clearly past it, and the store goes on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import StoreError
from daemon.store import Store
from daemon.store.txn import WriteContext
from tests.helpers import wait_for

TIMEOUT_MS = 400
LOOP_THREAD = threading.get_ident()


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(db_path, StoreSettings(busy_timeout_ms=TIMEOUT_MS))
    try:
        yield store
    finally:
        await store.close()


def publishing(name: str, threads: list[int]) -> Callable[[WriteContext], str]:
    def op(ctx: WriteContext) -> str:
        threads.append(threading.get_ident())
        ctx.publish("test.locks", {"id": name})
        return name

    return op


async def test_a_write_waits_in_the_thread_for_a_short_lock(
    store: Store, raw: sqlite3.Connection
) -> None:
    raw.execute("BEGIN IMMEDIATE")
    threads: list[int] = []
    write = asyncio.create_task(store._writer.submit(publishing("waited", threads), small=True))
    await wait_for(
        lambda: store._writer._draining and store._writer.queued == 0,
        message="the thread took the write and waits for the lock",
    )
    assert not write.done()
    raw.execute("COMMIT")  # released well within busy_timeout
    assert await write == "waited"
    assert threads and threads[0] != LOOP_THREAD


async def test_a_write_fails_clearly_after_busy_timeout_and_the_store_goes_on(
    store: Store, raw: sqlite3.Connection
) -> None:
    raw.execute("BEGIN IMMEDIATE")
    threads: list[int] = []
    start = time.monotonic()
    with pytest.raises(StoreError, match="locked"):
        await store._writer.submit(publishing("refused", threads))
    waited = time.monotonic() - start
    assert waited >= TIMEOUT_MS / 1000 * 0.9  # it did wait busy_timeout, not fail at once
    assert threads == []  # the op never ran: nothing was written
    # Still locked: a small write must not block the loop (no busy_timeout left on the
    # connection by the failed wait): it goes to the thread at once.
    loop = asyncio.get_running_loop()
    turn = loop.time()
    queued = asyncio.create_task(store._writer.submit(publishing("queued", threads), small=True))
    await asyncio.sleep(0)  # not a sync: one loop turn, in which the task tries inline
    assert loop.time() - turn < TIMEOUT_MS / 1000 / 2
    assert not queued.done()
    raw.execute("COMMIT")
    assert await queued == "queued"
    assert await store.workspaces.create(name="after") is not None
    with sqlite3.connect(store.path) as check:
        topics = check.execute(
            "SELECT json_extract(data, '$.id') FROM changelog WHERE topic = 'test.locks'"
        ).fetchall()
    assert topics == [("queued",)]
