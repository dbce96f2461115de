"""When to refresh a channel's access token (pure; ``now`` is Unix seconds).

Realtime shuts a channel down the moment its token expires (a ``system`` error, then
``phx_close``), so a fresh token must reach every joined channel before ``exp``. The token is
only read here, never verified (the server verifies it): its ``exp`` claim says when it ends.
A token is refreshed when a quarter of its remaining life (at most ``MAX_MARGIN_S``) is left;
asking again while the auth layer still hands out the same token therefore converges on ``exp``
without spinning (never more often than every ``MIN_RECHECK_S``).

``exp`` is on the cloud's clock. A device whose clock is off by hours misjudges it: ahead, every
token looks expired (asked again every ``EXPIRED_RECHECK_S``); behind, a token looks good for
hours after Realtime closed its channels for it. Whoever issued the token knows its life on
the device's clock (the cloud session counts ``expires_in`` from when it asked): given that
remaining life, ``refresh_delay_in`` plans from it instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

__all__ = ["expires_at", "refresh_delay", "refresh_delay_in", "ws_url"]

MAX_MARGIN_S: Final = 60.0
MIN_RECHECK_S: Final = 0.5
EXPIRED_RECHECK_S: Final = 5.0  # the auth layer has nothing fresh: ask again now and then
UNKNOWN_RECHECK_S: Final = 60.0  # a token without a readable exp (e.g. an opaque key)
REALTIME_PATH: Final = "/realtime/v1/websocket"


def expires_at(token: str) -> float | None:
    """The ``exp`` claim of a JWT (Unix seconds), or None when there is none to read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)


def refresh_delay(token: str, now: float) -> float:
    """Seconds from ``now`` until ``token`` should be replaced."""
    exp = expires_at(token)
    if exp is None:
        return UNKNOWN_RECHECK_S
    return refresh_delay_in(exp - now)


def refresh_delay_in(remaining: float) -> float:
    """Seconds until a token with ``remaining`` seconds of life should be replaced."""
    if remaining <= 0:
        return EXPIRED_RECHECK_S
    return max(MIN_RECHECK_S, remaining - min(MAX_MARGIN_S, remaining / 4))


def ws_url(base_url: str, apikey: str) -> str:
    """The Realtime socket URL of a cloud: ``<ws base>/realtime/v1/websocket?apikey=…&vsn=1.0.0``.

    ``base_url`` is the project URL (http/https, as configured) or already a ws/wss URL.
    Raises ValueError for other schemes.
    """
    parts = urlsplit(base_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError("the cloud URL must be http(s):// or ws(s):// with a host")
    path = parts.path.rstrip("/")
    if not path.endswith(REALTIME_PATH):
        path += REALTIME_PATH
    query = urlencode({"apikey": apikey, "vsn": "1.0.0"})
    return urlunsplit((schemes[parts.scheme], parts.netloc, path, query, ""))
