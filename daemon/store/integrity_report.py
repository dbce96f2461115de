"""What the background integrity check found (pure: integrity.py runs the check).

``PRAGMA quick_check`` answers one row ``ok``, or one row per problem (at most 100), e.g.
``*** in database main ***\\nTree 7 page 12: btreeInitPage() returns error code 11`` or
``row 3 missing from index idx_messages_conversation``: they name pages, tables and indexes,
never the rows' contents, so they may be logged and shown. A check that cannot read the file
(``SQLITE_CORRUPT``, ``SQLITE_NOTADB``) found damage as well; any other error (an I/O error, the
file cannot be opened) means the check could not run: ``failed``, with SQLite's words.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["ADVICE", "IntegrityReport", "IntegrityState", "report_of_error", "report_of_rows"]

#: ``off``: not checked (setting ``store.integrity_check``); ``checking``: not done yet.
IntegrityState = Literal["off", "checking", "ok", "damaged", "failed"]

#: What a user should do about a damaged database (logged, and in ``daemon.status``).
ADVICE: Final = (
    "stop the daemon, then run PRAGMA integrity_check on a copy of syncd.db and its -wal"
    " (sqlite3 syncd.db 'PRAGMA integrity_check') to see the damage, or restore syncd.db from"
    " a backup"
)
#: The problems ``detail`` keeps (the log line and the status stay short).
DETAIL_PROBLEMS: Final = 5


@dataclass(frozen=True)
class IntegrityReport:
    """The check's state; ``detail`` says what was found (damaged) or why it could not run
    (failed); ``checked_at`` is when it ended (ISO 8601 UTC), None before."""

    state: IntegrityState
    detail: str | None = None
    checked_at: str | None = None

    def as_status(self) -> dict[str, Any]:
        """The ``store`` part of ``daemon.status``."""
        status: dict[str, Any] = {"integrity": self.state, "checked_at": self.checked_at}
        if self.detail is not None:
            status["detail"] = self.detail
        if self.state == "damaged":
            status["advice"] = ADVICE
        return status


def report_of_rows(rows: Sequence[str], checked_at: str) -> IntegrityReport:
    """The report of ``PRAGMA quick_check``'s answer ``rows``."""
    if list(rows) == ["ok"]:
        return IntegrityReport("ok", checked_at=checked_at)
    problems = [" ".join(str(row).split()) for row in rows]  # one line each
    detail = "; ".join(problems[:DETAIL_PROBLEMS])
    if len(problems) > DETAIL_PROBLEMS:
        detail += f" (and {len(problems) - DETAIL_PROBLEMS} more)"
    return IntegrityReport("damaged", detail or "quick_check answered nothing", checked_at)


def report_of_error(code: int, message: str, checked_at: str) -> IntegrityReport:
    """The report of a check that raised SQLite's (extended) error ``code`` with ``message``."""
    if code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return IntegrityReport("damaged", message, checked_at)
    return IntegrityReport("failed", message, checked_at)
