"""Organisations: two users of one organisation converge on a workspace; a user of another
organisation neither sees it, nor can link it, nor receives anything of it (and the reverse)."""

from __future__ import annotations

from typing import Any

import pytest
from sync_checks import assert_same, snapshot, sync_all
from sync_kit import CloudProcess

from ui_bridge.client import RpcError

ANA, BOB, EVE = "ana@acme.test", "bob@acme.test", "eve@other.test"


def workspace_ids(listed: dict[str, Any]) -> set[str]:
    """The ids in a ``cloud.workspaces`` result."""
    return {w["id"] for w in listed["items"]}


async def test_two_users_of_one_org_converge_and_another_org_gets_nothing(
    lab: Any, cloud: CloudProcess
) -> None:
    await cloud.create_user(ANA, org="acme")
    await cloud.create_user(BOB, org="acme", role="member")
    await cloud.create_user(EVE, org="other")
    a, b, e = await lab.daemon("ana"), await lab.daemon("bob"), await lab.daemon("eve")
    await a.login(ANA)
    await b.login(BOB)
    await e.login(EVE)

    ws_id = await a.publish("acme plans")
    conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "roadmap"})
    await a.send(conv["id"], "acme-secret: the roadmap")
    await a.call("task.enqueue", {"workspace_id": ws_id, "kind": "draft"})
    await a.push()
    assert ws_id in workspace_ids(await b.call("cloud.workspaces"))
    assert ws_id not in workspace_ids(await e.call("cloud.workspaces"))

    # Bob (a member of acme) clones it; both write; they converge.
    await b.clone(ws_id, lab.root / "bob-folder")
    await b.pull()
    await b.send(conv["id"], "bob agrees")
    await b.call("workspace.update", {"id": ws_id, "description": "edited by bob"})
    await a.call("conversation.update", {"id": conv["id"], "name": "roadmap 2027"})
    await sync_all([a, b])
    on_a = await snapshot(a, ws_id)
    assert_same(on_a, await snapshot(b, ws_id))
    assert on_a["workspace"]["description"] == "edited by bob"
    assert [m["content"] for m in on_a["messages"][conv["id"]]] == [
        "acme-secret: the roadmap",
        "bob agrees",
    ]

    # Eve (another organisation) cannot link it, and pulls nothing of it.
    eve_folder = lab.root / "eve-folder"
    with pytest.raises(RpcError) as refused:
        await e.clone(ws_id, eve_folder)
    assert refused.value.code == -32001  # row-level security: for Eve it does not exist
    assert not (eve_folder / ".cloud-link.json").exists()
    await e.pull()
    with pytest.raises(RpcError) as not_found:
        await e.call("workspace.get", {"id": ws_id})
    assert not_found.value.code == -32001
    with pytest.raises(RpcError):
        await e.call("conversation.get", {"id": conv["id"]})

    # Eve's own workspace stays in her organisation.
    eve_ws = await e.publish("eve private")
    eve_conv = await e.call("conversation.create", {"workspace_id": eve_ws, "name": "x"})
    await e.send(eve_conv["id"], "other-secret")
    await e.push()
    await sync_all([a, b])
    for d in (a, b):
        assert eve_ws not in workspace_ids(await d.call("cloud.workspaces"))
        with pytest.raises(RpcError):
            await d.call("workspace.get", {"id": eve_ws})
        with pytest.raises(RpcError) as refused:
            await d.clone(eve_ws, lab.root / f"{d.name}-eve")
        assert refused.value.code == -32001
    orgs = await cloud.fetch(
        "SELECT w.id::text, o.name FROM workspaces w JOIN organizations o ON o.id = w.org_id"
    )
    assert {r["id"]: r["name"] for r in orgs} == {ws_id: "acme", eve_ws: "other"}
    listed = await e.all_pages("workspace.list", {})
    assert [w["id"] for w in listed] == [eve_ws]
