"""Store failures a user can act on (a full disk, a read-only or damaged database file), told
apart from the others by SQLite's error code: a StoreUnavailable whose ``reason`` and message a
UI can show (ui_bridge/dispatch.py answers it -32603 with ``data.reason``). Nothing was changed:
the transaction that met it was rolled back."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from daemon.errors import StoreError, StoreUnavailable

DAMAGED = "the database is damaged: run PRAGMA integrity_check on it (see the daemon's log)"


def store_failure(exc: sqlite3.Error, doing: str, conn: sqlite3.Connection) -> StoreError:
    """``exc``, met while ``doing`` (e.g. "commit failed") on ``conn``, as a StoreError."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    error: StoreError
    if code == sqlite3.SQLITE_FULL:
        file = database_file(conn) or "syncd.db"
        error = StoreUnavailable("disk_full", f"the disk is full: cannot write {file}")
    elif code == sqlite3.SQLITE_READONLY:
        error = StoreUnavailable(
            "read_only", f"the database file is read-only: {database_file(conn) or 'syncd.db'}"
        )
    else:
        error = read_failure(exc) or StoreError(f"{doing}: {exc}")
    error.__cause__ = exc
    return error


def read_failure(exc: sqlite3.Error) -> StoreUnavailable | None:
    """What a read that met ``exc`` tells a user: the database is damaged (corrupt pages, not a
    database), or None for any other failure."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreUnavailable("damaged", DAMAGED)
    return None


def refuse_read_only(path: Path) -> None:
    """StoreUnavailable naming the first of the database's files (``path``, its -wal, its
    -shm) that exists and this process cannot write: every write would fail."""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if file.exists() and not os.access(file, os.W_OK):
            raise StoreUnavailable("read_only", f"the database file is read-only: {file}")


def database_file(conn: sqlite3.Connection) -> str:
    """The path of ``conn``'s main database file ("" for an in-memory one, or if it cannot be
    read). Read as bytes: ``PRAGMA database_list`` answers it as text, which fails for a path
    that is not UTF-8 (a data dir named with bytes like ``b"/tmp/x\\xff"``)."""
    try:
        row = conn.execute(
            "SELECT CAST(file AS BLOB) FROM pragma_database_list WHERE name = 'main'"
        ).fetchone()
    except sqlite3.Error:
        return ""
    return os.fsdecode(row[0]) if row is not None and row[0] else ""
