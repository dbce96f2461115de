"""What every devcloud service shares: settings, the connection pool, and PostgREST-style
per-request role switching (so row-level security written for Supabase works unchanged)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
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
    # Limits
    # PostgREST's db-max-rows: the most rows one read serves, whatever its limit or Range asks
    # (Supabase projects' default; None: no cap, PostgREST's own default)
    max_rows: int | None = 1000
    # Realtime's max_events_per_second (realtime/rate.py): broadcasts sent and delivered, per
    # second averaged over a minute; channels are shut while the project is above it
    max_events_per_second: int = 100
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
        """One transaction as the claims' role with ``request.jwt.claims`` set (as PostgREST).

        BEGIN and the role switch go in one round trip (a simple query with the values as
        literals); the transaction commits when the block ends and rolls back when it raises.
        The COMMIT carries the pool's session reset too (see ``DevcloudConnection``).
        asyncpg refuses ``conn.transaction()`` inside it (a manually started transaction).
        """
        role = str(claims.get("role") or "anon")
        if role not in ("anon", "authenticated", "service_role"):
            raise InvalidToken(f"role {role!r} is not allowed")
        begin = _BEGIN_AS.format(
            role=sql_literal(role),
            claims=sql_literal(json.dumps(dict(claims))),
            sub=sql_literal(str(claims.get("sub") or "")),
        )
        async with self.pool.acquire() as conn:
            try:
                await conn.execute(begin)
                yield conn
            except BaseException:
                if not conn.is_closed():
                    with suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                        await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT;" + conn.get_reset_query())


class DevcloudConnection(asyncpg.Connection):  # type: ignore[misc]
    """The pool's connections (``server.py``). ``transaction_as`` sends the session reset the
    pool would send at release in its COMMIT's round trip; when that was the last thing a
    connection executed, the release sends nothing more (one round trip less per request).
    (Only methods asyncpg's pool proxy knows reach the connection, hence ``execute``.)"""

    _reset_sent = False

    # asyncpg's signature, timeout included
    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109
        self._reset_sent = False
        result = str(await super().execute(query, *args, timeout=timeout))
        self._reset_sent = not args and query == "COMMIT;" + super().get_reset_query()
        return result

    def get_reset_query(self) -> str:
        if self._reset_sent:
            self._reset_sent = False
            return ""
        return str(super().get_reset_query())


_BEGIN_AS = (
    "BEGIN; SELECT set_config('role', {role}, true),"
    " set_config('request.jwt.claims', {claims}, true),"
    " set_config('request.jwt.claim.sub', {sub}, true),"
    " set_config('request.jwt.claim.role', {role}, true)"
)


def sql_literal(value: str) -> str:
    """``value`` as an SQL string literal (an E'' string: the same whatever
    standard_conforming_strings says)."""
    if "\x00" in value:
        raise InvalidToken("claims must not contain NUL characters")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or headers.get("Authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None
