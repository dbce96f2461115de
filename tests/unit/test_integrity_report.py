"""What ``PRAGMA quick_check``'s answer means (daemon/store/integrity_report.py)."""

from __future__ import annotations

import sqlite3

from daemon.store.integrity_report import (
    ADVICE,
    IntegrityReport,
    report_of_error,
    report_of_rows,
)

AT = "2026-01-02T03:04:05.678+00:00"


def test_ok_is_ok() -> None:
    report = report_of_rows(["ok"], AT)
    assert report == IntegrityReport("ok", None, AT)
    assert report.as_status() == {"integrity": "ok", "checked_at": AT}


def test_problems_are_damage_a_few_of_them_said_on_one_line() -> None:
    rows = ["*** in database main ***\nTree 7 page 12: btreeInitPage() returns error code 11"]
    rows += [f"row {n} missing from index idx_messages_conversation" for n in range(1, 8)]
    report = report_of_rows(rows, AT)
    assert report.state == "damaged" and report.checked_at == AT
    assert report.detail == (
        "*** in database main *** Tree 7 page 12: btreeInitPage() returns error code 11; "
        + "; ".join(f"row {n} missing from index idx_messages_conversation" for n in range(1, 5))
        + " (and 3 more)"
    )
    assert report.as_status() == {
        "integrity": "damaged", "checked_at": AT, "detail": report.detail, "advice": ADVICE,
    }  # fmt: skip
    assert "PRAGMA integrity_check" in ADVICE and "backup" in ADVICE


def test_a_file_that_cannot_be_read_as_a_database_is_damage() -> None:
    for code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, 779):  # 779: CORRUPT_VTAB
        report = report_of_error(code, "database disk image is malformed", AT)
        assert report == IntegrityReport("damaged", "database disk image is malformed", AT)


def test_any_other_error_is_a_check_that_could_not_run() -> None:
    report = report_of_error(sqlite3.SQLITE_IOERR, "disk I/O error", AT)
    assert report == IntegrityReport("failed", "disk I/O error", AT)
    assert report.as_status() == {
        "integrity": "failed",
        "checked_at": AT,
        "detail": "disk I/O error",
    }


def test_before_it_ends_and_when_off() -> None:
    assert IntegrityReport("checking").as_status() == {"integrity": "checking", "checked_at": None}
    assert IntegrityReport("off").as_status() == {"integrity": "off", "checked_at": None}
