"""Realtime Authorization: what a user may do on a private channel, decided by the RLS policies
on ``realtime.messages`` (migrations/cloud/0009), as Supabase Realtime decides it.

One transaction, always rolled back, on one pooled connection: as the pool's owner role, a
``broadcast`` and a ``presence`` row of the topic are inserted (RLS does not apply to the owner);
then, as the user's role with ``request.jwt.claims`` and ``realtime.topic`` (the sub-topic) set,
the rows the user can SELECT say what they may read, and an INSERT per extension (each under a
savepoint) says what they may write. The policies see ``realtime.topic()``, ``auth.uid()`` and
the row's ``extension``, as on Supabase.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from devcloud.context import Devcloud

logger = logging.getLogger(__name__)

EXTENSIONS = ("broadcast", "presence")

_SEED = (
    "INSERT INTO realtime.messages (topic, extension, private)"
    " SELECT $1, e, true FROM unnest($2::text[]) AS e RETURNING id"
)
_AS_USER = (
    "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),"
    " set_config('request.jwt.claim.sub', $3, true),"
    " set_config('request.jwt.claim.role', $1, true), set_config('realtime.topic', $4, true)"
)
_READABLE = "SELECT extension FROM realtime.messages WHERE id = ANY($1::uuid[])"
_WRITE = "INSERT INTO realtime.messages (topic, extension, private) VALUES ($1, $2, true)"


@dataclass(frozen=True)
class Permissions:
    """What the policies allow on one private channel topic."""

    read_broadcast: bool = False
    read_presence: bool = False
    write_broadcast: bool = False
    write_presence: bool = False

    @property
    def can_read(self) -> bool:
        return self.read_broadcast or self.read_presence


NONE = Permissions()
ALL = Permissions(True, True, True, True)


def unauthorized_read(subtopic: str) -> str:
    return f"You do not have permissions to read from this Channel topic: {subtopic}"


async def authorize(ctx: Devcloud, claims: Mapping[str, Any], subtopic: str) -> Permissions:
    """The permissions of ``claims`` on the private channel ``subtopic`` (none on any error)."""
    role = str(claims.get("role") or "anon")
    try:
        async with ctx.pool.acquire() as conn:
            await conn.execute("BEGIN")
            try:
                return await _check(conn, role, claims, subtopic)
            finally:
                await conn.execute("ROLLBACK")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        logger.warning("realtime.authorization.failed topic=%s: %s", subtopic, exc)
        return NONE


async def _check(
    conn: asyncpg.Connection, role: str, claims: Mapping[str, Any], subtopic: str
) -> Permissions:
    ids = [row["id"] for row in await conn.fetch(_SEED, subtopic, list(EXTENSIONS))]
    await conn.execute(
        _AS_USER, role, json.dumps(dict(claims)), str(claims.get("sub") or ""), subtopic
    )
    readable = {row["extension"] for row in await conn.fetch(_READABLE, ids)}
    writable: set[str] = set()
    for extension in EXTENSIONS:
        await conn.execute("SAVEPOINT realtime_write")
        try:
            await conn.execute(_WRITE, subtopic, extension)
            writable.add(extension)
        except asyncpg.PostgresError:  # an RLS violation (or no INSERT privilege)
            pass
        await conn.execute("ROLLBACK TO SAVEPOINT realtime_write")
    return Permissions(
        read_broadcast="broadcast" in readable,
        read_presence="presence" in readable,
        write_broadcast="broadcast" in writable,
        write_presence="presence" in writable,
    )
