"""Log redaction: credentials never reach a handler; httpx's line per request only at DEBUG
(daemon/logs.py)."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import orjson
import pytest

from daemon.logs import (
    JsonFormatter,
    PrivateRotatingFileHandler,
    RedactSecrets,
    configure_logging,
    redact,
)

TOKEN = "s3cret-Tok_en.42"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"


def test_redact_masks_bearer_query_and_json_tokens() -> None:
    # What websockets logs at DEBUG for the local API's opening handshake.
    line = f"< GET /?token={TOKEN}&x=1 HTTP/1.1 Authorization: Bearer {TOKEN}"
    cleaned = redact(line)
    assert TOKEN not in cleaned and cleaned.count("[REDACTED]") == 2 and "&x=1" in cleaned
    assert redact(f'{{"token": "{TOKEN}"}}') == '{"token": "[REDACTED]"}'
    assert redact(f"password={TOKEN} refresh_token: {TOKEN}").count("[REDACTED]") == 2


def test_redact_masks_jwts_and_keeps_other_text() -> None:
    assert redact(f"session {JWT} refreshed") == "session [REDACTED] refreshed"
    assert redact("push.complete ws=1 rows=3") == "push.complete ws=1 rows=3"


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args, None)


def test_filter_rewrites_the_formatted_message() -> None:
    record = _record("login %s with %s", "alice", f"Bearer {TOKEN}")
    assert RedactSecrets().filter(record) is True  # never drops a record
    assert record.getMessage() == "login alice with Bearer [REDACTED]"
    clean = _record("conn.dropped conn=%s", "ab12")
    RedactSecrets().filter(clean)
    assert clean.args == ("ab12",)  # left alone when there is nothing to mask


def test_json_lines_redact_the_traceback_too() -> None:
    try:
        raise RuntimeError(f"refused: access_token={TOKEN}")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(record)
    entry = orjson.loads(line)
    assert TOKEN not in line and "access_token=[REDACTED]" in entry["exc"]
    assert entry["level"] == "ERROR" and entry["msg"] == "failed"


def test_httpx_request_lines_only_at_debug() -> None:
    root, httpx_logger = logging.getLogger(), logging.getLogger("httpx")
    saved = root.level, list(root.handlers), httpx_logger.level
    try:
        configure_logging(None, "INFO")
        assert not httpx_logger.isEnabledFor(logging.INFO)
        assert httpx_logger.isEnabledFor(logging.WARNING)
        assert logging.getLogger("daemon.sync").isEnabledFor(logging.INFO)
        configure_logging(None, "DEBUG")
        assert httpx_logger.isEnabledFor(logging.INFO)
    finally:  # what configure_logging installed goes again
        for handler in list(root.handlers):
            if handler not in saved[1]:
                root.removeHandler(handler)
        root.setLevel(saved[0])
        httpx_logger.setLevel(saved[2])


def test_log_files_are_private_rotation_included(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        handler = PrivateRotatingFileHandler(tmp_path / "x.log", maxBytes=10, backupCount=2)
        try:
            for n in range(3):
                handler.emit(logging.makeLogRecord({"msg": f"line {n} of the log"}))
        finally:
            handler.close()
    finally:
        os.umask(old)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["x.log", "x.log.1", "x.log.2"]
    assert {stat.S_IMODE((tmp_path / n).stat().st_mode) for n in names} == {0o600}


def test_a_path_that_is_not_utf8_is_logged_not_dropped(tmp_path: Path) -> None:
    """A data dir named with bytes that are not UTF-8 (b"/x\\xff" is "/x\\udcff" in Python):
    its lines reach the file, the byte escaped; they used to fail orjson and be dropped."""
    path = Path(os.fsdecode(b"/data\xff/syncd.db"))
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "store.opened path=%s", (path,), None
    )
    assert (
        orjson.loads(JsonFormatter().format(record))["msg"]
        == "store.opened path=/data\\udcff/syncd.db"
    )
    handler = PrivateRotatingFileHandler(tmp_path / "x.log", maxBytes=1 << 20, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    try:
        handler.emit(record)
    finally:
        handler.close()
    lines = (tmp_path / "x.log").read_text(encoding="utf-8").splitlines()
    assert [orjson.loads(line)["msg"] for line in lines] == [
        "store.opened path=/data\\udcff/syncd.db"
    ]


def test_a_log_file_that_cannot_be_written_costs_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does: one line on stderr says
    so (not a "--- Logging error ---" traceback per record), the lines are dropped, and once
    the file can be written again the log says how many were lost."""
    path = tmp_path / "x.log"
    path.symlink_to("/dev/full")
    handler = PrivateRotatingFileHandler(path, maxBytes=1 << 20, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    try:
        for n in range(3):
            handler.emit(_record("lost %d", n))
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f"syncd: logging to {path} failed: No space left on device; log lines are dropped"
            " until it can be written again"
        ]
        path.unlink()  # writable again: the next record opens the path anew
        handler.emit(_record("written"))
    finally:
        handler.close()
    assert capsys.readouterr().err == f"syncd: logging to {path} works again\n"
    entries = [orjson.loads(line) for line in path.read_text().splitlines()]
    assert [e["msg"].split(" since=")[0] for e in entries] == [
        "log.lines_dropped count=3",
        "written",
    ]
    assert entries[0]["level"] == "WARNING"
    assert entries[0]["msg"].endswith(" error=No space left on device")


def test_a_record_that_cannot_be_formatted_is_still_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a file that cannot be written is quiet: a bug (bad format arguments) still gets
    logging's report."""
    handler = PrivateRotatingFileHandler(tmp_path / "x.log", maxBytes=1 << 20)
    try:
        handler.emit(_record("two %d %d", 1))
    finally:
        handler.close()
    assert "--- Logging error ---" in capsys.readouterr().err
