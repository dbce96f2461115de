"""I6: local-only data never leaves the device — system and tool messages (before and after the
link), workspaces that are not linked, and anything written after ``cloud.unlink``."""

from __future__ import annotations

from typing import Any

import pytest
from sync_checks import snapshot
from sync_kit import CloudProcess

from ui_bridge.client import RpcError

EMAIL = "ana@example.com"
ROLES = ("user", "assistant", "system", "tool")


async def test_system_tool_messages_and_unlinked_workspaces_never_reach_the_cloud(
    lab: Any, cloud: CloudProcess
) -> None:
    a, b = await lab.two_devices(EMAIL)

    ws = await a.call("workspace.create", {"name": "linked"})
    conv = await a.call("conversation.create", {"workspace_id": ws["id"], "name": "chat"})
    sent = {role: [await a.send(conv["id"], f"{role}-before-link", role=role)] for role in ROLES}
    await a.call("cloud.link", {"workspace_id": ws["id"]})
    for role in ROLES:
        sent[role].append(await a.send(conv["id"], f"{role}-after-link", role=role))
    private = await a.call("workspace.create", {"name": "never linked"})
    private_conv = await a.call(
        "conversation.create", {"workspace_id": private["id"], "name": "diary"}
    )
    await a.send(private_conv["id"], "unlinked-secret")
    await a.call("task.enqueue", {"workspace_id": private["id"], "kind": "private"})
    await a.push()

    rows = await cloud.fetch(
        "SELECT role, content FROM messages WHERE workspace_id = $1::uuid ORDER BY id", ws["id"]
    )
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "user-before-link"),
        ("assistant", "assistant-before-link"),
        ("user", "user-after-link"),
        ("assistant", "assistant-after-link"),
    ]
    assert (
        await cloud.fetchval(
            "SELECT count(*) FROM messages WHERE content ~ '^(system|tool)-|secret'"
        )
        == 0
    )
    for table in ("workspaces", "conversations", "tasks"):
        column = "id" if table == "workspaces" else "workspace_id"
        leaked = await cloud.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column} = $1::uuid", private["id"]
        )
        assert leaked == 0, f"the unlinked workspace leaked into {table}"

    # The other device receives the user/assistant messages only; the first keeps everything.
    await b.clone(ws["id"], lab.root / "b-folder")
    await b.pull()
    on_b = [m["content"] for m in await b.messages(conv["id"])]
    assert on_b == [
        "user-before-link", "assistant-before-link", "user-after-link", "assistant-after-link",
    ]  # fmt: skip
    assert len(await a.messages(conv["id"])) == 8
    with pytest.raises(RpcError):
        await b.call("workspace.get", {"id": private["id"]})

    # After unlinking, nothing more leaves the device; the local data stays.
    await a.call("cloud.unlink", {"workspace_id": ws["id"]})
    await a.send(conv["id"], "written after unlink")
    await a.call("workspace.update", {"id": ws["id"], "description": "after unlink"})
    await a.push()
    assert await cloud.count("messages", ws["id"]) == 4
    assert (
        await cloud.fetchval("SELECT description FROM workspaces WHERE id = $1::uuid", ws["id"])
        is None
    )
    local = await snapshot(a, ws["id"])
    assert local["workspace"]["description"] == "after unlink"
    assert len(local["messages"][conv["id"]]) == 9
