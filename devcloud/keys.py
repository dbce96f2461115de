"""devcloud JWT keys: HS256, by default the Supabase CLI's well-known local-development secret."""

from __future__ import annotations

import time
from typing import Any

import jwt

DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
# The Supabase CLI's local keys: {"iss":"supabase-demo","role":...,"exp":1983812996}.
DEFAULT_ANON_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9"
    ".CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
)
DEFAULT_SERVICE_ROLE_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0"
    ".EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"
)


class InvalidToken(Exception):
    """A JWT that is malformed, badly signed or expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def make_role_key(role: str, secret: str) -> str:
    """An API key (anon / service_role) signed with ``secret``; the CLI's keys for the default."""
    if secret == DEFAULT_JWT_SECRET:
        return {"anon": DEFAULT_ANON_KEY, "service_role": DEFAULT_SERVICE_ROLE_KEY}[role]
    claims = {"iss": "supabase-demo", "role": role, "exp": 1983812996}
    return jwt.encode(claims, secret, algorithm="HS256")


def sign(claims: dict[str, Any], secret: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(token: str, secret: str, *, now: float | None = None) -> dict[str, Any]:
    """Decode and check an HS256 token; raises InvalidToken (expired, bad signature, malformed)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"verify_aud": False, "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp <= (time.time() if now is None else now):
        raise InvalidToken("token is expired")
    return claims
