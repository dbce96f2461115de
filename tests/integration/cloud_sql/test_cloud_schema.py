"""The cloud schema applies on a fresh database, again and again, and concurrently."""

from __future__ import annotations

import asyncio

import asyncpg

from devcloud.schema import apply_all, migration_files, schema_scripts

SYNCED = {"workspaces", "conversations", "messages", "tasks", "documents", "doc_updates"}
PUBLIC_TABLES = SYNCED | {"profiles", "organizations", "org_memberships", "cloud_agents"}


def test_scripts_are_found_in_order() -> None:
    names = [f.name for f in migration_files()]
    assert names == sorted(names)
    assert names[0].startswith("0001_") and len(names) >= 6
    scripts = schema_scripts()
    assert scripts[0][0] == "devcloud/sql/bootstrap.sql"
    assert all(sql.strip() for _, sql in scripts)


async def test_apply_twice_on_a_fresh_database(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await apply_all(conn)
        before = await _schema_fingerprint(conn)
        await apply_all(conn)
        assert await _schema_fingerprint(conn) == before

        tables = {
            r["tablename"]: r["rowsecurity"]
            for r in await conn.fetch(
                "SELECT tablename, rowsecurity FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert PUBLIC_TABLES <= set(tables)
        assert all(tables[t] for t in PUBLIC_TABLES), "row-level security on every table"
        published = {
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'"
            )
        }
        assert published == SYNCED
        roles = {
            r["rolname"]: r
            for r in await conn.fetch(
                "SELECT rolname, rolbypassrls, rolinherit, rolcanlogin FROM pg_roles"
                " WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator')"
            )
        }
        assert set(roles) == {"anon", "authenticated", "service_role", "authenticator"}
        assert roles["service_role"]["rolbypassrls"] and not roles["anon"]["rolbypassrls"]
        assert roles["authenticator"]["rolcanlogin"] and not roles["authenticator"]["rolinherit"]
        for role in ("anon", "authenticated", "service_role"):
            assert await conn.fetchval("SELECT pg_has_role('authenticator', $1, 'MEMBER')", role)
        triggers = await conn.fetch(
            "SELECT tgname, count(*) AS n FROM pg_trigger"
            " WHERE tgname LIKE 'sync\\_row\\_stamp%' AND NOT tgisinternal GROUP BY tgname"
        )
        assert {t["tgname"]: t["n"] for t in triggers} == {
            "sync_row_stamp": len(SYNCED),
            "sync_row_stamp_insert": len(SYNCED),
        }
    finally:
        await conn.close()


async def test_concurrent_appliers_are_serialised(fresh_database_url: str) -> None:
    conns = [await asyncpg.connect(fresh_database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(apply_all(c) for c in conns))
        count = await conns[0].fetchval(
            "SELECT count(*) FROM pg_policies WHERE schemaname = 'public'"
        )
        assert count > 0
    finally:
        for c in conns:
            await c.close()


async def test_auth_helpers_read_postgrest_claims(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await apply_all(conn)
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('request.jwt.claims', $1, true)",
                '{"sub": "8d0fd2b3-9ca2-4f0f-8a5b-2d3f4e5a6b7c", "role": "authenticated",'
                ' "email": "a@b.co"}',
            )
            row = await conn.fetchrow(
                "SELECT auth.uid()::text AS uid, auth.role() AS role, auth.email() AS email,"
                " auth.jwt() ->> 'sub' AS sub"
            )
        assert row is not None
        assert row["uid"] == "8d0fd2b3-9ca2-4f0f-8a5b-2d3f4e5a6b7c"
        assert (row["role"], row["email"]) == ("authenticated", "a@b.co")
        assert row["sub"] == row["uid"]
        assert await conn.fetchval("SELECT auth.uid()") is None
    finally:
        await conn.close()


async def _schema_fingerprint(conn: asyncpg.Connection) -> list[tuple[str, ...]]:
    rows = await conn.fetch(
        "SELECT 'col', table_name::text, column_name::text, data_type::text"
        " FROM information_schema.columns WHERE table_schema IN ('public', 'auth')"
        " UNION ALL SELECT 'policy', tablename::text, policyname::text, cmd::text FROM pg_policies"
        " UNION ALL SELECT 'fn', p.proname::text, pg_get_function_identity_arguments(p.oid), ''"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('public', 'auth')"
        " ORDER BY 1, 2, 3, 4"
    )
    return [tuple(r) for r in rows]
