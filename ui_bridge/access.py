"""Who may open the local API (pure): token, Origin and Host checks on the opening handshake.

- Host must be ``127.0.0.1:<port>`` or ``localhost:<port>`` (any case): a page on another name
  that resolves to 127.0.0.1 (DNS rebinding) sends its own name and is refused (403).
- Origin, when present (browsers), must be on the allow-list: ``http://127.0.0.1:<port>``,
  ``http://localhost:<port>``, ``vscode-webview://*``, ``vscode-file://*`` and the configured
  extras (an entry ending in ``*`` is a prefix), scheme and host in any case. Clients without
  Origin are not browsers.
- The token (``Authorization: Bearer …`` or ``?token=``) is compared in constant time (401).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Rejection",
    "check_handshake",
    "extract_token",
    "is_host_allowed",
    "is_origin_allowed",
]

BUILTIN_ORIGIN_PATTERNS: Final = ("vscode-webview://*", "vscode-file://*")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Refuse the handshake with this HTTP status; ``reason`` is safe to send (no secrets)."""

    status: int
    reason: str


def is_host_allowed(host: str | None, port: int) -> bool:
    """Only the loopback names, with our port (host names are case-insensitive, RFC 3986
    3.2.2: ``LOCALHOST:<port>`` is the same host)."""
    return host is not None and host.lower() in (f"127.0.0.1:{port}", f"localhost:{port}")


def is_origin_allowed(origin: str, port: int, extra: Sequence[str] = ()) -> bool:
    """Whether a browser page from ``origin`` may connect.

    Scheme and host compare case-insensitively; ``extra`` holds origins as config.py
    normalises them (``scheme://host[:port]``, no trailing slash; a trailing ``*``: a prefix).
    """
    origin = origin.lower()
    if origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        return True
    for entry in (*BUILTIN_ORIGIN_PATTERNS, *extra):
        pattern = entry.lower()
        if pattern.endswith("*"):
            if origin.startswith(pattern[:-1]) and len(origin) > len(pattern) - 1:
                return True
        elif origin == pattern:
            return True
    return False


def extract_token(path: str, authorization: str | None) -> str | None:
    """The presented token: the Bearer header first, else the ``token`` query parameter."""
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    query = parse_qs(urlsplit(path).query)
    values = query.get("token")
    return values[0] if values else None


def tokens_equal(presented: str, expected: str) -> bool:
    """Constant-time comparison (no early exit that would leak a prefix)."""
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def check_handshake(
    *,
    path: str,
    hosts: Sequence[str],
    origins: Sequence[str],
    authorizations: Sequence[str],
    port: int,
    token: str,
    allowed_origins: Sequence[str] = (),
) -> Rejection | None:
    """``None`` to accept; otherwise the HTTP status to refuse the upgrade with.

    Header arguments are every value the request carried (a repeated header is refused).
    """
    if len(hosts) != 1 or not is_host_allowed(hosts[0], port):
        return Rejection(403, "Host not allowed")
    if len(origins) > 1 or (origins and not is_origin_allowed(origins[0], port, allowed_origins)):
        return Rejection(403, "Origin not allowed")
    if urlsplit(path).path != "/":
        return Rejection(404, "Not found: the API is at /")
    if len(authorizations) > 1:
        return Rejection(401, "Unauthorized")
    presented = extract_token(path, authorizations[0] if authorizations else None)
    if presented is None or not tokens_equal(presented, token):
        return Rejection(401, "Unauthorized: token required")
    return None
