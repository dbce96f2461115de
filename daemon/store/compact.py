"""Give back the disk space of freed pages: ``VACUUM`` (``syncd compact``, offline).

SQLite reuses the pages that deletes free (the changelog's pruning, compacted document updates)
but never gives them back to the file system (``auto_vacuum`` is off): after a busy spell the
file keeps its largest size. ``VACUUM`` rebuilds the database into a temporary copy and writes
that back in one transaction, so a failure (a full disk, a read-only file, an interrupt) rolls
back and leaves the database as it was. Like any ``VACUUM`` it needs free disk space of up to
twice the database's size: the copy (in SQLite's temporary directory: ``$SQLITE_TMPDIR``, else
``$TMPDIR``, else /var/tmp or /tmp) and the write-ahead log that writes it back.

Only offline: the caller holds the data dir's lock (daemon/cli_compact.py), so no daemon writes
meanwhile. Tombstoned rows and their content are kept: a workspace that syncs may still need
them (sync-design.md), so only free pages are given back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import StoreError
from daemon.store.checkpoint import file_uri
from daemon.store.failures import refuse_read_only, store_failure

#: How long to wait for another connection's lock (e.g. a ``sqlite3`` shell left open)
BUSY_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Compaction:
    """What ``compact_database`` did: the sizes, in bytes, of the database file and its
    write-ahead log together."""

    path: Path
    size_before: int
    size_after: int

    @property
    def freed(self) -> int:
        return self.size_before - self.size_after


def compact_database(path: Path) -> Compaction:
    """Checkpoint the write-ahead log into ``path``, ``VACUUM`` it, checkpoint again (the file
    shrinks then), and say the sizes. StoreError (StoreUnavailable for a full disk or a
    read-only file) when it cannot: the database is then as it was."""
    if not path.is_file():
        raise StoreError(f"no database at {path}")
    refuse_read_only(path)
    before = database_size(path)
    try:
        conn = sqlite3.connect(
            file_uri(path, "rw"), uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        raise store_failure(exc, "VACUUM failed", conn) from exc
    finally:
        conn.close()
    return Compaction(path, before, database_size(path))


def database_size(path: Path) -> int:
    """Bytes of the database file and of its write-ahead log, if any."""
    total = 0
    for file in (path, Path(f"{path}-wal")):
        try:
            total += file.stat().st_size
        except FileNotFoundError:
            pass
    return total
