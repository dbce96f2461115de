"""Row-level security through /rest/v1 with users signed in by the official client: a member of
org A can neither read nor write org B's rows, and anon sees nothing."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
from postgrest import APIError
from supabase import AsyncClient, acreate_client

from devcloud.server import RunningDevcloud


@dataclass
class Member:
    client: AsyncClient
    user_id: str
    org_id: str
    workspace_id: str


async def member(devcloud: RunningDevcloud, email: str, org: str) -> Member:
    user_id = await devcloud.create_user(email, "correct horse 1", org=org)
    client = await acreate_client(devcloud.url, devcloud.anon_key)
    await client.auth.sign_in_with_password({"email": email, "password": "correct horse 1"})
    orgs = await client.table("organizations").select("id,name").execute()
    assert [o["name"] for o in orgs.data] == [org]  # only their own organisation is visible
    org_id = orgs.data[0]["id"]
    created = (
        await client.table("workspaces").insert({"org_id": org_id, "name": f"{org} ws"}).execute()
    )
    return Member(client, user_id, org_id, created.data[0]["id"])


@pytest.fixture
async def pair(devcloud: RunningDevcloud) -> tuple[Member, Member]:
    return await member(devcloud, "alice@a.test", "Acme"), await member(
        devcloud, "bob@b.test", "Globex"
    )


async def test_members_read_only_their_organisations_rows(pair: tuple[Member, Member]) -> None:
    alice, bob = pair
    seen_by_alice = await alice.client.table("workspaces").select("id,name").execute()
    assert [w["name"] for w in seen_by_alice.data] == ["Acme ws"]
    hidden = await alice.client.table("workspaces").select("*").eq("id", bob.workspace_id).execute()
    assert hidden.data == []
    counted = await bob.client.table("workspaces").select("id", count="exact").execute()  # type: ignore[arg-type]
    assert counted.count == 1 and counted.data[0]["id"] == bob.workspace_id
    with pytest.raises(APIError) as single:
        await (
            bob.client.table("workspaces")
            .select("*")
            .eq("id", alice.workspace_id)
            .single()
            .execute()
        )
    assert single.value.code == "PGRST116"


async def test_members_cannot_write_other_organisations_rows(
    devcloud: RunningDevcloud, pair: tuple[Member, Member]
) -> None:
    alice, bob = pair
    with pytest.raises(APIError) as denied:
        await (
            bob.client.table("workspaces")
            .insert({"org_id": alice.org_id, "name": "intruder"})
            .execute()
        )
    assert denied.value.code == "42501"
    assert "row-level security" in denied.value.message
    updated = (
        await bob.client.table("workspaces")
        .update({"name": "pwned"})
        .eq("id", alice.workspace_id)
        .execute()
    )
    assert updated.data == []
    with pytest.raises(APIError) as moved:  # moving one's own row into org A fails the check
        await (
            bob.client.table("workspaces")
            .update({"org_id": alice.org_id})
            .eq("id", bob.workspace_id)
            .execute()
        )
    assert moved.value.code == "42501"
    removed = (
        await bob.client.table("org_memberships").delete().eq("user_id", alice.user_id).execute()
    )
    assert removed.data == []
    async with devcloud.ctx.pool.acquire() as conn:
        rows = await conn.fetch("SELECT name, org_id::text FROM public.workspaces ORDER BY name")
        memberships = await conn.fetchval("SELECT count(*) FROM public.org_memberships")
    assert memberships == 2
    assert [(r["name"], r["org_id"]) for r in rows] == [
        ("Acme ws", alice.org_id),
        ("Globex ws", bob.org_id),
    ]


async def test_rls_violation_status_is_403_for_users_and_401_for_anon(
    devcloud: RunningDevcloud, pair: tuple[Member, Member]
) -> None:
    alice, bob = pair
    session = await bob.client.auth.get_session()
    assert session is not None
    body = {"org_id": alice.org_id, "name": "x"}
    async with httpx.AsyncClient(base_url=f"{devcloud.url}/rest/v1") as http:
        as_bob = await http.post(
            "/workspaces",
            json=body,
            headers={
                "apikey": devcloud.anon_key,
                "Authorization": f"Bearer {session.access_token}",
            },
        )
        as_anon = await http.post("/workspaces", json=body, headers={"apikey": devcloud.anon_key})
    assert as_bob.status_code == 403 and as_bob.json()["code"] == "42501"
    assert as_anon.status_code == 401 and as_anon.json()["code"] == "42501"


async def test_anon_sees_nothing_and_service_role_sees_everything(
    devcloud: RunningDevcloud, pair: tuple[Member, Member]
) -> None:
    anon = await acreate_client(devcloud.url, devcloud.anon_key)
    for table in ("workspaces", "organizations", "org_memberships", "profiles"):
        assert (await anon.table(table).select("*").execute()).data == []
    with pytest.raises(APIError):
        await anon.table("workspaces").insert({"org_id": pair[0].org_id, "name": "anon"}).execute()
    service = await acreate_client(devcloud.url, devcloud.service_role_key)
    everything = await service.table("workspaces").select("name").order("name").execute()
    assert [w["name"] for w in everything.data] == ["Acme ws", "Globex ws"]


async def test_auth_uid_is_the_signed_in_user(pair: tuple[Member, Member]) -> None:
    alice, _ = pair
    profile = await alice.client.table("profiles").select("id,email").execute()
    assert profile.data == [{"id": alice.user_id, "email": "alice@a.test"}]


def hlc(device: str) -> str:
    return f"{int(time.time() * 1000):013d}-{0:06d}-{device}"


async def test_sync_rpcs_through_rest_respect_membership(pair: tuple[Member, Member]) -> None:
    alice, bob = pair
    clock = hlc("dev-a")
    change = {
        "table": "workspaces",
        "id": str(uuid.uuid4()),
        "fields": {"org_id": alice.org_id, "name": "pushed"},
        "field_hlc": {"org_id": clock, "name": clock},
        "origin": "dev-a",
    }
    pushed = await alice.client.rpc("sync_push", {"changes": [change]}).execute()
    assert [r["status"] for r in pushed.data] == ["applied"]
    intruding = dict(change, id=str(uuid.uuid4()))
    refused = await bob.client.rpc("sync_push", {"changes": [intruding]}).execute()
    assert [r["status"] for r in refused.data] == ["rejected"]
    pulled = await alice.client.rpc("sync_pull", {"cursor": None, "limit": 100}).execute()
    ids = {c["id"] for c in pulled.data["changes"]}
    assert change["id"] in ids and alice.workspace_id in ids
    assert bob.workspace_id not in ids and intruding["id"] not in ids
    by_get = await bob.client.rpc("sync_pull", {"limit": 100}, get=True).execute()
    assert {c["id"] for c in by_get.data["changes"]} == {bob.workspace_id}
    # the count of what a pull from a cursor would serve, under the same visibility
    counted = await alice.client.rpc("sync_pull_count", {"cursor": None}).execute()
    assert counted.data == len(pulled.data["changes"])
    counted = await bob.client.rpc(
        "sync_pull_count", {"workspace_id": alice.workspace_id}
    ).execute()
    assert counted.data == 0
    # ... and where pages of `step` rows from it end: with 1, every row's cursor, the last
    # one where the pull above ended
    marked = await alice.client.rpc("sync_pull_marks", {"step": 1}).execute()
    assert marked.data["count"] == len(marked.data["marks"]) == len(pulled.data["changes"])
    assert marked.data["marks"][-1] == pulled.data["cursor"]
    marked = await bob.client.rpc(
        "sync_pull_marks", {"step": 1, "workspace_id": alice.workspace_id}
    ).execute()
    assert marked.data == {"count": 0, "marks": []}
