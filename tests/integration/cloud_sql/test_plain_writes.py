"""Rows written straight through REST (apps that know nothing of clocks) get cloud clocks, so
they sync like any change; sync_push then merges against them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from .kit import Cloud, change, hlc, now_ms


@pytest.fixture
async def member(cloud: Cloud) -> dict[str, Any]:
    alice = await cloud.user("alice@a.io")
    org = await cloud.org("A", alice)
    return {"alice": alice, "org": org}


async def insert_as(cloud: Cloud, user: str, sql: str, *args: Any) -> dict[str, Any]:
    rows = await cloud.fetch_as(user, sql + " RETURNING to_jsonb(t.*)::text AS j", *args)
    return dict(json.loads(rows[0]["j"]))


async def test_a_plain_insert_gets_a_cloud_clock_for_every_column(
    cloud: Cloud, member: dict[str, Any]
) -> None:
    start = now_ms()
    ws = await insert_as(
        cloud,
        member["alice"],
        "INSERT INTO workspaces AS t (org_id, name, shared_memory) VALUES ($1, 'w', '{\"k\": 1}')",
        member["org"],
    )
    clock = ws["hlc"]
    assert clock.endswith("-cloud") and int(clock[:13]) >= start
    assert ws["origin"] == "cloud"
    assert set(ws["field_hlc"].values()) == {clock}
    assert {"name", "org_id", "deleted_at", "shared_memory", "shared_memory.k"} <= set(
        ws["field_hlc"]
    )
    assert "id" not in ws["field_hlc"] and "_seq" not in ws["field_hlc"]


async def test_a_plain_update_stamps_what_changed_and_merges_with_pushes(
    cloud: Cloud, member: dict[str, Any]
) -> None:
    alice = member["alice"]
    ws = await insert_as(
        cloud,
        alice,
        "INSERT INTO workspaces AS t (org_id, name, shared_memory) VALUES ($1, 'w', $2::jsonb)",
        member["org"],
        '{"a": 1, "b": 2}',
    )
    # A device whose clock runs ahead (within the hour) wrote the description.
    ahead = hlc(now_ms() + 600_000, 0, "fast")
    result = await cloud.push(alice, [change("workspaces", ws["id"], ws["id"],
                                             {"description": "d"}, ahead)])  # fmt: skip
    assert result[0]["status"] == "applied"
    await cloud.execute_as(
        alice, "UPDATE workspaces SET name = 'renamed', shared_memory = '{\"a\": 1, \"c\": 3}'"
    )
    row = await cloud.row("workspaces", ws["id"])
    assert row is not None
    clocks = row["field_hlc"]
    # the cloud clock is past every clock of the row, even the fast device's
    assert clocks["name"] > ahead and row["hlc"] == clocks["name"]
    assert clocks["name"].endswith("-cloud") and row["origin"] == "cloud"
    assert clocks["description"] == ahead and clocks["org_id"] == ws["field_hlc"]["org_id"]
    # a changed map is a whole-map replacement: new base, every key at it, removed keys gone
    assert clocks["shared_memory"] == clocks["name"]
    assert {k for k in clocks if k.startswith("shared_memory.")} == {
        "shared_memory.a",
        "shared_memory.c",
    }
    # a device edit older than the REST write loses; a newer one wins
    older = change("workspaces", ws["id"], ws["id"], {"name": "old"}, hlc(now_ms() - 60_000))
    newer = change("workspaces", ws["id"], ws["id"], {"name": "new"}, hlc(now_ms() + 1_200_000))
    assert [r["status"] for r in await cloud.push(alice, [older])] == ["superseded"]
    assert [r["status"] for r in await cloud.push(alice, [newer])] == ["applied"]
    row = await cloud.row("workspaces", ws["id"])
    assert row is not None and row["name"] == "new"


async def test_an_update_that_changes_nothing_keeps_the_clocks(
    cloud: Cloud, member: dict[str, Any]
) -> None:
    ws = await insert_as(
        cloud, member["alice"], "INSERT INTO workspaces AS t (org_id, name) VALUES ($1, 'w')",
        member["org"],
    )  # fmt: skip
    await cloud.execute_as(member["alice"], "UPDATE workspaces SET name = 'w'")
    row = await cloud.row("workspaces", ws["id"])
    assert row is not None
    assert (row["hlc"], row["field_hlc"]) == (ws["hlc"], ws["field_hlc"])


async def test_plain_writes_cannot_rewrite_messages(cloud: Cloud, member: dict[str, Any]) -> None:
    alice = member["alice"]
    ws = await cloud.workspace(member["org"])
    conv = await insert_as(
        cloud, alice, "INSERT INTO conversations AS t (workspace_id) VALUES ($1)", ws
    )
    msg = await insert_as(
        cloud,
        alice,
        "INSERT INTO messages AS t (workspace_id, conversation_id, role, content)"
        " VALUES ($1, $2, 'user', 'hello')",
        ws,
        conv["id"],
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await cloud.execute_as(alice, "UPDATE messages SET content = 'edited'")
    await cloud.execute_as(alice, "UPDATE messages SET deleted_at = now()")
    row = await cloud.row("messages", msg["id"])
    assert row is not None and row["content"] == "hello" and row["deleted_at"] is not None
    assert row["field_hlc"]["deleted_at"] > msg["field_hlc"]["deleted_at"]
    assert row["updated_at"] == msg["updated_at"]  # R7: nothing but deleted_at changes
    assert set(row["field_hlc"]) == set(msg["field_hlc"]) >= {"content", "role", "updated_at"}
    # a message lives in its conversation's workspace
    other_ws = await cloud.workspace(member["org"], "other")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await cloud.execute_as(
            alice,
            "INSERT INTO messages (workspace_id, conversation_id, role) VALUES ($1, $2, 'user')",
            other_ws,
            conv["id"],
        )
    # and system messages cannot be stored at all
    with pytest.raises(asyncpg.CheckViolationError):
        await cloud.execute_as(
            alice,
            "INSERT INTO messages (workspace_id, conversation_id, role) VALUES ($1, $2, 'system')",
            ws,
            conv["id"],
        )


async def test_plain_writes_cannot_move_a_task_out_of_a_final_status(
    cloud: Cloud, member: dict[str, Any]
) -> None:
    """R8: a final status is where a task's status ends, on devices (the local API, the merge)
    and in the cloud: a plain write reviving a cancelled task would be kept by the cloud and
    overruled on every device, which never converged."""
    alice = member["alice"]
    ws = await cloud.workspace(member["org"])
    task = await insert_as(
        cloud, alice, "INSERT INTO tasks AS t (workspace_id, kind) VALUES ($1, 'build')", ws
    )
    await cloud.execute_as(alice, "UPDATE tasks SET status = 'running', priority = 2")
    await cloud.execute_as(alice, "UPDATE tasks SET status = 'cancelled'")
    with pytest.raises(asyncpg.CheckViolationError, match="cancelled, which is final"):
        await cloud.execute_as(alice, "UPDATE tasks SET status = 'queued'")
    await cloud.execute_as(alice, "UPDATE tasks SET priority = 5")  # its other fields may
    row = await cloud.row("tasks", task["id"])
    assert row is not None and (row["status"], row["priority"]) == ("cancelled", 5)
