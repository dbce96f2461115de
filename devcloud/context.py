"""What every devcloud service shares: settings, the connection pool, and PostgREST-style
per-request role switching (so row-level security written for Supabase works unchanged)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from devcloud.keys import DEFAULT_JWT_SECRET, InvalidToken, make_role_key, verify


@dataclass(frozen=True)
class DevcloudConfig:
    # Keys
    jwt_secret: str = DEFAULT_JWT_SECRET
    jwt_expiry: int = 3600  # access-token lifetime, seconds
    refresh_token_reuse_interval: float = 10.0  # GoTrue's reuse window for a rotated refresh token
    # Functions
    # an OpenAI-compatible base URL; None: the deterministic local model
    ai_upstream: str | None = None
    # Network
    host: str = "127.0.0.1"
    port: int = 54321

    @property
    def anon_key(self) -> str:
        return make_role_key("anon", self.jwt_secret)

    @property
    def service_role_key(self) -> str:
        return make_role_key("service_role", self.jwt_secret)


@dataclass
class Devcloud:
    """The runtime context handed to every devcloud service."""

    config: DevcloudConfig
    pool: asyncpg.Pool
    extras: dict[str, Any] = field(default_factory=dict)  # per-service state (e.g. realtime hub)

    def claims_from_headers(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """The JWT claims of a request: the bearer token if any, else the ``apikey`` header.

        Raises InvalidToken when neither is present or the token does not verify.
        """
        token = bearer_token(headers) or headers.get("apikey")
        if not token:
            raise InvalidToken("no api key or bearer token")
        return verify(token, self.config.jwt_secret)

    @asynccontextmanager
    async def transaction_as(self, claims: Mapping[str, Any]) -> AsyncIterator[asyncpg.Connection]:
        """One transaction as the claims' role with ``request.jwt.claims`` set (as PostgREST)."""
        role = str(claims.get("role") or "anon")
        if role not in ("anon", "authenticated", "service_role"):
            raise InvalidToken(f"role {role!r} is not allowed")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT set_config('role', $1, true),"
                " set_config('request.jwt.claims', $2, true),"
                " set_config('request.jwt.claim.sub', $3, true),"
                " set_config('request.jwt.claim.role', $1, true)",
                role,
                json.dumps(dict(claims)),
                str(claims.get("sub") or ""),
            )
            yield conn


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or headers.get("Authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None
