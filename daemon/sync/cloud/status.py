"""The cloud session's status: an immutable snapshot for ``cloud.status`` (pure; no token)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from daemon.sync.cloud.wire import CloudUser

__all__ = ["SecretBackend", "SessionStatus", "StatusListener"]

SecretBackend = Literal["keyring", "file"]


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """What ``cloud.status`` shows about the session; never a token."""

    #: a session is held: granted, or restored at start and not granted yet (``expires_at``
    #: None; ``last_error`` says why, e.g. ``connect``: the cloud cannot be reached)
    logged_in: bool = False
    auth_required: bool = False
    user: CloudUser | None = None
    expires_at: float | None = None
    secret_backend: SecretBackend = "file"
    last_error: str | None = None  # a reason code (``connect``, ``http_503``...), or None

    def to_json(self) -> dict[str, Any]:
        return {
            "logged_in": self.logged_in,
            "auth_required": self.auth_required,
            "user": None if self.user is None else self.user.to_json(),
            "expires_at": self.expires_at,
            "secret_backend": self.secret_backend,
            "last_error": self.last_error,
        }


StatusListener = Callable[[SessionStatus], None]
