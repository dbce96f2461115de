"""Logging: JSON lines in ``<data-dir>/logs/syncd.log`` (rotating) and readable lines on stderr.

Never log tokens, passwords or message bodies above DEBUG. As a safety net, every record passes
``RedactSecrets``, which masks bearer tokens, JWTs and ``token=``/``password=`` values.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from daemon.config import FILE_MODE, make_private_dir

LOG_FILE = "syncd.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(
        r"(?i)((?:access_token|refresh_token|token|password|apikey|anon_key)[\"']?\s*[=:]\s*[\"']?)"
        r"[^\s&\"',}]+"
    ),
)


def redact(text: str) -> str:
    """Mask anything that looks like a credential."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message so that no credential reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        try:
            return orjson.dumps(entry).decode()
        except TypeError:  # a lone surrogate: a path that is not UTF-8 (b"/x\xff" is "/x\udcff")
            return orjson.dumps({k: _utf8(v) for k, v in entry.items()}).decode()


def _utf8(value: Any) -> Any:
    """``value`` with what UTF-8 cannot encode (lone surrogates) written as ``\\udcff``."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates its files (the log and each one rotation starts) with mode 0600, whatever the
    umask: log lines name workspaces and errors of a user's private data.

    A log that cannot be written (a full disk, a file size limit, an I/O error) costs one line
    on stderr saying so and why, not logging's "--- Logging error ---" traceback for every
    record: lines are dropped meanwhile, and every record tries again (the file is reopened).
    The first line written again is preceded in the file by ``log.lines_dropped count=N`` (and
    stderr says that logging works again). Any other error (a record that cannot be
    formatted: a bug) is reported as logging always does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._failing: str | None = None  # why the file cannot be written, while it cannot
        self._failing_since = 0.0
        self._dropped = 0
        self._error: str | None = None  # set by handleError during one _write

    def emit(self, record: logging.LogRecord) -> None:
        if self._failing is not None:
            if not self._write(self._dropped_note()):
                self._dropped += 1
                return
            self._failing, self._dropped = None, 0
            _tell(f"syncd: logging to {self.baseFilename} works again")
        if not self._write(record):
            self._dropped += 1

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self._error = error.strerror or str(error)
        else:
            super().handleError(record)

    def _write(self, record: logging.LogRecord) -> bool:
        """Write ``record``; ``False`` (the stream closed, to be opened again) if the file
        could not be written."""
        self._error = None
        super().emit(record)  # calls handleError on failure
        if self._error is None:
            return True
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # its buffer cannot be flushed
                stream.close()
        if self._failing is None:
            self._failing, self._failing_since = self._error, time.time()
            _tell(
                f"syncd: logging to {self.baseFilename} failed: {self._error}; log lines are"
                " dropped until it can be written again"
            )
        return False

    def _dropped_note(self) -> logging.LogRecord:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._failing_since))
        return logging.LogRecord(
            __name__,
            logging.WARNING,
            __file__,
            0,
            "log.lines_dropped count=%d since=%s error=%s",
            (self._dropped, since, self._failing),
            None,
        )

    def _open(self) -> Any:
        return open(
            self.baseFilename,
            self.mode,
            encoding=self.encoding,
            errors=self.errors,
            opener=_private_opener,
        )


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


def _tell(line: str) -> None:
    """One line on stderr, if it can be written at all."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def configure_logging(data_dir: Path | None, level: str = "INFO") -> None:
    """Install the stderr handler and, with a data dir, the rotating JSON file handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_syncd", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    redactor = RedactSecrets()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [stderr]
    if data_dir is not None:
        make_private_dir(data_dir)  # the first thing to create it (before the lock, the store)
        log_dir = data_dir / "logs"
        make_private_dir(log_dir)
        file_handler = PrivateRotatingFileHandler(
            log_dir / LOG_FILE, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
        file_handler.setFormatter(JsonFormatter())
        handlers.append(file_handler)
    for handler in handlers:
        handler.addFilter(redactor)
        handler._syncd = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    # httpx logs every request at INFO (a line per push batch and pull page, two a minute per
    # linked workspace when idle); the daemon's own rest.* lines say as much at DEBUG.
    quiet = logging.DEBUG if root.getEffectiveLevel() <= logging.DEBUG else logging.WARNING
    logging.getLogger("httpx").setLevel(quiet)


@contextmanager
def trace(logger: logging.Logger, name: str, **ids: Any) -> Iterator[None]:
    """Log ``name.started`` / ``name.complete`` / ``name.failed`` with correlation ids."""
    context = " ".join(f"{k}={v}" for k, v in ids.items())
    logger.debug("%s.started %s", name, context)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        logger.warning(
            "%s.failed %s elapsed_ms=%.1f", name, context, (time.perf_counter() - started) * 1e3
        )
        raise
    logger.debug(
        "%s.complete %s elapsed_ms=%.1f", name, context, (time.perf_counter() - started) * 1e3
    )
