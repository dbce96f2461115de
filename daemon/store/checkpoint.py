"""Background WAL checkpoints for the writer (see ``Checkpointer``)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from urllib.parse import quote

logger = logging.getLogger(__name__)

CHECKPOINT_BUSY_S = 1.0


class Checkpointer:
    """Keeps the WAL short without stalling commits.

    SQLite's auto-checkpoint runs inside the COMMIT that crosses its threshold (1000 pages by
    default) and syncs the files: a stall of several milliseconds for one write in a hundred
    or so, which was the whole of a write's p99. Here checkpoints are PASSIVE (they copy what
    they can without waiting for readers or writers, so commits go on meanwhile) and run on a
    connection of their own in the default executor, never in the writer's thread.

    Under a steady stream of commits a PASSIVE checkpoint never catches up with the very last
    frames, so SQLite never starts the WAL over; the writer's own auto-checkpoint, raised to
    ``engine.WAL_BACKSTOP_PAGES``, does that (it only has to copy the few frames not yet copied
    here, plus the syncs): one short stall per ~16 MiB of WAL instead of one per 4 MiB with all
    the copying, and a WAL that stays bounded.

    Its size: the writer's ``journal_size_limit`` truncates the WAL when it starts over, which
    needs a commit after a complete checkpoint. So that an idle daemon does not keep a WAL of
    its busiest size, a checkpoint the writer asks for once it has been idle a while
    (``start(idle=True)``) that copies everything and finds the file larger than
    ``wal_size_limit`` truncates it (``TRUNCATE``) without waiting:
    a writer or a reader that holds the WAL makes it give up until the next checkpoint, and a
    commit meeting it waits for the lock as for any other connection.
    """

    def __init__(self, path: str, *, wal_size_limit: int = -1) -> None:
        self._path = path
        self._wal_size_limit = wal_size_limit
        self._db: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None
        self._closed = False
        self.checkpoints = 0

    def start(self, loop: asyncio.AbstractEventLoop, *, idle: bool = False) -> bool:
        """Start a checkpoint unless one is running; ``True`` if it started. ``idle``: the
        writer has committed nothing for a while, so a WAL left larger than the limit may be
        truncated (never under a stream of commits: it would take the write lock from them)."""
        if self._running is not None or self._closed:
            return False
        try:
            self._running = loop.run_in_executor(None, self._checkpoint, idle)
        except RuntimeError:  # the executor is shut down: the loop is ending
            return False
        self._running.add_done_callback(self._finished)
        return True

    async def close(self) -> None:
        """Wait for a running checkpoint, then close the connection."""
        self._closed = True
        if self._running is not None:
            await asyncio.wait([self._running])
        if self._db is not None:
            self._db.close()
            self._db = None

    def _checkpoint(self, idle: bool) -> None:  # in an executor thread, one at a time
        if self._db is None:  # (never creates the file: deleted meanwhile, it fails)
            self._db = sqlite3.connect(
                file_uri(self._path, "rw"),
                uri=True,
                timeout=CHECKPOINT_BUSY_S,
                isolation_level=None,
                check_same_thread=False,
            )
        busy, log, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if not idle or busy or log != copied or self._wal_size_limit < 0:
            return
        try:
            size = os.stat(self._path + "-wal").st_size
        except OSError:
            return
        if size > self._wal_size_limit:
            self._db.execute("PRAGMA busy_timeout = 0")  # give up at once rather than wait
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_BUSY_S * 1000)}")

    def _finished(self, future: asyncio.Future[None]) -> None:
        self._running = None
        error = None if future.cancelled() else future.exception()
        if error is not None:
            logger.warning("store.checkpoint.failed error=%s", error)
        else:
            self.checkpoints += 1


def file_uri(path: str | os.PathLike[str], mode: str) -> str:
    """A ``file:`` URI opening the database at ``path`` in ``mode`` (``ro``, ``rw``: neither
    creates it, unlike a plain path, which makes a new empty database where the file was
    deleted); its bytes percent-encoded, so any file name works, UTF-8 or not."""
    return f"file:{quote(os.fsencode(path))}?mode={mode}"
