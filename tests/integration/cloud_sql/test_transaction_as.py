"""Devcloud.transaction_as: the role switch (in the same round trip as BEGIN), commit, rollback."""

from __future__ import annotations

import json

import asyncpg
import pytest

from devcloud.context import Devcloud, DevcloudConfig, DevcloudConnection
from devcloud.keys import InvalidToken

from .kit import Cloud


async def test_the_claims_arrive_exactly_as_given(cloud: Cloud) -> None:
    claims = {
        "sub": "0196a1d2-0000-7000-8000-00000000000a",
        "role": "authenticated",
        "name": "O'Brien \\ \"quoted\" ünïcode ' ; COMMIT; --",
    }
    async with cloud.ctx.transaction_as(claims) as conn:
        row = await conn.fetchrow(
            "SELECT current_user AS role, current_setting('request.jwt.claims') AS claims,"
            " auth.uid()::text AS uid, current_setting('request.jwt.claim.role') AS claim_role"
        )
        assert conn.is_in_transaction()
    assert row is not None
    assert row["role"] == "authenticated" and row["claim_role"] == "authenticated"
    assert json.loads(row["claims"]) == claims
    assert row["uid"] == claims["sub"]


async def test_the_block_commits_or_rolls_back(cloud: Cloud) -> None:
    org = await cloud.org("A")
    service = cloud.claims(None, "service_role")
    async with cloud.ctx.transaction_as(service) as conn:
        await conn.execute("INSERT INTO public.workspaces (org_id, name) VALUES ($1, 'kept')", org)
    with pytest.raises(RuntimeError):
        async with cloud.ctx.transaction_as(service) as conn:
            await conn.execute(
                "INSERT INTO public.workspaces (org_id, name) VALUES ($1, 'dropped')", org
            )
            raise RuntimeError("the handler failed")
    names = await cloud.pool.fetch("SELECT name FROM public.workspaces ORDER BY name")
    assert [r["name"] for r in names] == ["kept"]
    # the connection went back to the pool clean: outside any transaction, as the pool's role
    async with cloud.pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT current_setting('request.jwt.claims', true)") in (
            None,
            "",
        )


async def test_a_failed_statement_rolls_back_the_transaction(cloud: Cloud) -> None:
    org = await cloud.org("A")
    service = cloud.claims(None, "service_role")
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with cloud.ctx.transaction_as(service) as conn:
            await conn.execute("INSERT INTO public.workspaces (org_id) VALUES ($1)", org)
            await conn.execute("SELECT 1 / 0")
    assert await cloud.pool.fetchval("SELECT count(*) FROM public.workspaces") == 0


@pytest.mark.parametrize("claims", [{"role": "postgres"}, {"role": "anon", "sub": "a\x00b"}])
async def test_bad_claims_are_refused_before_any_sql(cloud: Cloud, claims: dict[str, str]) -> None:
    with pytest.raises(InvalidToken):
        async with cloud.ctx.transaction_as(claims):
            pytest.fail("the block must not run")


async def test_the_session_is_reset_with_the_commit_on_devcloud_connections(
    cloud: Cloud, fresh_database_url: str
) -> None:
    # ``cloud`` applied the schema (roles included) to this database; a pool as server.py has
    pool = await asyncpg.create_pool(
        fresh_database_url, min_size=1, max_size=1, connection_class=DevcloudConnection
    )
    try:
        ctx = Devcloud(DevcloudConfig(), pool)
        service = Cloud.claims(None, "service_role")
        sent: list[str] = []
        async with ctx.transaction_as(service) as conn:
            conn.add_query_logger(lambda q: sent.append(q.query))
            await conn.execute("SELECT set_config('app.mark', 'dirty', false)")  # session-wide
            await conn.execute("LISTEN devcloud_test")
        # the reset went out with the COMMIT; the release (done by now) sent nothing more
        assert sent[-1].startswith("COMMIT;") and "RESET ALL" in sent[-1]
        async with pool.acquire() as conn:
            state = await conn.fetchrow(
                "SELECT current_setting('app.mark', true) AS mark,"
                " (SELECT count(*) FROM pg_listening_channels()) AS channels"
            )
        assert state is not None and (state["mark"] or "") == "" and state["channels"] == 0

        async with pool.acquire() as conn:  # not through transaction_as: the pool's own reset
            await conn.execute("SELECT set_config('app.mark', 'dirty', false)")
        async with pool.acquire() as conn:
            assert (await conn.fetchval("SELECT current_setting('app.mark', true)") or "") == ""
    finally:
        await pool.close()
