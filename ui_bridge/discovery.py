"""The discovery file ``<data-dir>/daemon.json``: how local clients find the running daemon.

``{"pid", "port", "url", "token", "version", "started_at"}``, mode 0600 from the moment it
exists (written to a private temporary file, then renamed over), removed at clean shutdown. A
file left by a dead daemon is stale and replaced; one whose daemon still answers is not.
Whether a daemon runs at all is told by ``syncd.lock``, which it holds while it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from daemon.errors import DaemonError

__all__ = [
    "FILENAME",
    "COMPACT_ROLE",
    "DAEMON_ROLE",
    "LOCK_FILE",
    "DaemonAlreadyRunning",
    "DiscoveryInfo",
    "claim_discovery",
    "discovery_path",
    "is_data_dir_locked",
    "is_pid_alive",
    "lock_owner",
    "parse_lock_owner",
    "read_discovery",
    "remove_discovery",
    "write_discovery",
]

logger = logging.getLogger(__name__)

FILENAME: Final = "daemon.json"
#: The data dir's lock: a daemon holds an exclusive ``flock`` on it while it runs (daemon/app.py).
LOCK_FILE: Final = "syncd.lock"
#: What the lock's holder writes after its pid: a daemon, or ``syncd compact`` (daemon/app.py).
DAEMON_ROLE: Final = "daemon"
COMPACT_ROLE: Final = "compact"
#: A discovery file is a few hundred bytes: a larger one is not one a daemon wrote.
MAX_DISCOVERY_BYTES: Final = 64 * 1024


class DaemonAlreadyRunning(DaemonError):
    """Another live daemon serves this data dir."""

    def __init__(self, pid: int, port: int) -> None:
        super().__init__(f"a daemon (pid {pid}) already serves this data dir on port {port}")
        self.pid = pid
        self.port = port


@dataclass(frozen=True, slots=True)
class DiscoveryInfo:
    """The content of the discovery file."""

    pid: int
    port: int
    url: str
    token: str
    version: str
    started_at: str

    def __repr__(self) -> str:  # never show the token
        return f"DiscoveryInfo(pid={self.pid}, port={self.port}, url={self.url!r})"

    @classmethod
    def from_mapping(cls, obj: Any) -> DiscoveryInfo | None:
        """Parse a decoded file; ``None`` if it is not a complete, well-typed record."""
        if not isinstance(obj, dict):
            return None
        try:
            info = cls(**{key: obj[key] for key in cls.__slots__})
        except (KeyError, TypeError):
            return None
        ints_ok = all(type(v) is int for v in (info.pid, info.port))
        strs = (info.url, info.token, info.version, info.started_at)
        return info if ints_ok and all(isinstance(s, str) for s in strs) else None


def discovery_path(data_dir: Path) -> Path:
    """Where the discovery file of ``data_dir`` lives."""
    return Path(data_dir) / FILENAME


def read_discovery(data_dir: Path, *, uid: int | None = None) -> DiscoveryInfo | None:
    """The discovery record, or ``None`` if there is none or it is unreadable (or larger than
    ``MAX_DISCOVERY_BYTES``: not one a daemon wrote; it is not read whole), or it belongs to
    another user than ``uid`` (this process's): not one our daemon wrote, and following it
    would hand our token and calls to whoever listens on its port."""
    if uid is None and hasattr(os, "geteuid"):
        uid = os.geteuid()
    try:
        with discovery_path(data_dir).open("rb") as f:
            if uid is not None and os.fstat(f.fileno()).st_uid != uid:
                return None
            raw = f.read(MAX_DISCOVERY_BYTES + 1)
        if len(raw) > MAX_DISCOVERY_BYTES:
            return None
        return DiscoveryInfo.from_mapping(orjson.loads(raw))
    except (OSError, orjson.JSONDecodeError):
        return None


def is_pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (it may belong to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def parse_lock_owner(text: str) -> tuple[int | None, str]:
    """(pid, role) from the lock file's text ``"<pid> <role>"``; a bare pid (written by an
    older daemon) is a daemon's; None for a pid that cannot be read."""
    pid_text, _, role = text.strip().partition(" ")
    try:
        pid = int(pid_text) if pid_text else None
    except ValueError:
        pid = None
    return pid, role.strip() or DAEMON_ROLE


def lock_owner(data_dir: Path) -> tuple[int | None, str]:
    """``parse_lock_owner`` of the data dir's lock file (pid None when it cannot be read)."""
    try:
        with open(Path(data_dir) / LOCK_FILE, "rb") as f:
            return parse_lock_owner(f.read(64).decode("ascii", "replace"))
    except OSError:
        return None, DAEMON_ROLE


def is_data_dir_locked(data_dir: Path) -> bool:
    """Whether a daemon holds the lock of ``data_dir``: one runs, whatever the discovery file
    says (its pid may since be another process's). The probe takes a shared lock and drops it
    at once; a daemon starting in that instant would find the data dir taken, so clients probe
    only when the discovery file's live pid did not answer."""
    try:
        fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file: no daemon ever ran here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no flock here (some network file systems): cannot tell
        return False
    finally:
        os.close(fd)
    return False


def _is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def claim_discovery(data_dir: Path) -> None:
    """Before starting: refuse if a live daemon owns the file, else remove a stale one."""
    info = read_discovery(data_dir)
    path = discovery_path(data_dir)
    if info is not None and info.pid != os.getpid() and is_pid_alive(info.pid):
        if _is_listening(info.port):
            raise DaemonAlreadyRunning(info.pid, info.port)
    if path.exists():
        logger.warning("discovery.stale path=%s (replaced)", path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_discovery(data_dir: Path, info: DiscoveryInfo) -> Path:
    """Write the file atomically, readable by its owner only (0600) from the first byte."""
    path = discovery_path(data_dir)
    tmp = path.with_name(f".{FILENAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o600)
            handle.write(orjson.dumps(asdict(info), option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk's write, fsync
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def remove_discovery(data_dir: Path, *, token: str) -> bool:
    """Remove the file if it is still ours (same token); ``True`` if removed."""
    info = read_discovery(data_dir)
    if info is None or not secrets.compare_digest(info.token, token):
        return False
    with contextlib.suppress(FileNotFoundError):
        discovery_path(data_dir).unlink()
    return True
