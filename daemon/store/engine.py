"""Connections and the group-committing writer.

Two aiosqlite connections to one WAL database: the writer's (all writes, serialised through
``Writer``) and the reader's (``query_only``; WAL lets it read while the writer commits). Every
call into a connection is one thread hop, so a transaction or a query is always run as ONE
function in the connection's thread (``run_in_thread``), never statement by statement.

Group commit: ``Writer.submit`` queues a mutation; a single writer task takes everything queued
and runs it as one transaction. A lone write is taken at once; writes arriving while a batch
commits form the next batch. Commit listeners run on the event loop right after the commit and
before any writer's ``await`` returns (the futures are resolved after the listeners ran).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from daemon.config import StoreSettings
from daemon.errors import ShuttingDown, StoreError
from daemon.events import ChangeEvent
from daemon.store.txn import BatchOutcome, WriteContext, WriteOp

logger = logging.getLogger(__name__)

T = TypeVar("T")
Listener = Callable[[Sequence[ChangeEvent]], None]
MAX_BATCH = 1000


async def connect(
    path: Path,
    settings: StoreSettings,
    *,
    query_only: bool = False,
    prepare: Callable[[sqlite3.Connection], None] | None = None,
) -> aiosqlite.Connection:
    """Open one connection with the store's pragmas; ``prepare`` runs before any of them."""
    try:
        conn = await aiosqlite.connect(path, isolation_level=None, cached_statements=256)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        await run_in_thread(conn, _configure, settings, query_only, prepare)
    except sqlite3.Error as exc:
        await conn.close()
        raise StoreError(f"cannot open {path}: {exc}") from exc
    except BaseException:
        await conn.close()
        raise
    return conn


def _configure(
    raw: sqlite3.Connection,
    settings: StoreSettings,
    query_only: bool,
    prepare: Callable[[sqlite3.Connection], None] | None,
) -> None:
    raw.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_ms)}")
    if prepare is not None:
        prepare(raw)
    mode = raw.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot switch the database to WAL (journal_mode is {mode})")
    raw.execute(f"PRAGMA synchronous = {settings.synchronous}")
    raw.execute("PRAGMA foreign_keys = ON")
    if query_only:
        raw.execute("PRAGMA query_only = ON")


async def run_in_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(raw_sqlite3_connection, *args)`` in the connection's thread: one hop."""
    raw = conn._connection
    if raw is None or not conn._running:
        raise ShuttingDown("the store is closed")
    result: T = await conn._execute(fn, raw, *args)  # type: ignore[no-untyped-call]
    return result


class Writer:
    """Serialises every write of the store through one task and one connection."""

    def __init__(self, conn: aiosqlite.Connection, ctx: WriteContext) -> None:
        self._conn = conn
        self._ctx = ctx
        self._queue: list[tuple[WriteOp, asyncio.Future[Any]]] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._closing = False
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self.last_seq = 0
        self.first_seq = 0

    def start(self, *, last_seq: int, first_seq: int) -> None:
        self.last_seq, self.first_seq = last_seq, first_seq
        self._task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    async def submit(self, op: WriteOp) -> Any:
        """Queue ``op``; return its result once its transaction has committed."""
        if self._closing:
            raise ShuttingDown()
        if self._task is None or self._task.done():
            raise StoreError("the store's writer is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return await future

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        self._listeners.append(fn)

        def remove() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return remove

    async def close(self) -> None:
        """Refuse new writes, commit everything already queued, stop the task."""
        self._closing = True
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[WriteOp, asyncio.Future[Any]]]) -> None:
        ops = [op for op, _ in batch]
        try:
            outcome: BatchOutcome = await run_in_thread(self._conn, _run_batch, self._ctx, ops)
        except Exception as exc:
            logger.exception("store.commit.failed ops=%d", len(ops))
            error = exc if isinstance(exc, ShuttingDown) else StoreError(f"commit failed: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.last_seq, self.first_seq = outcome.last_seq, outcome.first_seq
        if outcome.events:
            self._notify(outcome.events)
        for (_, future), (ok, value) in zip(batch, outcome.results, strict=True):
            if future.done():  # the caller was cancelled; the write still committed
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _notify(self, events: list[ChangeEvent]) -> None:
        for fn in list(self._listeners):
            try:
                fn(events)
            except Exception:
                logger.exception("store.listener.failed listener=%r", fn)


def _run_batch(_raw: sqlite3.Connection, ctx: WriteContext, ops: Sequence[WriteOp]) -> BatchOutcome:
    return ctx.run_batch(ops)
