"""The database's integrity, checked in the background once the daemon serves.

SQLite serves a damaged file without a word until a read meets a bad page: a page overwritten
by a disk or a tool, or a foreign ``syncd.db-wal`` placed next to the database (SQLite merges
whatever WAL it finds at open). ``PRAGMA quick_check`` reads every page and says what is wrong,
but takes 1.4-1.8 s on a cold 75 MB database: too slow to hold start-up. So the daemon starts
it once it listens (app.py): on a read-only connection of its own, in a worker thread (SQLite
releases the GIL while it reads), so that neither the event loop nor the writer ever waits for
it. ``report`` is its state (``daemon.status``: ``store``); stopping the daemon interrupts it.
What its answer means is integrity_report.py's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from daemon.store.checkpoint import file_uri
from daemon.store.integrity_report import IntegrityReport, report_of_error, report_of_rows

__all__ = ["IntegrityCheck"]


class IntegrityCheck:
    """One ``PRAGMA quick_check`` of the database at ``path`` (``run``), unless disabled."""

    def __init__(self, path: Path, *, enabled: bool) -> None:
        self._path = path
        self.report = IntegrityReport("checking" if enabled else "off")
        self._lock = threading.Lock()  # guards _conn and _stopped (loop and thread)
        self._conn: sqlite3.Connection | None = None
        self._stopped = False

    async def run(self) -> IntegrityReport:
        """Check the database in a worker thread; the report (also kept in ``report``).
        Cancelling it interrupts the check and returns once the thread is done with the file."""
        if self.report.state != "checking":
            return self.report
        done = asyncio.get_running_loop().run_in_executor(None, self._check)
        try:
            report = await asyncio.shield(done)
        except asyncio.CancelledError:
            self.stop()
            await asyncio.wait([done])
            raise
        if report is not None:
            self.report = report
        return self.report

    def stop(self) -> None:
        """Interrupt a check that runs, and refuse to start one (any thread)."""
        with self._lock:
            self._stopped = True
            if self._conn is not None:
                self._conn.interrupt()

    # -- in a worker thread ------------------------------------------------------------------

    def _check(self) -> IntegrityReport | None:
        """The report, or None if stopped before it was done."""
        try:
            conn = sqlite3.connect(
                file_uri(self._path, "ro"), uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            return report_of_error(getattr(exc, "sqlite_errorcode", 0), str(exc), _now())
        try:
            with self._lock:
                if self._stopped:
                    return None
                self._conn = conn
            rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
            return report_of_rows(rows, _now())
        except sqlite3.Error as exc:
            if self._stopped:  # interrupted
                return None
            return report_of_error(getattr(exc, "sqlite_errorcode", 0), str(exc), _now())
        finally:
            with self._lock:
                self._conn = None
            conn.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
