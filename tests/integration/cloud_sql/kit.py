"""The cloud SQL tests' toolkit: seed users and organisations as the superuser, run SQL as a
user the way PostgREST does (role + request.jwt.claims for one transaction, through
Devcloud.transaction_as).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

from devcloud.context import Devcloud
from tests.helpers import wait_for

PUSH = "SELECT public.sync_push($1::jsonb)::text"


def hlc(wall_ms: int, counter: int = 0, device: str = "dev1") -> str:
    return f"{wall_ms:013d}-{counter:06d}-{device}"


def now_ms() -> int:
    return int(time.time() * 1000)


class Cloud:
    """The cloud database of one test."""

    def __init__(self, ctx: Devcloud) -> None:
        self.ctx = ctx
        self.pool = ctx.pool
        self.base_ms = now_ms() - 60_000  # clocks a minute old: never "ahead of the cloud"

    def clock(self, counter: int, device: str = "dev1", *, offset_ms: int = 0) -> str:
        return hlc(self.base_ms + offset_ms, counter, device)

    # -- seeding, as the superuser -------------------------------------------------------------

    async def user(self, email: str) -> str:
        return str(
            await self.pool.fetchval(
                "INSERT INTO auth.users (email, email_confirmed_at) VALUES ($1, now())"
                " RETURNING id",
                email,
            )
        )

    async def org(self, name: str, *members: str, owner: str | None = None) -> str:
        org_id = str(
            await self.pool.fetchval(
                "INSERT INTO public.organizations (name, created_by) VALUES ($1, $2) RETURNING id",
                name,
                owner,
            )
        )
        for member in members:
            await self.pool.execute(
                "INSERT INTO public.org_memberships (org_id, user_id, role)"
                " VALUES ($1, $2, 'member') ON CONFLICT DO NOTHING",
                org_id,
                member,
            )
        return org_id

    async def workspace(self, org_id: str, name: str = "ws") -> str:
        return str(
            await self.pool.fetchval(
                "INSERT INTO public.workspaces (org_id, name) VALUES ($1, $2) RETURNING id",
                org_id,
                name,
            )
        )

    # -- running as someone ----------------------------------------------------------------------

    @staticmethod
    def claims(user_id: str | None, role: str = "authenticated") -> dict[str, Any]:
        if user_id is None:
            return {"role": role}
        return {"sub": user_id, "role": role, "aud": "authenticated"}

    async def fetch_as(
        self, user_id: str | None, sql: str, *args: Any, role: str = "authenticated"
    ) -> list[asyncpg.Record]:
        async with self.ctx.transaction_as(self.claims(user_id, role)) as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchval_as(
        self, user_id: str | None, sql: str, *args: Any, role: str = "authenticated"
    ) -> Any:
        async with self.ctx.transaction_as(self.claims(user_id, role)) as conn:
            return await conn.fetchval(sql, *args)

    async def execute_as(
        self, user_id: str | None, sql: str, *args: Any, role: str = "authenticated"
    ) -> str:
        async with self.ctx.transaction_as(self.claims(user_id, role)) as conn:
            return str(await conn.execute(sql, *args))

    async def json_as(
        self, user_id: str | None, sql: str, *args: Any, role: str = "authenticated"
    ) -> Any:
        """The one JSON value ``sql`` answers as that user, decoded."""
        return json.loads(await self.fetchval_as(user_id, sql, *args, role=role))

    async def push(
        self, user_id: str | None, changes: Iterable[dict[str, Any]], *, role: str = "authenticated"
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.json_as(
            user_id, PUSH, json.dumps(list(changes)), role=role
        )
        return result

    async def pull(
        self,
        user_id: str | None,
        cursor: str | None = None,
        limit: int = 1000,
        workspace_id: str | None = None,
        *,
        role: str = "authenticated",
    ) -> dict[str, Any]:
        sql = "SELECT public.sync_pull($1, $2, $3::uuid)::text"
        page: dict[str, Any] = await self.json_as(
            user_id, sql, cursor, limit, workspace_id, role=role
        )
        return page

    async def pull_count(
        self, user_id: str | None, cursor: str | None = None, workspace_id: str | None = None
    ) -> int:
        sql = "SELECT public.sync_pull_count($1, $2::uuid)"
        return int(await self.fetchval_as(user_id, sql, cursor, workspace_id))

    async def pull_marks(
        self,
        user_id: str | None,
        cursor: str | None = None,
        step: int = 1000,
        workspace_id: str | None = None,
    ) -> dict[str, Any]:
        sql = "SELECT public.sync_pull_marks($1, $2, $3::uuid)::text"
        marks: dict[str, Any] = await self.json_as(user_id, sql, cursor, step, workspace_id)
        return marks

    async def row(self, table: str, row_id: str) -> dict[str, Any] | None:
        raw = await self.pool.fetchval(
            f"SELECT to_jsonb(t)::text FROM public.{table} t WHERE id = $1", row_id
        )
        return None if raw is None else dict(json.loads(raw))


def change(
    table: str,
    row_id: str,
    workspace_id: str,
    fields: dict[str, Any],
    clock: str | dict[str, str],
    origin: str = "dev1",
) -> dict[str, Any]:
    """A sync_push change; ``clock`` is one clock for every field, or the whole field_hlc."""
    field_hlc = clock if isinstance(clock, dict) else dict.fromkeys(fields, clock)
    return {
        "table": table,
        "id": row_id,
        "workspace_id": workspace_id,
        "fields": fields,
        "field_hlc": field_hlc,
        "origin": origin,
    }


def new_id() -> str:
    return str(uuid.uuid4())


async def lock_waiters(cloud: Cloud) -> int:
    """How many sessions of the test database wait for a lock."""
    return int(
        await cloud.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def race(
    cloud: Cloud, user: str, first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Push ``first`` in a transaction left open until ``second``, pushed meanwhile in another
    one, waits for it; then commit the first. Both pushes' results."""
    claims = cloud.claims(user)
    async with cloud.ctx.transaction_as(claims) as conn1:
        r1 = json.loads(await conn1.fetchval(PUSH, json.dumps(first)))

        async def push_second() -> list[dict[str, Any]]:
            async with cloud.ctx.transaction_as(claims) as conn2:
                return list(json.loads(await conn2.fetchval(PUSH, json.dumps(second))))

        racing = asyncio.create_task(push_second())

        async def second_is_waiting() -> bool:
            return await lock_waiters(cloud) > 0

        await wait_for(second_is_waiting, message="the second push to wait for the first")
    return r1, await racing
