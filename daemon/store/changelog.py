"""The changelog: every visible change with a monotonically increasing ``seq`` (UI events, replay).

Seqs are contiguous: each committed entry gets the previous seq + 1 (a rolled-back write
consumes none), so a reader can detect a gap by arithmetic. Entries are kept up to
``StoreSettings.changelog_retain`` of them and ``changelog_retain_bytes`` of their data (the
newest always: changelog_size.py); older ones are pruned in the same transaction that adds new
ones. A reader asking for entries after a ``seq`` older than ``first_seq() - 1`` has missed
pruned entries and must refetch (invariant I7).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Final

import aiosqlite
import orjson

from daemon.errors import InvalidInput, StoreUnavailable
from daemon.events import ChangeEvent
from daemon.store.base import integer
from daemon.store.engine import Writer, run_in_thread
from daemon.store.sql import changelog_read_sql

MAX_READ = 10_000
logger = logging.getLogger(__name__)


class Changelog:
    def __init__(self, writer: Writer, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader

    async def read_since(self, seq: int, limit: int = 1000) -> list[ChangeEvent]:
        """Committed entries with ``seq`` greater than the given one, in seq order;
        StoreUnavailable (reason ``damaged``) when they cannot be read."""
        seq = integer("seq", seq)
        limit = integer("limit", limit)
        if not 1 <= limit <= MAX_READ:
            raise InvalidInput("limit", f"must be between 1 and {MAX_READ}")
        return await run_in_thread(self._reader, _read, seq, limit)

    async def last_seq(self) -> int:
        """The seq of the newest committed entry (0 when there never was one).

        Updated on the event loop right before commit listeners run, so a listener registered
        before reading it receives exactly the entries after it.
        """
        return self._writer.last_seq

    async def first_seq(self) -> int:
        """The seq of the oldest retained entry (``last_seq() + 1`` when none is retained)."""
        first = self._writer.first_seq
        return first if first else self._writer.last_seq + 1


#: What a reader is told when the changelog cannot be read (not "refetch": the entries are
#: there, the file is damaged, and a refetch would only hide it).
UNREADABLE: Final = (
    "the store could not read its changelog: the database is damaged"
    " (run PRAGMA integrity_check on it; see the daemon's log)"
)


def _read(conn: sqlite3.Connection, seq: int, limit: int) -> list[ChangeEvent]:
    compiled = changelog_read_sql()
    try:
        found = conn.execute(compiled.sql, compiled.params({"after": seq, "_limit": limit}))
        return [ChangeEvent(s, topic, orjson.loads(data)) for s, topic, data in found.fetchall()]
    except (sqlite3.DatabaseError, orjson.JSONDecodeError) as exc:  # (not closed or misuse)
        logger.error("store.changelog.unreadable after=%d error=%s", seq, exc)
        raise StoreUnavailable("damaged", UNREADABLE) from exc
