"""Row-level security: members reach their own organisation's rows only; anon reaches nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from .kit import Cloud


@pytest.fixture
async def two_orgs(cloud: Cloud) -> dict[str, Any]:
    """Alice in org A, Bob in org B, Carol in both; one workspace, conversation, message and
    task per org (written as the superuser)."""
    alice, bob, carol, dave = [
        await cloud.user(e) for e in ("alice@a.io", "bob@b.io", "carol@ab.io", "dave@x.io")
    ]
    org_a = await cloud.org("A", alice, carol)
    org_b = await cloud.org("B", bob, carol)
    world: dict[str, Any] = {"alice": alice, "bob": bob, "carol": carol, "dave": dave}
    for key, org in (("a", org_a), ("b", org_b)):
        ws = await cloud.workspace(org, f"ws-{key}")
        conv = await cloud.pool.fetchval(
            "INSERT INTO conversations (workspace_id, name) VALUES ($1, 'c') RETURNING id::text", ws
        )
        msg = await cloud.pool.fetchval(
            "INSERT INTO messages (workspace_id, conversation_id, role, content)"
            " VALUES ($1, $2, 'user', 'hello') RETURNING id::text",
            ws,
            conv,
        )
        task = await cloud.pool.fetchval(
            "INSERT INTO tasks (workspace_id, kind) VALUES ($1, 'build') RETURNING id::text", ws
        )
        world[key] = {"org": org, "ws": ws, "conv": conv, "msg": msg, "task": task}
    return world


async def ids_as(
    cloud: Cloud, user: str | None, table: str, role: str = "authenticated"
) -> set[str]:
    rows = await cloud.fetch_as(user, f"SELECT id::text AS id FROM public.{table}", role=role)
    return {r["id"] for r in rows}


async def test_members_read_their_organisation_only(cloud: Cloud, two_orgs: dict[str, Any]) -> None:
    a, b = two_orgs["a"], two_orgs["b"]
    for table, key in (("workspaces", "ws"), ("conversations", "conv"), ("messages", "msg"),
                       ("tasks", "task"), ("organizations", "org")):  # fmt: skip
        assert await ids_as(cloud, two_orgs["alice"], table) == {a[key]}, table
        assert await ids_as(cloud, two_orgs["bob"], table) == {b[key]}, table
        assert await ids_as(cloud, two_orgs["carol"], table) == {a[key], b[key]}, table
        assert await ids_as(cloud, two_orgs["dave"], table) == set(), table
        assert await ids_as(cloud, None, table, role="anon") == set(), table
        assert await ids_as(cloud, None, table, role="service_role") == {a[key], b[key]}, table


async def test_members_cannot_write_another_organisation(
    cloud: Cloud, two_orgs: dict[str, Any]
) -> None:
    alice, b = two_orgs["alice"], two_orgs["b"]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.execute_as(
            alice, "INSERT INTO conversations (workspace_id, name) VALUES ($1, 'x')", b["ws"]
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.execute_as(
            alice, "INSERT INTO workspaces (org_id, name) VALUES ($1, 'x')", b["org"]
        )
    assert await cloud.execute_as(alice, "UPDATE workspaces SET name = 'pwned'") == "UPDATE 1"
    assert await cloud.execute_as(
        alice, "UPDATE tasks SET status = 'x' WHERE id = $1", b["task"]
    ) == ("UPDATE 0")
    assert await cloud.execute_as(alice, "DELETE FROM tasks") == "DELETE 0"
    row = await cloud.row("workspaces", b["ws"])
    assert row is not None and row["name"] == "ws-b"
    # moving one's own row into another organisation's workspace is refused too
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.execute_as(
            alice,
            "UPDATE tasks SET workspace_id = $1 WHERE id = $2",
            b["ws"],
            two_orgs["a"]["task"],
        )


async def test_anon_can_write_nothing(cloud: Cloud, two_orgs: dict[str, Any]) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.execute_as(
            None,
            "INSERT INTO organizations (name) VALUES ('anon org')",
            role="anon",
        )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.fetch_as(None, "SELECT public.sync_pull()", role="anon")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.fetch_as(None, "SELECT public.sync_pull_count()", role="anon")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.fetch_as(None, "SELECT public.sync_pull_marks()", role="anon")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.fetch_as(None, "SELECT public.sync_push('[]')", role="anon")
    assert await cloud.execute_as(None, "UPDATE workspaces SET name = 'x'", role="anon") == (
        "UPDATE 0"
    )


async def test_message_sender_is_the_caller_or_nobody(
    cloud: Cloud, two_orgs: dict[str, Any]
) -> None:
    alice, carol, a = two_orgs["alice"], two_orgs["carol"], two_orgs["a"]
    insert = (
        "INSERT INTO messages (workspace_id, conversation_id, role, content, sender_user_id)"
        " VALUES ($1, $2, 'user', 'hi', $3)"
    )
    assert await cloud.execute_as(alice, insert, a["ws"], a["conv"], alice) == "INSERT 0 1"
    assert await cloud.execute_as(alice, insert, a["ws"], a["conv"], None) == "INSERT 0 1"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.execute_as(alice, insert, a["ws"], a["conv"], carol)


async def test_profiles_own_row_and_shared_organisations(
    cloud: Cloud, two_orgs: dict[str, Any]
) -> None:
    alice, bob, carol, dave = (two_orgs[k] for k in ("alice", "bob", "carol", "dave"))
    assert await ids_as(cloud, alice, "profiles") == {alice, carol}
    assert await ids_as(cloud, carol, "profiles") == {alice, bob, carol}
    assert await ids_as(cloud, dave, "profiles") == {dave}
    # a profile was made for each user by the auth.users trigger
    row = await cloud.row("profiles", dave)
    assert row is not None and row["email"] == "dave@x.io" and row["display_name"] == "dave"
    assert await cloud.execute_as(alice, "UPDATE profiles SET bio = 'me'") == "UPDATE 1"
    assert await cloud.execute_as(alice, "UPDATE profiles SET bio = 'x' WHERE id = $1", carol) == (
        "UPDATE 0"
    )


async def test_creating_an_organisation_makes_the_creator_its_owner(cloud: Cloud) -> None:
    erin = await cloud.user("erin@e.io")
    rows = await cloud.fetch_as(
        erin, "INSERT INTO organizations (name, created_by) VALUES ('E', $1) RETURNING id", erin
    )
    org = rows[0]["id"]
    roles = await cloud.fetch_as(erin, "SELECT role FROM org_memberships WHERE org_id = $1", org)
    assert [r["role"] for r in roles] == ["owner"]
    # and then may create workspaces in it
    await cloud.execute_as(erin, "INSERT INTO workspaces (org_id, name) VALUES ($1, 'w')", org)
    assert len(await ids_as(cloud, erin, "workspaces")) == 1
