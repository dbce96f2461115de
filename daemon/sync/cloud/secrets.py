"""Where the refresh token lives: the OS keyring, or a 0600 file in the data dir.

One entry per data dir and cloud URL: keyring service ``syncd``, username
``"<data dir>|<cloud url>"``. When no usable keyring exists (keyring's ``fail`` or ``null``
backend, a chainer with nothing to chain; the usual case on servers and in containers) or the
keyring fails at any call, the token goes to ``<data dir>/cloud-credentials.json`` instead,
which is only ever created with mode 0600 (written to a private temporary file, then renamed).
``backend`` says which one is in use, for ``cloud.status``.

An entry is the refresh token alone, or, once the user it logs in is known, the JSON text
``{"refresh_token", "user": {"id", "email"}}`` (``StoredSession``): a daemon restarted while
the cloud cannot be reached shows whom it is logged in as before the cloud confirms it. (A
GoTrue refresh token never starts with ``{``, and one that did would be stored as JSON text;
an older syncd reads such an entry as a token the cloud refuses, so it asks for a login.)

Calls block (a keyring may talk D-Bus), so async code runs them in a worker thread. Values are
never logged, and exceptions from keyring backends are logged by type only: a backend's message
could quote what it was asked to store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import keyring
import keyring.backend
import keyring.errors
import orjson
from keyring.backends import chainer, fail, null

from daemon.sync.cloud.errors import SecretStoreError
from daemon.sync.cloud.status import SecretBackend
from daemon.sync.cloud.wire import CloudUser, normalize_cloud_url

__all__ = [
    "FILE_NAME",
    "SERVICE",
    "SecretBackend",
    "SecretStore",
    "StoredSession",
    "is_usable_keyring",
]

logger = logging.getLogger(__name__)

SERVICE: Final = "syncd"
FILE_NAME: Final = "cloud-credentials.json"
_FILE_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class StoredSession:
    """What is kept of a session: its refresh token and, when known, whom it logs in."""

    refresh_token: str = field(repr=False)
    user: CloudUser | None = None

    def encode(self) -> str:
        """The stored entry: the bare token, or JSON text with the user (module docstring)."""
        if self.user is None and not self.refresh_token.startswith("{"):
            return self.refresh_token
        user = None if self.user is None else self.user.to_json()
        return orjson.dumps({"refresh_token": self.refresh_token, "user": user}).decode()

    @classmethod
    def decode(cls, value: object) -> StoredSession | None:
        """An entry as ``encode`` wrote it (or an older syncd: the bare token); None for
        anything else."""
        if not isinstance(value, str) or not value:
            return None
        if not value.startswith("{"):
            return cls(value)
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        token = data.get("refresh_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return None
        user = data.get("user")
        known = None
        if isinstance(user, dict) and isinstance(user.get("id"), str) and user["id"]:
            email = user.get("email")
            known = CloudUser(user["id"], email if isinstance(email, str) else None)
        return cls(token, known)


def is_usable_keyring(backend: keyring.backend.KeyringBackend | None) -> bool:
    """False for no backend, keyring's ``fail`` and ``null`` backends, and a chainer whose
    chained backends are all unusable (an empty chainer behaves like ``null``)."""
    if backend is None or isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return any(is_usable_keyring(b) for b in backend.backends)
    return True


def _default_keyring() -> keyring.backend.KeyringBackend | None:
    try:
        return keyring.get_keyring()
    except Exception as exc:  # a broken keyring plugin must not stop the daemon
        logger.warning("secret.keyring_unavailable error=%s", type(exc).__name__)
        return None


class SecretStore:
    """The refresh token of one data dir and cloud URL: ``get``/``set``/``delete``."""

    def __init__(
        self,
        data_dir: Path,
        cloud_url: str,
        *,
        keyring_backend: keyring.backend.KeyringBackend | None = None,
        use_keyring: bool = True,
    ) -> None:
        self._dir = Path(data_dir)
        self._path = self._dir / FILE_NAME
        self._url = normalize_cloud_url(cloud_url)
        self._username = f"{self._dir.resolve()}|{self._url}"
        chosen = None
        if use_keyring:
            chosen = keyring_backend if keyring_backend is not None else _default_keyring()
        self._keyring = chosen if is_usable_keyring(chosen) else None

    def __repr__(self) -> str:
        return f"SecretStore(backend={self.backend!r}, url={self._url!r})"

    @property
    def backend(self) -> SecretBackend:
        return "keyring" if self._keyring is not None else "file"

    @property
    def path(self) -> Path:
        """The fallback file (which exists only while it holds a token)."""
        return self._path

    def get(self) -> str | None:
        """The stored refresh token, or None."""
        stored = self.load()
        return None if stored is None else stored.refresh_token

    def set(self, value: str) -> None:
        """Store the refresh token ``value`` alone (replacing any previous entry)."""
        self.save(StoredSession(value))

    def load(self) -> StoredSession | None:
        """The stored session, or None."""
        if self._keyring is not None:
            try:
                value = self._keyring.get_password(SERVICE, self._username)
            except Exception as exc:  # any keyring failure: fall back to the file
                self._give_up_keyring("get", exc)
            else:
                if value:
                    return StoredSession.decode(value)
        return StoredSession.decode(self._read_file().get(self._url))

    def save(self, session: StoredSession) -> None:
        """Store ``session`` (replacing any previous entry)."""
        token = session.refresh_token
        if not isinstance(token, str) or not token:
            raise ValueError("a refresh token must be a non-empty string")
        value = session.encode()
        if self._keyring is not None:
            try:
                self._keyring.set_password(SERVICE, self._username, value)
            except Exception as exc:  # any keyring failure: fall back to the file
                self._give_up_keyring("set", exc)
            else:
                self._update_file(None)  # no stale copy left on disk
                logger.debug("secret.stored backend=keyring")
                return
        self._update_file(value)
        logger.debug("secret.stored backend=file")

    def delete(self) -> None:
        """Forget the token everywhere it may be (keyring and file); no error if absent."""
        if self._keyring is not None:
            try:
                self._keyring.delete_password(SERVICE, self._username)
            except keyring.errors.PasswordDeleteError:
                pass  # nothing stored: fine
            except Exception as exc:  # any other keyring failure: fall back to the file
                self._give_up_keyring("delete", exc)
        self._update_file(None)
        logger.debug("secret.deleted")

    def _give_up_keyring(self, action: str, exc: Exception) -> None:
        logger.warning(
            "secret.keyring_failed action=%s error=%s: using %s from now on",
            action,
            type(exc).__name__,
            self._path,
        )
        self._keyring = None

    # The fallback file: {"version": 1, "refresh_tokens": {cloud_url: token}}

    def _read_file(self) -> dict[str, Any]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SecretStoreError("read the refresh token", "file_unreadable") from exc
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            logger.warning("secret.file_corrupt path=%s: ignoring it", self._path)
            return {}
        tokens = data.get("refresh_tokens") if isinstance(data, dict) else None
        return dict(tokens) if isinstance(tokens, dict) else {}

    def _update_file(self, value: str | None) -> None:
        """Set (or with None remove) this URL's entry; the file goes when it is empty."""
        tokens = self._read_file()
        if value is None and self._url not in tokens:
            return
        if value is None:
            del tokens[self._url]
        else:
            tokens[self._url] = value
        try:
            if tokens:
                self._write_private(
                    orjson.dumps({"version": _FILE_VERSION, "refresh_tokens": tokens})
                )
            else:
                self._path.unlink(missing_ok=True)
        except OSError as exc:
            raise SecretStoreError("store the refresh token", "file_unwritable") from exc

    def _write_private(self, data: bytes) -> None:
        """Write atomically; the file is 0600 from its creation (mkstemp), never wider."""
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=f".{FILE_NAME}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self._dir)


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
