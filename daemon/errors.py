"""The daemon's error tree.

::

    DaemonError
    ├─ ConfigError(key, message)          a setting has a bad value (the user's fault)
    ├─ StoreError                          the local SQLite store failed
    │  ├─ MigrationError                   the schema cannot be brought up to date
    │  ├─ NotFound(entity, id, deleted?)   no row with that id (or a deleted one)
    │  ├─ Conflict(message, field)       e.g. a message id reused with different content
    │  ├─ DamagedRow(table, id, columns)   a stored row has columns that cannot be read
    │  └─ StoreUnavailable(reason, message) disk full, read-only file, unreadable changelog
    ├─ InvalidInput(field, message)        a caller passed a bad value; nothing was changed
    ├─ AlreadyRunning(pid)                 another daemon holds this data dir's lock
    ├─ PortInUse(port)                     another program listens on the local API's port
    ├─ FileFailed(doing, path, reason)     a file the daemon needs cannot be written (or read)
    ├─ RateLimited(operation, retry_after_s) too many calls of ``operation``: try again later
    └─ ShuttingDown                        the daemon stops and accepts no more work

Errors carry fields so that the local API can map them to error objects without parsing text.
"""

from __future__ import annotations


class DaemonError(Exception):
    """Base class of every error the daemon raises on purpose."""


class ConfigError(DaemonError):
    """A setting (environment variable, config.toml key or flag) has a bad value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class StoreError(DaemonError):
    """The local store failed (I/O, corruption, a bug in a statement)."""


class MigrationError(StoreError):
    """The database schema cannot be migrated (e.g. it is newer than this code)."""


class NotFound(StoreError):
    """No row of ``entity`` has ``id`` (``deleted``: one has, tombstoned, and this call does
    not take a deleted row)."""

    def __init__(self, entity: str, id: str, *, deleted: bool = False) -> None:
        super().__init__(f"{entity} {id!r} " + ("is deleted" if deleted else "not found"))
        self.entity = entity
        self.id = id
        self.deleted = deleted


class Conflict(StoreError):
    """The write contradicts what is stored (e.g. a message id reused with other content);
    ``field`` names the parameter that does (answered as ``data.field``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class DamagedRow(StoreError):
    """Row ``id`` of ``table`` holds ``columns`` this code cannot read (e.g. invalid JSON
    written by a damaged disk or a manual edit): answered with data naming them."""

    def __init__(self, table: str, id: str, columns: tuple[str, ...]) -> None:
        super().__init__(f"{table} {id!r} is damaged: cannot read {', '.join(columns)}")
        self.table = table
        self.id = id
        self.columns = columns


class StoreUnavailable(StoreError):
    """The store cannot do what was asked, for a cause the user can act on: ``reason`` is
    ``disk_full``, ``read_only`` or ``damaged``; ``message`` says it for a UI. Nothing was
    changed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InvalidInput(DaemonError):
    """A caller passed a bad value for ``field``; nothing was changed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RateLimited(DaemonError):
    """Too many calls of ``operation`` for now; nothing was done. One may succeed in
    ``retry_after_s`` seconds."""

    def __init__(self, operation: str, retry_after_s: float) -> None:
        super().__init__(f"{operation}: rate limited, retry in {retry_after_s:.3f} s")
        self.operation = operation
        self.retry_after_s = retry_after_s


class AlreadyRunning(DaemonError):
    """Another daemon (process ``pid``, when known) holds the lock of this data dir, or, with
    ``compacting``, ``syncd compact`` does."""

    def __init__(self, pid: int | None, data_dir: str, *, compacting: bool = False) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        if compacting:
            text = f"syncd compact ({who}) is compacting the database of {data_dir}"
        else:
            text = f"a syncd daemon ({who}) is already running for {data_dir}"
        super().__init__(text)
        self.pid = pid
        self.data_dir = data_dir
        self.compacting = compacting


class PortInUse(DaemonError):
    """Another program listens on ``port``, where the local API was to listen."""

    def __init__(self, port: int) -> None:
        super().__init__(
            f"another program uses port {port} on 127.0.0.1: choose another with --port, "
            "SYNCD_PORT or [bridge] port in config.toml, or --port 0 for any free one"
        )
        self.port = port


class FileFailed(DaemonError):
    """A file or directory the daemon needs cannot be created, read or written: ``path`` says
    which and ``reason`` why, in the system's words (e.g. "No space left on device")."""

    def __init__(self, doing: str, path: str, reason: str) -> None:
        super().__init__(f"cannot {doing} {path}: {reason}")
        self.path = path
        self.reason = reason

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str, path: object = None) -> FileFailed:
        """``exc`` (which may name no file: a failed ``write`` does not) said about ``path``,
        else the file ``exc`` names."""
        named = exc.filename if path is None else path
        where = str(named) if named is not None else "a file"
        if isinstance(named, bytes):
            where = named.decode("utf-8", "backslashreplace")
        error = cls(doing, where, exc.strerror or str(exc))
        error.__cause__ = exc
        return error


class ShuttingDown(DaemonError):
    """The daemon is stopping and accepts no more work."""

    def __init__(self, message: str = "the daemon is shutting down") -> None:
        super().__init__(message)
