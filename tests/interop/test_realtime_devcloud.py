"""Realtime through the whole devcloud (its app, schema and auth): a signed-in supabase-py user
gets postgres_changes for workspaces of their own organisation only."""

from __future__ import annotations

from typing import Any

from supabase import acreate_client

from devcloud.server import RunningDevcloud
from tests.helpers import wait_for

PASSWORD = "correct horse 1"


async def test_signed_in_user_gets_only_own_org_workspace_changes(
    devcloud: RunningDevcloud,
) -> None:
    await devcloud.create_user("alice@example.com", PASSWORD, org="org-a")
    await devcloud.create_user("bob@example.com", PASSWORD, org="org-b")
    async with devcloud.ctx.pool.acquire() as conn:
        org_ids = dict(await conn.fetch("SELECT name, id FROM organizations"))

    client = await acreate_client(devcloud.url, devcloud.anon_key)
    await client.auth.sign_in_with_password({"email": "alice@example.com", "password": PASSWORD})
    session = await client.auth.get_session()
    assert session is not None
    await client.realtime.set_auth(session.access_token)
    received: list[dict[str, Any]] = []
    system: list[str] = []
    try:
        channel = client.channel("workspaces")
        channel.on_postgres_changes("*", received.append, table="workspaces")
        channel.on_system(lambda payload: system.append(payload.message))
        states: list[str] = []
        await channel.subscribe(lambda state, err: states.append(state.value))
        assert states == ["SUBSCRIBED"]
        await wait_for(lambda: system == ["Subscribed to PostgreSQL"], message="subscribed")

        async with devcloud.ctx.pool.acquire() as conn:
            for org, name in (("org-b", "bobs"), ("org-a", "alices"), ("org-b", "bobs2")):
                await conn.execute(
                    "INSERT INTO workspaces (org_id, name) VALUES ($1, $2)", org_ids[org], name
                )
            await conn.execute("UPDATE workspaces SET name = 'alices2' WHERE name = 'alices'")
            await conn.execute("DELETE FROM workspaces WHERE name = 'bobs'")
            await conn.execute("DELETE FROM workspaces WHERE name = 'alices2'")
        await wait_for(lambda: len(received) == 3, message="alice's three changes")
    finally:
        await client.realtime.close()
        await client.auth.close()  # its httpx client (the sign-in opened a connection)
    assert [(r["data"]["type"], r["data"].get("record", {}).get("name")) for r in received] == [
        ("INSERT", "alices"),
        ("UPDATE", "alices2"),
        ("DELETE", None),  # bob's delete never arrives: RLS is judged on the old row
    ]
    assert all(r["data"]["record"]["org_id"] == str(org_ids["org-a"]) for r in received[:2])
    assert received[2]["data"]["old_record"] == {"id": received[0]["data"]["record"]["id"]}
