"""Background WAL checkpoints for the writer (see ``Checkpointer``)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

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
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None
        self._closed = False
        self.checkpoints = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start a checkpoint unless one is running; ``True`` if it started."""
        if self._running is not None or self._closed:
            return False
        try:
            self._running = loop.run_in_executor(None, self._checkpoint)
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

    def _checkpoint(self) -> None:  # in an executor thread, one at a time
        if self._db is None:
            self._db = sqlite3.connect(
                self._path, timeout=CHECKPOINT_BUSY_S, isolation_level=None, check_same_thread=False
            )
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _finished(self, future: asyncio.Future[None]) -> None:
        self._running = None
        error = None if future.cancelled() else future.exception()
        if error is not None:
            logger.warning("store.checkpoint.failed error=%s", error)
        else:
            self.checkpoints += 1
