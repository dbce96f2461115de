"""Retry policy for cloud requests (pure: no I/O; the time comes in as ``now``).

Theory of operation
-------------------
The cloud adapter describes every failed request as a ``Failure``: the HTTP status, the response
headers and the decoded error JSON (Supabase Auth/GoTrue, PostgREST or an edge function), or,
when no response arrived, a transport error kind (``connect``, ``timeout``, ``reset``).
``classify`` turns it into one ``Decision``:

- ``Retry(after_s)`` -- transient: try again later, not before ``after_s`` seconds when the
  server said so (``Retry-After``). Network errors, 408, 429, 5xx except 501, and GoTrue's 409
  ``conflict`` (concurrent refreshes of one session).
- ``ReAuth()`` -- the access token is no longer accepted: refresh the session, then repeat the
  request once. Any 401 (PostgREST: PGRST301 / PGRST303 "JWT expired"; older PostgREST says
  PGRST301 for expiry too, so the status decides, not the code) and GoTrue's 403 ``bad_jwt``.
  A request that fails that way again right after a refresh (``Failure.reauthed``) is
  ``Retry(reason="token_rejected")``: GoTrue has just granted the session, so it stands; the
  data API refusing a fresh token (a gateway, keys or clocks out of step with GoTrue's) is
  retried with backoff, never a logout.
- ``Fatal("auth_required")`` -- the session is gone for good and the user must log in again:
  refresh refused (``refresh_token_already_used``, ``refresh_token_not_found``,
  ``session_not_found``, ``session_expired``, ``user_not_found``, legacy OAuth
  ``invalid_grant`` about a refresh token): only GoTrue says so.
- ``BadData(reason)`` -- a ``Fatal`` about a value the request carries: a PostgreSQL data
  exception (SQLSTATE class 22, e.g. ``22P05`` "unsupported Unicode escape sequence"), an
  integrity constraint (23) or a program limit (54, "too large": PostgREST answers it 500),
  whatever the status; and 413 (the request is too large). The same request fails again for
  ever, but a part of it may not: a push refused so is split until the one change holding that
  value is alone (push_batch.Bisection), which is then rejected, and the others go through.
- ``Fatal(reason)`` -- any other 4xx, and 501: retrying cannot help. ``reason`` is the server's
  error code (e.g. ``PGRST204``, ``validation_failed``) or ``http_<status>``.

Reasons are codes only, never server messages, so no token or content can leak into logs or
status (I8). ``Backoff`` spaces retries with full jitter: ``rand * min(cap, base * 2**attempt)``
with ``rand`` drawn by the caller from [0, 1), and never less than the server's ``Retry-After``.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Final, Literal

from daemon.backoff import Backoff as _Backoff

__all__ = [
    "Backoff",
    "BadData",
    "Decision",
    "Failure",
    "Fatal",
    "ReAuth",
    "Retry",
    "STATEMENT_TIMEOUT",
    "TOKEN_REJECTED",
    "TransportKind",
    "classify",
    "parse_retry_after",
    "refresh_refused",
]

TransportKind = Literal["connect", "timeout", "reset"]
_TRANSPORT_KINDS: Final = frozenset({"connect", "timeout", "reset"})

#: GoTrue codes meaning the refresh token or session is gone: only a new login helps.
REFRESH_REFUSED: Final = frozenset(
    {
        "refresh_token_already_used",
        "refresh_token_not_found",
        "session_not_found",
        "session_expired",
        "user_not_found",
    }
)
#: PostgreSQL's "canceling statement due to statement timeout" (PostgREST answers it 500):
#: Supabase gives the API roles 8 s a statement. Retried like any 5xx; a pull asks for fewer
#: rows after it (protocol.py ``PullTooSlow``), since the same page would time out again.
STATEMENT_TIMEOUT: Final = "57014"
#: The reason of a request whose token was refused again right after a refresh (``classify``).
TOKEN_REJECTED: Final = "token_rejected"
#: A server that asks for longer than this is capped: sync must not stall for days.
MAX_RETRY_AFTER_S: Final = 3600.0
_CODE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: SQLSTATEs about the data: classes 22 (data exception), 23 (integrity constraint), 54
#: (program limit exceeded).
_DATA_SQLSTATE: Final = re.compile(r"^(22|23|54)[0-9A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed request, as the adapter saw it. Exactly one of ``status``/``transport``.

    ``headers`` are matched case-insensitively. ``body`` is the decoded error JSON, if any.
    ``reauthed``: the request already ran with a session refreshed because of it.
    """

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    transport: TransportKind | None = None
    reauthed: bool = False

    def __post_init__(self) -> None:
        if (self.status is None) == (self.transport is None):
            raise ValueError("a Failure has either an HTTP status or a transport error kind")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"not an HTTP status: {self.status!r}")
        if self.transport is not None and self.transport not in _TRANSPORT_KINDS:
            raise ValueError(f"unknown transport error kind: {self.transport!r}")
        lowered = {str(k).lower(): str(v) for k, v in self.headers.items()}
        object.__setattr__(self, "headers", lowered)

    @classmethod
    def http(
        cls,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        *,
        reauthed: bool = False,
    ) -> Failure:
        """A failure from a response; a body that is not a JSON object is kept as None."""
        decoded: Any = body
        if isinstance(body, bytes | str):
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
        if not isinstance(decoded, Mapping):
            decoded = None
        return cls(status=status, headers=headers or {}, body=decoded, reauthed=reauthed)

    @classmethod
    def network(cls, kind: TransportKind) -> Failure:
        """A request that got no response."""
        return cls(transport=kind)

    @property
    def error_code(self) -> str | None:
        """The server's error code, from whichever shape the error came in."""
        body = self.body or {}
        for key in ("code", "error_code", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        if code := self.headers.get("x-sb-error-code"):
            return code
        proxy = self.headers.get("proxy-status", "")
        match = re.search(r"error=([^;,\s]+)", proxy)
        return match.group(1) if match else None

    @property
    def error_message(self) -> str | None:
        """The server's message (PostgREST's ``message``), if any. Server text: it may quote
        the data, so it goes where the data goes (a rejected change's ``detail``), never into
        a reason, a log line or the status (I8)."""
        message = (self.body or {}).get("message")
        return message if isinstance(message, str) and message else None


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again; not before ``after_s`` seconds when the server named a time."""

    after_s: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Fatal:
    """Do not retry. ``reason`` is an error code (``auth_required``: log in again)."""

    reason: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class BadData(Fatal):
    """A ``Fatal`` about a value the request carries (a data exception, a constraint, too
    large): the request as it is never succeeds, but a part of it may (a push is split)."""


@dataclass(frozen=True, slots=True)
class ReAuth:
    """Refresh the session, then repeat the request once."""


Decision = Retry | Fatal | ReAuth  # (BadData is a Fatal)


def classify(failure: Failure, *, now: float) -> Decision:
    """Decide what to do about ``failure``; ``now`` is Unix time in seconds (for Retry-After)."""
    if failure.transport is not None:
        return Retry(reason=failure.transport)
    status = failure.status
    assert status is not None  # __post_init__ guarantees one of the two
    code = failure.error_code
    reason = code if code is not None and _CODE.match(code) else f"http_{status}"
    if code in REFRESH_REFUSED or _is_legacy_refresh_refusal(failure):
        return Fatal("auth_required", status)
    after = parse_retry_after(failure.headers.get("retry-after"), now=now)
    if status == 401 or (status == 403 and code == "bad_jwt"):
        return Retry(after, TOKEN_REJECTED) if failure.reauthed else ReAuth()
    if status == 429:
        return Retry(after, reason)
    if status == 413 or (code is not None and _DATA_SQLSTATE.match(code)):
        return BadData(reason, status)
    if status == 408 or (status == 409 and code == "conflict"):
        return Retry(after, reason)
    if status >= 500 and status != 501:
        return Retry(after, reason)
    return Fatal(reason, status)


def refresh_refused(failure: Failure) -> bool:
    """Whether a failed refresh grant (``/auth/v1/token?grant_type=refresh_token``) says its
    refresh token can never work again, so the session must end (log in again): GoTrue's
    refusals (``REFRESH_REFUSED``, the legacy ``invalid_grant``; all 400) and 400
    ``validation_failed`` ("Refresh token is not valid": a malformed token; supabase-wire.md
    §2.5). Nothing else is about the token: GoTrue ignores the bearer on /token and answers
    no 401 there, so a 401 (or 403) comes from a gateway or a wrong anon key, and other 4xx,
    5xx or garbage from whatever is in the way; dropping a still valid refresh token for them
    would log the user out for nothing (the session is kept and the refresh retried)."""
    if failure.status is None:
        return False
    code = failure.error_code
    if code in REFRESH_REFUSED or _is_legacy_refresh_refusal(failure):
        return True
    return failure.status == 400 and code == "validation_failed"


def _is_legacy_refresh_refusal(failure: Failure) -> bool:
    """Before late 2024 GoTrue answered refresh failures as OAuth ``invalid_grant``."""
    body = failure.body or {}
    description = body.get("error_description")
    return (
        body.get("error") == "invalid_grant"
        and isinstance(description, str)
        and "refresh token" in description.lower()
    )


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date).

    Returns None when absent or unparseable, 0 for a date in the past, and at most
    ``MAX_RETRY_AFTER_S``.
    """
    if value is None:
        return None
    text = value.strip()
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_date(text, now)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _seconds_until_date(text: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


@dataclass(frozen=True)
class Backoff(_Backoff):
    """``daemon.backoff.Backoff`` that also honours a Retry decision's ``after_s``."""

    def delay_for(self, decision: Retry, attempt: int, rand: float) -> float:
        """``delay`` honouring the server's wish carried by a Retry decision."""
        return self.delay(attempt, rand, decision.after_s)
