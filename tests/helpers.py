"""Shared test helpers: one time unit, waiting on conditions instead of sleeping, and a database
file damaged on purpose."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from daemon.config import StoreSettings
from daemon.store import Store

# Every timeout in the tests is a multiple of MS; SYNCD_TESTS_TIMEOUT_FACTOR scales them on slow CI.
MS = 0.001 * float(os.environ.get("SYNCD_TESTS_TIMEOUT_FACTOR", "1"))


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10_000 * MS,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
    interval: float = 10 * MS,
    message: str = "condition",
) -> None:
    """Poll ``predicate`` until it is true; fail the test with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], bool],
    *,
    timeout: float = 10_000 * MS,
    interval: float = 10 * MS,
    message: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        time.sleep(interval)


def overwrite_a_leaf_page(path: Path, table: str = "messages") -> None:
    """One leaf page of ``table`` overwritten with garbage (everything checkpointed first)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        leaves = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,),
        ).fetchall()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with path.open("r+b") as f:
        f.seek((leaves[len(leaves) // 2][0] - 1) * page_size)
        f.write(b"\xa5" * page_size)


async def store_with_messages(path: Path, count: int = 200) -> tuple[Store, str, str]:
    """A store at ``path`` holding one workspace, one conversation and ``count`` messages of
    500 characters (enough pages to damage one); the store (open), workspace and conversation
    ids."""
    store = await Store.open(path, StoreSettings())
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    for _ in range(count):
        await store.messages.create(conversation_id=conv["id"], role="user", content="x" * 500)
    return store, ws["id"], conv["id"]
