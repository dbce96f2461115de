"""Connections and the group-committing writer.

Two aiosqlite connections to one WAL database: the writer's (all writes, serialised through
``Writer``) and the reader's (``query_only``; WAL lets it read while the writer commits). Every
call into a connection is one thread hop, so a transaction or a query is always run as ONE
function in the connection's thread (``run_in_thread``), never statement by statement.

Group commit: ``Writer.submit`` queues a mutation; the writer's connection thread takes
everything queued as one transaction, and takes what queued meanwhile as soon as it committed
(one hop there, one back; no writer task). Commit listeners run on the event loop right after
the commit and before any writer's ``await`` returns (the futures are resolved after the
listeners ran); so do the push listeners, told of the workspaces whose outbox a commit grew
with no event saying so (``WriteContext.queue_push``).

Inline writes: a write its caller marks ``small`` (one short transaction: a row, its outbox and
changelog entries) that finds the writer idle runs at once on the event loop's thread, on the
same connection, instead of paying the two cross-thread wake-ups. Whoever holds the writer's
claim (``Writer._draining``) is the only user of the connection, so the loop and the thread
never use it at once; the connection is opened with ``check_same_thread=False`` for this.
Small writes that meet each other (concurrent writers) are group-committed on the loop's thread
too, one transaction per loop turn, so the loop and the thread do not fight over the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from daemon.config import StoreSettings
from daemon.errors import DaemonError, ShuttingDown, StoreError
from daemon.events import ChangeEvent
from daemon.store.checkpoint import Checkpointer
from daemon.store.failures import database_file, read_failure, store_failure
from daemon.store.txn import BatchOutcome, WriteContext, WriteOp

logger = logging.getLogger(__name__)

T = TypeVar("T")
Listener = Callable[[Sequence[ChangeEvent]], None]
PushListener = Callable[[frozenset[str]], None]
Pending = tuple[WriteOp, "asyncio.Future[Any]"]
MAX_BATCH = 1000
MAX_INLINE_PER_TURN = 16  # a task writing in a loop yields to the others at least this often
#: Small writes group-committed in one inline transaction at most (bounds the loop's hold:
#: tens of µs each, so a few ms at most); more wait for the next loop turn.
INLINE_BATCH = 64
#: ...and no op of an inline group starts past this much time (some small writes are slow:
#: a long message body); the rest wait for the next loop turn.
INLINE_BUDGET_S = 0.002
#: After a batch of several writes committed (writers are concurrent), small writes keep being
#: grouped for this long: group commit serves many writers better than one-by-one writes.
GROUP_COMMIT_HOLD_S = 0.005
CHECKPOINT_EVERY = 64  # committed batches between two background checkpoints,
CHECKPOINT_ROWS = 4000  # or rows they changed (every pulled page of 4000 messages and events)
WAL_BACKSTOP_PAGES = 4096  # the writer checkpoints itself only past this (16 MiB of WAL)
#: ``PRAGMA journal_size_limit``: once the WAL starts over, SQLite truncates it to this, and
#: the checkpointer truncates an idle WAL past it (checkpoint.py). Without it the WAL kept its
#: largest size (17-28 MB after a busy spell) until the daemon restarted.
WAL_SIZE_LIMIT = 4 << 20
#: A commit with no idle checkpoint pending arms one this long after it; it runs once that long
#: passed without a commit, so a burst's last commits are checkpointed and the WAL truncated
#: even if nothing follows, and never while commits stream (engine._checkpoint_after_burst).
IDLE_CHECKPOINT_S = 1.0


async def connect(
    path: Path,
    settings: StoreSettings,
    *,
    query_only: bool = False,
    prepare: Callable[[sqlite3.Connection], None] | None = None,
) -> aiosqlite.Connection:
    """Open one connection with the store's pragmas; ``prepare`` runs before any of them.

    ``check_same_thread`` is off: the writer's connection also runs inline writes on the event
    loop's thread (never at the same time as its own thread; see ``Writer``).
    """
    opening = aiosqlite.connect(
        path, isolation_level=None, cached_statements=256, check_same_thread=False
    )
    try:
        conn = await opening
    except BaseException as exc:
        await _worker_ended(opening)
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot open {path}: {exc}") from exc
        raise
    try:
        await run_in_thread(conn, _configure, settings, query_only, prepare)
    except sqlite3.Error as exc:
        await conn.close()
        raise StoreError(f"cannot open {path}: {exc}") from exc
    except BaseException:
        await conn.close()
        raise
    return conn


async def _worker_ended(opening: aiosqlite.Connection) -> None:
    """Wait for the thread of a connection that failed to open to end.

    aiosqlite stops it (queues its last job) without waiting: that job reports to the event
    loop, and if the loop is closed by then (the daemon fails to start and exits at once) the
    thread dies with "RuntimeError: Event loop is closed" printed on stderr. Its last job is
    already queued, so the join is short.
    """
    thread = opening._thread
    if thread.is_alive():
        await asyncio.get_running_loop().run_in_executor(None, thread.join)


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
    try:
        result: T = await conn._execute(fn, raw, *args)  # type: ignore[no-untyped-call]
    except sqlite3.DatabaseError as exc:  # corrupt pages: said, not a bare internal error
        damaged = read_failure(exc)
        if damaged is None:
            raise
        logger.error("store.read.failed error=%s", exc)
        raise damaged from exc
    return result


class Writer:
    """Serialises every write of the store through one connection, one batch at a time.

    No task runs the writer, and the event loop never hands batches over one by one: ``submit``
    appends the write to ``_pending`` and, if the connection's thread is not already draining
    it, queues one ``_drain`` job there. ``_drain`` takes everything pending (at most
    MAX_BATCH), runs it as one transaction, queues itself again if more is pending (else
    releases the claim), then reports the outcome to the loop with ``call_soon_threadsafe``.
    So the thread starts the next batch as soon as a commit is done, without waiting for the
    loop to notice, and writes submitted meanwhile share the next transaction. A lone write
    costs one hop there (a ``SimpleQueue.put`` waking the thread blocked on it) and one back.
    Reports run in commit order; each runs the listeners, then resolves its writers.

    The hop reuses aiosqlite's worker thread and its job queue (``Connection._tx``, whose items
    are ``(future or None, function)``; with ``None`` the worker runs the function and reports
    nothing, so ``_drain`` reports itself). aiosqlite stays the library for opening, reads
    and closing, and ``_drain`` queuing itself again (rather than looping) lets other jobs of
    that connection take their turn.
    tests/component/store/test_writer_hop.py pins this private contract.

    Inline: a ``small`` write that finds the writer idle (no batch queued or running, every
    commit reported) claims the connection and runs as its own transaction right in
    ``submit``, on the loop's thread: no hop at all. Only one task writes inline per loop turn:
    other tasks writing in the same turn are concurrent writers, so they queue up and share
    one transaction (an inline group, below). That task's await returns without yielding, so
    past ``MAX_INLINE_PER_TURN`` writes in one turn it queues up too (and the loop serves the
    others meanwhile). An inline write never waits for the database lock: if another
    connection (another process) holds it, the write goes to the thread, which waits
    ``busy_timeout`` as usual (``WriteContext.try_begin`` and ``begin``: while the writer
    runs, the connection's own timeout is 0 and only the thread's BEGIN raises it). While
    writers are concurrent (a batch of several just committed), small writes are grouped for
    ``GROUP_COMMIT_HOLD_S``: group commit serves many writers better than one-by-one writes.

    Inline group commit: small writes that cannot run inline at once (another write went inline
    this turn, or writers are concurrent) and find the writer idle queue up as usual, but the
    claim goes to ``_drain_inline``, called soon on the loop: it runs up to ``INLINE_BATCH`` of
    them (starting none past ``INLINE_BUDGET_S``) as one transaction on the loop's thread
    (savepoints as in the thread) and reports at once: no thread hop and no GIL hand-over per
    batch (with 50 API clients writing at once, ~10 % less daemon CPU per write). It hands the
    claim to the thread instead when a write that is not small is queued, when a commit is not
    reported yet (reports stay in commit order), or when another connection holds the lock.
    Nothing else may use the writer's connection while the writer runs.
    """

    def __init__(self, conn: aiosqlite.Connection, ctx: WriteContext) -> None:
        self._conn = conn
        self._ctx = ctx
        self._lock = threading.Lock()  # guards _pending and _draining (loop and thread)
        self._pending: list[Pending] = []
        self._pending_big = False  # a write that is not small is pending: the thread drains
        self._draining = False  # the claim: a _drain job queued or running, or inline work
        self._inline_ready = False  # set by _prepare once it knows the connection's busy_timeout
        self._turn_open = False  # a write went inline this loop turn...
        self._turn_task: asyncio.Task[Any] | None = None  # ...from this task...
        self._turn_inline = 0  # ...this many times
        self._outstanding = 0  # submitted, not yet reported (event loop only)
        self._grouping_until = 0.0  # loop time until which small writes are grouped
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Future[None] | None = None
        self._listeners: list[Listener] = []
        self._push_listeners: list[PushListener] = []
        self.checkpointer: Checkpointer | None = None  # set by start (a file-backed database)
        self._since_checkpoint = 0
        self._changes_since_checkpoint = 0
        self._idle_checkpoint: asyncio.TimerHandle | None = None
        self._commits = 0  # batches committed (the idle checkpoint's clock)
        self.last_seq = 0
        self.first_seq = 0

    @property
    def clock_wall_ms(self) -> int:
        """The wall part of the clock's last value (read on any thread: one int, no lock)."""
        return self._ctx.clock.wall_ms

    def start(self, *, last_seq: int, first_seq: int) -> None:
        self.last_seq, self.first_seq = last_seq, first_seq
        self._loop = asyncio.get_running_loop()
        self._prepare()  # on the loop's thread: nobody else uses the connection yet

    async def submit(self, op: WriteOp, *, small: bool = False) -> Any:
        """Queue ``op``; return its result once its transaction has committed.

        ``small``: the caller vouches that ``op`` is one short transaction (tens of µs: a row and
        its bookkeeping, never a page, a snapshot or a compaction), so it may run inline on the
        event loop's thread when the writer is idle (see the class docstring), and that it
        touches nothing but the transaction and its context, so it may run again after a
        rollback (``WriteContext.run_batch``'s ``rerunnable``).
        """
        if self._closing:
            raise ShuttingDown()
        loop, conn = self._loop, self._conn
        if loop is None:
            raise StoreError("the store's writer is not running")
        if conn._connection is None or not conn._running:
            raise ShuttingDown("the store is closed")
        future: asyncio.Future[Any] = loop.create_future()
        self._outstanding += 1
        if not (small and self._inline_ready and self._run_inline(op, future)):
            with self._lock:
                self._pending.append((op, future))
                self._pending_big = self._pending_big or not small
                start, self._draining = not self._draining, True
            if start:
                if small and self._inline_ready:
                    loop.call_soon(self._drain_inline)
                else:
                    conn._tx.put_nowait((None, self._drain))
        return await future

    @property
    def queued(self) -> int:
        """Writes waiting for a transaction (not yet taken by the connection's thread)."""
        return len(self._pending)

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        return _add(self._listeners, fn)

    def add_push_listener(self, fn: PushListener) -> Callable[[], None]:
        return _add(self._push_listeners, fn)

    async def close(self) -> None:
        """Refuse new writes; return once everything already submitted has committed, and
        store the exact clock (``WriteContext.save_clock``) and the changelog's size."""
        self._closing = True
        if self._outstanding and self._loop is not None:
            if self._idle is None:
                self._idle = self._loop.create_future()
            await asyncio.shield(self._idle)
        try:  # queued behind any _drain still finishing: the connection is ours alone then
            await run_in_thread(self._conn, self._stopped)
        except (sqlite3.Error, ShuttingDown) as exc:  # the mark ahead of the clock stays
            logger.warning("store.clock.unsaved error=%s", exc)
        if self._idle_checkpoint is not None:
            self._idle_checkpoint.cancel()
            self._idle_checkpoint = None
        if self.checkpointer is not None:
            await self.checkpointer.close()

    # -- in the connection's thread ----------------------------------------------------------

    def _stopped(self, _raw: sqlite3.Connection) -> None:
        """The last job of a running writer: the connection waits for locks again as
        configured (its ``busy_timeout`` was 0 while the writer ran), then the clock and the
        changelog's size are saved."""
        self._ctx.restore_busy_timeout()
        self._ctx.save_clock()
        self._ctx.save_changelog_size()

    def _hand_back(self) -> None:
        """Release the claim, or pass it to a ``_drain`` job if writes are pending (either
        thread: the claim's holder calls this)."""
        with self._lock:
            if not self._pending:
                self._draining = False
                return
        self._conn._tx.put_nowait((None, self._drain))

    def _drain(self) -> None:
        """Run one batch of what is pending, report it, and come back for more."""
        with self._lock:
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            small = not self._pending_big  # every op taken is small (so rerunnable)
            if not self._pending:
                self._pending_big = False
            if not batch:
                self._draining = False
                return
        outcome: BatchOutcome | None = None
        error: BaseException | None = None
        try:
            outcome = self._ctx.run_batch([op for op, _ in batch], rerunnable=small)
        except BaseException as exc:  # reported to every writer of the batch, on the loop
            error = exc
        assert self._loop is not None
        # Release the claim before reporting, so that a write the report lets go on finds the
        # writer idle; no inline write can start before the report ran (``_outstanding``).
        self._hand_back()
        try:
            self._loop.call_soon_threadsafe(self._committed, batch, outcome, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            logger.warning("store.commit.unreported ops=%d (event loop closed)", len(batch))

    # -- on the event loop -------------------------------------------------------------------

    def _prepare(self) -> None:
        """Allow inline writes; keep statement journals in memory; hand checkpoints to the
        background (see ``Checkpointer``).

        Statement journals: inside a transaction, every statement that may fail halfway (any
        INSERT into a table with constraints), and every savepoint, journals the pages it
        changes that existed before it, so that it can be undone alone. SQLite keeps that
        journal in memory up to 64 KiB and then spills it to a temporary file, created,
        written and dropped each time: a pulled page's multi-row INSERTs spill every time, and
        so does a group commit's ``SAVEPOINT batch`` (WriteContext.run_batch). Measured on a
        replay of a 100k-row first sync (51 pages): the writer wrote 240 MB to the WAL and
        temporary files for a 103 MB database, 115 MB with ``temp_store = MEMORY``, and used
        ~13 % less CPU (6 alternated pairs); bench/bridge.py's 50 clients writing at once, 3
        alternated pairs: 94-98 µs of daemon CPU per write before, 63-85 after. The first
        sync's peak RSS did not change (a journal lives for one statement or one batch).
        Only this connection: a reader's large sort may still spill to disk.
        """
        raw = self._conn._connection
        if raw is None:
            return
        try:
            self._ctx.learn_busy_timeout()
            self._inline_ready = True
        except sqlite3.Error as exc:  # every write goes through the thread
            logger.warning("store.inline.unavailable error=%s", exc)
        try:
            raw.execute("PRAGMA temp_store = MEMORY")
        except sqlite3.Error as exc:  # statement journals spill to files, as by default
            logger.warning("store.temp_store.unchanged error=%s", exc)
        path = database_file(raw)
        if not path:  # an in-memory database: nothing to checkpoint
            return
        try:
            raw.execute(f"PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES}")
            raw.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:  # keep SQLite's own checkpoints
            logger.warning("store.checkpointer.unavailable error=%s", exc)
            return
        self.checkpointer = Checkpointer(path, wal_size_limit=WAL_SIZE_LIMIT)

    def _run_inline(self, op: WriteOp, future: asyncio.Future[Any]) -> bool:
        """Run a lone write now as its own transaction; ``False`` if it must go to the thread:
        the writer is busy or has unreported commits (listeners must run in commit order),
        another write went inline this loop turn, or another connection holds the lock."""
        assert self._loop is not None
        if self._outstanding != 1 or not self._may_inline(asyncio.current_task(self._loop)):
            return False
        if self._grouping_until and self._loop.time() < self._grouping_until:
            return False
        with self._lock:
            if self._draining or self._pending:
                return False
            self._draining = True
        try:
            ran = self._run_here([op])
        except BaseException:  # KeyboardInterrupt and the like: nobody waits for this write
            self._outstanding -= 1
            raise
        finally:
            self._hand_back()
        if ran is None:
            return False
        self._committed([(op, future)], *ran)
        return True

    def _run_here(
        self, ops: list[WriteOp], until: float = 0.0
    ) -> tuple[BatchOutcome | None, Exception | None] | None:
        """Run ``ops`` as one transaction on the loop's thread (the caller holds the claim):
        (outcome, None), or (None, the error to report); None when another connection holds
        the lock (nothing ran: the thread must wait for it)."""
        try:
            if not self._ctx.try_begin():
                return None
            return self._ctx.run_batch(ops, begun=True, until=until, rerunnable=True), None
        except Exception as exc:  # reported to the writers like a failed batch
            return None, exc

    def _drain_inline(self) -> None:
        """Group-commit pending small writes on the loop's thread (holding the claim), or hand
        the claim to the thread (see the class docstring)."""
        with self._lock:
            ready = not self._pending_big and self._outstanding == len(self._pending)
            batch = self._pending[:INLINE_BATCH] if ready else []
            del self._pending[: len(batch)]
        if not batch:
            self._conn._tx.put_nowait((None, self._drain))
            return
        try:
            ran = self._run_here([op for op, _ in batch], time.perf_counter() + INLINE_BUDGET_S)
        except BaseException:  # KeyboardInterrupt and the like: nobody waits for these writes
            self._outstanding -= len(batch)
            self._hand_back()
            raise
        if ran is None:  # another connection holds the lock: the thread waits
            with self._lock:
                self._pending[:0] = batch
            self._conn._tx.put_nowait((None, self._drain))
            return
        outcome, error = ran
        if outcome is not None:
            batch = self._requeue_unrun(batch, len(outcome.results))
        self._after_inline_batch()
        self._committed(batch, outcome, error)

    def _requeue_unrun(self, batch: list[Pending], done: int) -> list[Pending]:
        """The ops of ``batch`` that ran; the others go back to the front of the queue."""
        if done < len(batch):
            with self._lock:
                self._pending[:0] = batch[done:]
        return batch[:done]

    def _after_inline_batch(self) -> None:
        """Keep the claim for another inline batch if only small writes are pending (next loop
        turn: the loop serves the others meanwhile), else pass it on or release it."""
        with self._lock:
            inline = bool(self._pending) and not self._pending_big
        if inline:
            assert self._loop is not None
            self._loop.call_soon(self._drain_inline)
        else:
            self._hand_back()

    def _may_inline(self, task: asyncio.Task[Any] | None) -> bool:
        """One task per loop turn, at most ``MAX_INLINE_PER_TURN`` times (counts this one)."""
        if not self._turn_open:
            assert self._loop is not None
            self._loop.call_soon(self._new_turn)
            self._turn_open, self._turn_task, self._turn_inline = True, task, 1
            return True
        if self._turn_task is not task or self._turn_inline >= MAX_INLINE_PER_TURN:
            return False
        self._turn_inline += 1
        return True

    def _new_turn(self) -> None:
        self._turn_open, self._turn_task = False, None

    def _committed(
        self, batch: list[Pending], outcome: BatchOutcome | None, exc: BaseException | None
    ) -> None:
        """A batch's report: run the listeners, then resolve its writers."""
        if outcome is not None:
            self._resolve(batch, outcome)
        else:
            logger.error("store.commit.failed ops=%d", len(batch), exc_info=exc)
            if isinstance(exc, DaemonError):  # ShuttingDown, a full disk (failures.py), ...
                self._fail(batch, exc)
            elif isinstance(exc, sqlite3.Error):
                self._fail(batch, store_failure(exc, "commit failed", self._ctx.conn))
            else:
                error = StoreError(f"commit failed: {exc}")
                error.__cause__ = exc
                self._fail(batch, error)
        self._outstanding -= len(batch)
        if len(batch) > 1:
            assert self._loop is not None
            self._grouping_until = self._loop.time() + GROUP_COMMIT_HOLD_S
        if not self._outstanding and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)
        self._commits += 1
        self._since_checkpoint += 1
        self._changes_since_checkpoint += 0 if outcome is None else outcome.changes
        if self.checkpointer is not None:
            if (
                self._since_checkpoint >= CHECKPOINT_EVERY
                or self._changes_since_checkpoint >= CHECKPOINT_ROWS
            ):
                self._start_checkpoint()
            if self._idle_checkpoint is None and not self._closing:
                assert self._loop is not None
                self._idle_checkpoint = self._loop.call_later(
                    IDLE_CHECKPOINT_S, self._checkpoint_after_burst, self._commits
                )

    def _start_checkpoint(self, *, idle: bool = False) -> bool:
        assert self.checkpointer is not None and self._loop is not None
        if self.checkpointer.start(self._loop, idle=idle):
            self._since_checkpoint = self._changes_since_checkpoint = 0
            return True
        return False

    def _checkpoint_after_burst(self, armed_at: int) -> None:
        """``IDLE_CHECKPOINT_S`` after it was armed (at commit number ``armed_at``): if the
        writer committed nothing since, checkpoint what is left, truncating a WAL left larger
        than its limit (checkpoint.py: never under a stream of commits, whose write lock it
        would take); else look again later, so that happens once the writes stop."""
        self._idle_checkpoint = None
        if self._closing or self.checkpointer is None:
            return
        if self._commits == armed_at and self._start_checkpoint(idle=True):
            return
        assert self._loop is not None
        self._idle_checkpoint = self._loop.call_later(
            IDLE_CHECKPOINT_S, self._checkpoint_after_burst, self._commits
        )

    def _resolve(self, batch: list[Pending], outcome: BatchOutcome) -> None:
        self.last_seq, self.first_seq = outcome.last_seq, outcome.first_seq
        if outcome.events:
            self._notify(outcome.events)
        if outcome.pushes:
            self._notify_pushes(outcome.pushes)
        for (_, future), (ok, value) in zip(batch, outcome.results, strict=True):
            if future.done():  # the caller was cancelled; the write still committed
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    @staticmethod
    def _fail(batch: list[Pending], error: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)

    def _notify(self, events: list[ChangeEvent]) -> None:
        _call_each(self._listeners, events)

    def _notify_pushes(self, workspaces: frozenset[str]) -> None:
        _call_each(self._push_listeners, workspaces)


def _call_each(listeners: list[Any], arg: Any) -> None:
    """Call each listener with ``arg``; one that raises is logged and the others still run."""
    for fn in list(listeners):
        try:
            fn(arg)
        except Exception:
            logger.exception("store.listener.failed listener=%r", fn)


def _add(listeners: list[Any], fn: Any) -> Callable[[], None]:
    """Append ``fn`` to ``listeners``; the function that removes it."""
    listeners.append(fn)

    def remove() -> None:
        if fn in listeners:
            listeners.remove(fn)

    return remove
