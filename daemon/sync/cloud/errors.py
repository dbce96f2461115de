"""The cloud adapter's errors, and the one place failures are translated into them (pure).

::

    DaemonError
    └─ CloudError(operation, reason, status, failure, decision, retryable)
       ├─ CloudUnavailable        transient: no answer, 408/429/5xx, concurrent refreshes, a
       │                          token refused again right after its refresh
       │                          (``token_rejected``); try again later (``retry_after_s``
       │                          when the server said)
       ├─ AuthRequired            the session is gone (GoTrue refused the refresh token, or
       │                          logged out): the user must log in again
       ├─ CloudRejected           the cloud refused the request; retrying cannot help
       │                          (``reason``: ``invalid_credentials``, ``23505``, ``http_404``)
       ├─ CloudProtocolError      the cloud answered, but not with what the protocol says
       │  └─ AnswerTooLarge       ... more than the request's bound allows (``max_bytes``)
       └─ SecretStoreError        the refresh token could not be read, stored or deleted

Every error built from an HTTP answer carries that answer as ``failure`` (a ``retry.Failure``)
and the ``decision`` of ``retry.classify`` for it, so the sync driver can schedule retries
without parsing anything. Messages name the operation, the reason code and the status only:
never a server message, a request body, a token or a password (invariant I8).
"""

from __future__ import annotations

from typing import Final

from daemon.errors import DaemonError
from daemon.sync.retry import Decision, Failure, Fatal, ReAuth, Retry, classify

__all__ = [
    "AnswerTooLarge",
    "AuthRequired",
    "CloudError",
    "CloudProtocolError",
    "CloudRejected",
    "CloudUnavailable",
    "SecretStoreError",
    "error_from_failure",
]

#: Short human explanations of the reason codes a user may see (login, status).
_EXPLANATIONS: Final = {
    "invalid_credentials": "invalid e-mail or password",
    "email_not_confirmed": "the e-mail address is not confirmed",
    "user_banned": "the user is banned",
    "auth_required": "the cloud session has ended; log in again",
    "logged_out": "not logged in to the cloud",
    "over_request_rate_limit": "too many requests; try again later",
    "connect": "the cloud cannot be reached",
    "timeout": "the cloud did not answer in time",
    "reset": "the connection to the cloud broke",
    "57014": "the cloud's statement timeout",
}


class CloudError(DaemonError):
    """A cloud request failed. ``reason`` is a code, never text from the server."""

    retryable: bool = False

    def __init__(
        self,
        operation: str,
        reason: str,
        *,
        status: int | None = None,
        failure: Failure | None = None,
        decision: Decision | None = None,
    ) -> None:
        self.operation = operation
        self.reason = reason
        self.status = status
        self.failure = failure
        self.decision = decision
        super().__init__(_message(operation, reason, status))


class CloudUnavailable(CloudError):
    """Transient: the same request may succeed later (not before ``retry_after_s``)."""

    retryable = True

    @property
    def retry_after_s(self) -> float | None:
        return self.decision.after_s if isinstance(self.decision, Retry) else None


class AuthRequired(CloudError):
    """No usable session: the user must log in (again). Local work goes on."""


class CloudRejected(CloudError):
    """The cloud refused the request for good (bad input, a policy, a conflict)."""


class CloudProtocolError(CloudError):
    """The cloud answered with something the protocol does not allow (e.g. HTML for JSON)."""

    retryable = True  # usually a proxy in the way; the next attempt may get through


class AnswerTooLarge(CloudProtocolError):
    """The answer was given up past ``max_bytes`` (``too_large``): nothing of it was read
    further. A pull asks for fewer rows after it (daemon/sync/workspace.py)."""

    def __init__(self, operation: str, max_bytes: int, reason: str = "too_large") -> None:
        super().__init__(operation, reason)
        self.max_bytes = max_bytes


class SecretStoreError(CloudError):
    """The refresh token could not be read, stored or deleted (``reason`` says which)."""


def _message(operation: str, reason: str, status: int | None) -> str:
    text = f"{operation} failed: {reason}"
    if explanation := _EXPLANATIONS.get(reason):
        text += f" ({explanation})"
    if status is not None:
        text += f" [HTTP {status}]"
    return text


def error_from_failure(failure: Failure, *, operation: str, now: float) -> CloudError:
    """The error to raise for ``failure``; ``now`` is Unix time (for ``Retry-After``).

    ``ReAuth`` (the access token was not accepted) becomes ``AuthRequired`` carrying that
    decision: the REST client refreshes and repeats once before letting it escape.
    """
    decision = classify(failure, now=now)
    kind: type[CloudError]
    if isinstance(decision, Retry):
        kind, reason = CloudUnavailable, decision.reason or "unavailable"
    elif isinstance(decision, ReAuth):
        kind, reason = AuthRequired, "token_rejected"
    elif isinstance(decision, Fatal) and decision.reason == "auth_required":
        kind, reason = AuthRequired, "auth_required"
    else:
        kind, reason = CloudRejected, decision.reason
    return kind(operation, reason, status=failure.status, failure=failure, decision=decision)
