"""``syncd compact``: compact the database of a data dir no daemon runs for (daemon/store/
compact.py). It takes the data dir's lock itself, so no daemon starts meanwhile; it refuses
while one holds it. Exit codes: 0 compacted; 1 a daemon runs, there is no database, or the
compaction failed (the database is then as it was); 2 bad usage or configuration."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import orjson

from daemon.errors import AlreadyRunning, StoreError

if TYPE_CHECKING:
    from daemon.config import Settings

__all__ = ["compact"]

EXIT_OK = 0
EXIT_ERROR = 1


def compact(settings: Settings, *, as_json: bool) -> int:
    from daemon.app import DB_FILE, DataDirLock
    from daemon.store.compact import compact_database
    from ui_bridge.discovery import COMPACT_ROLE

    path = settings.data_dir / DB_FILE
    if not path.is_file():  # before the lock, which would create the data dir
        print(f"syncd compact: no database at {path}", file=sys.stderr)
        return EXIT_ERROR
    try:
        lock = DataDirLock.acquire(settings.data_dir, COMPACT_ROLE)
    except AlreadyRunning as exc:
        hint = (
            "wait for it to finish"
            if exc.compacting
            else "stop the daemon first (compaction needs the database to itself), then run"
            " syncd compact again"
        )
        print(f"syncd compact: {exc}: {hint}", file=sys.stderr)
        return EXIT_ERROR
    try:
        done = compact_database(path)
    except StoreError as exc:
        print(f"syncd compact: {exc}; the database is as it was", file=sys.stderr)
        return EXIT_ERROR
    finally:
        lock.release()
    if as_json:
        result = {
            "database": str(done.path),
            "size_before": done.size_before,
            "size_after": done.size_after,
            "freed": done.freed,
        }
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        print(
            f"compacted {done.path}: {done.size_before:,} bytes before, {done.size_after:,}"
            f" after ({done.freed:,} freed)"
        )
    return EXIT_OK
