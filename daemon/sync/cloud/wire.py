"""GoTrue token responses, the refresh schedule and the cloud base URL (pure: no I/O, no clock).

The daemon is the only process that refreshes its session (one holder per refresh token,
supabase-wire.md §2.3). It refreshes ``margin_s`` (60 s) before the access token expires, but
never sooner than ``floor_s`` (10 s) after receiving it, so a server that hands out very short
tokens cannot make it spin; ``refresh_at`` is computed once, when the token arrives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "REFRESH_FLOOR_S",
    "REFRESH_MARGIN_S",
    "CloudUser",
    "TokenGrant",
    "is_expired",
    "normalize_cloud_url",
    "parse_token_response",
    "refresh_at",
]

REFRESH_MARGIN_S: Final = 60.0
REFRESH_FLOOR_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class CloudUser:
    """Who is logged in (safe to show: no token)."""

    id: str
    email: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"id": self.id, "email": self.email}


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A session as GoTrue hands it out. The tokens never show in ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    user: CloudUser


def parse_token_response(body: Any, *, now: float) -> TokenGrant:
    """The session in a ``/token`` response (§2.2), its ``expires_at`` on this device's clock.

    ``now`` is when the grant was asked for (this device's clock). GoTrue's ``expires_at`` is
    the cloud's clock: on a device whose clock runs hours ahead a fresh token would look
    expired at once, and be refreshed before every request (into GoTrue's rate limit on
    /token); one running behind would refresh after the token expired. So the expiry is
    ``now + expires_in`` (a little early by the request's duration), and ``expires_at`` is
    used only when ``expires_in`` is missing. Raises ValueError naming the first field that
    is missing or malformed (never its value).
    """
    if not isinstance(body, Mapping):
        raise ValueError("the token response is not a JSON object")
    access = _text(body, "access_token")
    refresh = _text(body, "refresh_token")
    user = body.get("user")
    if not isinstance(user, Mapping):
        raise ValueError("user")
    email = user.get("email")
    cloud_user = CloudUser(_text(user, "id"), email if isinstance(email, str) and email else None)
    expires_in = _number(body.get("expires_in"))
    if expires_in is not None and expires_in > 0:
        return TokenGrant(access, refresh, now + expires_in, cloud_user)
    expires_at = _number(body.get("expires_at"))
    if expires_at is None:
        raise ValueError("expires_in")
    return TokenGrant(access, refresh, expires_at, cloud_user)


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(key)
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def refresh_at(
    expires_at: float,
    *,
    now: float,
    margin_s: float = REFRESH_MARGIN_S,
    floor_s: float = REFRESH_FLOOR_S,
) -> float:
    """When to refresh a token that expires at ``expires_at`` and arrived at ``now``.

    ``expires_at - margin_s``, but never earlier than ``now + floor_s``.
    """
    return max(expires_at - margin_s, now + floor_s)


def is_expired(expires_at: float, *, now: float, skew_s: float) -> bool:
    """Whether a token is (about to be) expired: less than ``skew_s`` seconds left."""
    return now >= expires_at - skew_s


def normalize_cloud_url(url: str) -> str:
    """The base URL without a trailing ``/``; ValueError unless it is an http(s) URL."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the cloud URL must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("the cloud URL must not have a query or a fragment")
    return text
