"""The data and daemon methods through a real connection and a real store."""

from __future__ import annotations

import uuid
from typing import Any

from daemon.store import Store
from daemon.store.ids import Uuid7Generator, uuid7, uuid7_time_ms
from ui_bridge.methods import build_method_table
from ui_bridge.server import BridgeServer

from .conftest import Rpc


async def setup_conversation(rpc: Rpc) -> tuple[dict[str, Any], dict[str, Any]]:
    workspace = await rpc.call("workspace.create", {"name": "notes", "path": "/tmp/notes"})
    conv = await rpc.call("conversation.create", {"workspace_id": workspace["id"], "name": "c"})
    return workspace, conv


async def test_workspace_lifecycle(rpc: Rpc) -> None:
    created = await rpc.call("workspace.create", {"name": "w", "description": "d"})
    assert created["name"] == "w" and created["description"] == "d"
    assert await rpc.call("workspace.get", {"id": created["id"]}) == created
    updated = await rpc.call(
        "workspace.update", {"id": created["id"], "name": "w2", "shared_memory": {"k": 1}}
    )
    assert updated["name"] == "w2" and updated["shared_memory"] == {"k": 1}
    assert updated["description"] == "d"
    deleted = await rpc.call("workspace.delete", {"id": created["id"]})
    assert deleted["deleted_at"] is not None
    listing = await rpc.call("workspace.list")
    assert listing == {"items": [], "next_cursor": None}


async def test_lists_paginate_with_next_cursor(rpc: Rpc) -> None:
    ids = [(await rpc.call("workspace.create", {"name": f"w{i}"}))["id"] for i in range(5)]
    first = await rpc.call("workspace.list", {"limit": 3})
    assert [w["id"] for w in first["items"]] == ids[:3] and first["next_cursor"]
    second = await rpc.call("workspace.list", {"limit": 3, "cursor": first["next_cursor"]})
    assert [w["id"] for w in second["items"]] == ids[3:]
    assert second["next_cursor"] is None


async def test_conversations_messages_tasks(rpc: Rpc) -> None:
    workspace, conv = await setup_conversation(rpc)
    assert conv["type"] == "chat" and conv["workspace_id"] == workspace["id"]
    convs = await rpc.call("conversation.list", {"workspace_id": workspace["id"]})
    assert [c["id"] for c in convs["items"]] == [conv["id"]]
    sent = [
        await rpc.call(
            "message.send", {"conversation_id": conv["id"], "role": "user", "content": f"m{i}"}
        )
        for i in range(3)
    ]
    page = await rpc.call("message.list", {"conversation_id": conv["id"], "limit": 2})
    assert page["items"] == sent[:2]
    rest = await rpc.call(
        "message.list", {"conversation_id": conv["id"], "after": page["next_cursor"]}
    )
    assert rest["items"] == sent[2:]
    task = await rpc.call(
        "task.enqueue", {"workspace_id": workspace["id"], "kind": "index", "payload": {"a": [1]}}
    )
    assert task["status"] == "queued" and task["payload"] == {"a": [1]}
    running = await rpc.call(
        "task.update", {"id": task["id"], "status": "running", "progress": {"pct": 5}}
    )
    assert running["status"] == "running" and running["progress"] == {"pct": 5}
    renamed = await rpc.call("conversation.update", {"id": conv["id"], "is_archived": True})
    assert renamed["is_archived"] is True
    cancelled = await rpc.call("task.cancel", {"id": task["id"]})
    assert cancelled["status"] == "cancelled"
    tasks = await rpc.call("task.list", {"workspace_id": workspace["id"], "status": "cancelled"})
    assert [t["id"] for t in tasks["items"]] == [task["id"]]
    assert (await rpc.call("conversation.delete", {"id": conv["id"]}))["deleted_at"]


async def test_message_send_with_client_id_is_idempotent(rpc: Rpc) -> None:
    _, conv = await setup_conversation(rpc)
    await rpc.call("subscribe", {"topics": ["message.*"]})
    params = {"conversation_id": conv["id"], "role": "user", "content": "hi", "id": _uuid()}
    first = await rpc.call("message.send", params)
    again = await rpc.call("message.send", params)
    assert again == first and first["id"] == params["id"]
    status = await rpc.call("daemon.status")
    assert status["seq"] == 3  # one event, not two
    clash = await rpc.request("message.send", {**params, "content": "other"})
    assert clash["error"]["code"] == -32002
    assert clash["error"]["data"]["field"] == "id"
    assert "different content" in clash["error"]["data"]["reason"]
    elsewhere = await rpc.call(
        "conversation.create", {"workspace_id": conv["workspace_id"], "name": "d"}
    )
    moved = await rpc.request("message.send", {**params, "conversation_id": elsewhere["id"]})
    assert moved["error"]["code"] == -32002
    assert "different conversation" in moved["error"]["data"]["reason"]


def _uuid() -> str:
    return uuid7()


async def test_task_enqueue_with_client_id_is_idempotent(rpc: Rpc) -> None:
    """A client whose connection dropped before the reply enqueues again: one task, not two
    (was: -32602 unknown parameter, so a retry could only make a second task)."""
    workspace = await rpc.call("workspace.create", {"name": "w"})
    params = {"workspace_id": workspace["id"], "kind": "index", "payload": {"p": [1]}}
    params["id"] = _uuid()
    first = await rpc.call("task.enqueue", params)
    assert first["id"] == params["id"] and first["status"] == "queued"
    seq = (await rpc.call("daemon.status"))["seq"]
    assert await rpc.call("task.enqueue", params) == first
    assert (await rpc.call("daemon.status"))["seq"] == seq  # no second event
    # a worker took it and changed its payload: a late retry is still the same task, as now
    running = await rpc.call("task.update", {"id": first["id"], "status": "running",
                                             "payload": {"p": [2]}})  # fmt: skip
    assert await rpc.call("task.enqueue", params) == running
    for change, field in (({"kind": "other"}, "kind"), ({"priority": 3}, "priority")):
        clash = await rpc.request("task.enqueue", {**params, **change})
        assert clash["error"]["code"] == -32002, change
        assert clash["error"]["data"]["field"] == "id"
        assert f"different {field}" in clash["error"]["data"]["reason"]
    listed = await rpc.call("task.list", {"workspace_id": workspace["id"]})
    assert [t["id"] for t in listed["items"]] == [first["id"]]
    for bad in (str(uuid.uuid4()), Uuid7Generator().mint(0)):  # not time-ordered; of 1970
        reply = await rpc.request("task.enqueue", {**params, "id": bad})
        assert reply["error"]["code"] == -32602 and reply["error"]["data"]["field"] == "id"
    assert len((await rpc.call("task.list", {"workspace_id": workspace["id"]}))["items"]) == 1


async def test_message_send_refuses_a_client_id_that_is_not_a_uuid7(rpc: Rpc) -> None:
    """Messages list in id order: an id of another version would sort at a random place."""
    _, conv = await setup_conversation(rpc)
    v7 = uuid7()
    not_v7 = [
        str(uuid.uuid4()),
        str(uuid.uuid1()),
        v7[:19] + "c" + v7[20:],  # version 7, but not the RFC 9562 variant
    ]
    for mid in not_v7:
        params = {"conversation_id": conv["id"], "role": "user", "content": "x", "id": mid}
        reply = await rpc.request("message.send", params)
        assert reply["error"]["code"] == -32602, mid
        assert reply["error"]["data"]["field"] == "id"
        assert "UUIDv7" in reply["error"]["data"]["reason"]
    assert (await rpc.call("message.list", {"conversation_id": conv["id"]}))["items"] == []
    sent = await rpc.call(
        "message.send", {"conversation_id": conv["id"], "role": "user", "content": "x", "id": v7}
    )
    assert sent["id"] == v7


async def test_message_send_refuses_a_client_id_far_from_the_daemon_clock(rpc: Rpc) -> None:
    _, conv = await setup_conversation(rpc)
    hour = 3_600_000
    now = uuid7_time_ms(uuid7())
    for ms in (0, now + 2 * hour, now - 25 * hour):  # 1970, ahead, minted too long ago
        params = {"conversation_id": conv["id"], "role": "user", "content": "x"}
        reply = await rpc.request("message.send", {**params, "id": Uuid7Generator().mint(ms)})
        assert reply["error"]["code"] == -32602, ms
        assert reply["error"]["data"]["field"] == "id"
        assert "the daemon's clock" in reply["error"]["data"]["reason"]
    assert (await rpc.call("message.list", {"conversation_id": conv["id"]}))["items"] == []


async def test_a_message_stored_late_with_an_earlier_id_reaches_subscribers_from_a_seq(
    rpc: Rpc,
) -> None:
    """A client mints its id when the user presses Enter; another client's message is stored
    first; a UI listing after the last id it has never sees the late one (documented), a
    subscription from a seq does."""
    _, conv = await setup_conversation(rpc)
    cid = conv["id"]
    since = (await rpc.call("daemon.status"))["seq"]
    early = uuid7()  # minted at Enter, sent later
    send = {"conversation_id": cid, "role": "user"}
    second = await rpc.call("message.send", {**send, "content": "2"})
    last = (await rpc.call("message.list", {"conversation_id": cid}))["items"][-1]["id"]
    first = await rpc.call("message.send", {**send, "content": "1", "id": early})
    after = await rpc.call("message.list", {"conversation_id": cid, "after": last})
    assert after["items"] == []  # a position, not a way to learn of new messages
    await rpc.call("subscribe", {"topics": ["message.created"], "since": since})
    events = [await rpc.next_event() for _ in range(2)]
    assert [e["data"] for e in events] == [second, first]
    listed = await rpc.call("message.list", {"conversation_id": cid})
    assert listed["items"] == [first, second]  # creation order
    doc = await rpc.call("rpc.discover")
    [listing] = [m for m in doc["methods"] if m["name"] == "message.list"]
    assert "message.created" in listing["summary"] and "since" in listing["summary"]


async def test_message_list_after_a_message_id(rpc: Rpc) -> None:
    """A UI asks for the messages after the last one it has, by that message's id."""
    _, conv = await setup_conversation(rpc)
    cid = conv["id"]
    sent = [
        await rpc.call("message.send", {"conversation_id": cid, "role": "user", "content": f"{i}"})
        for i in range(4)
    ]
    page = await rpc.call("message.list", {"conversation_id": cid, "after": sent[1]["id"]})
    assert page == {"items": sent[2:], "next_cursor": None}
    first = await rpc.call(
        "message.list", {"conversation_id": cid, "after": sent[0]["id"], "limit": 1}
    )
    assert first["items"] == sent[1:2]
    rest = await rpc.call("message.list", {"conversation_id": cid, "after": first["next_cursor"]})
    assert rest["items"] == sent[2:]  # opaque cursors still work
    last = await rpc.call("message.list", {"conversation_id": cid, "after": sent[-1]["id"]})
    assert last["items"] == []
    bad = await rpc.request("message.list", {"conversation_id": cid, "after": "nope"})
    assert bad["error"]["code"] == -32602 and bad["error"]["data"]["field"] == "after"


async def test_a_deleted_workspace_freezes_its_conversations_and_tasks(rpc: Rpc) -> None:
    workspace, conv = await setup_conversation(rpc)
    task = await rpc.call("task.enqueue", {"workspace_id": workspace["id"], "kind": "k"})
    await rpc.call("workspace.delete", {"id": workspace["id"]})
    for method in ("conversation.list", "task.list"):
        page = await rpc.call(method, {"workspace_id": workspace["id"]})
        assert page == {"items": [], "next_cursor": None}, method
        assert (await rpc.call(method))["items"] == [], method
    seq = (await rpc.call("daemon.status"))["seq"]
    writes = [
        ("message.send", {"conversation_id": conv["id"], "role": "user", "content": "x"}),
        ("conversation.update", {"id": conv["id"], "name": "renamed"}),
        ("conversation.delete", {"id": conv["id"]}),
        ("task.update", {"id": task["id"], "priority": 5}),
        ("task.cancel", {"id": task["id"]}),
    ]
    for method, params in writes:
        reply = await rpc.request(method, params)
        assert reply["error"]["code"] == -32602, (method, reply)
        assert workspace["id"] in reply["error"]["data"]["reason"], method
        assert "deleted workspace" in reply["error"]["data"]["reason"], method
    assert (await rpc.call("daemon.status"))["seq"] == seq  # nothing was written
    assert await rpc.call("conversation.get", {"id": conv["id"]}) == conv


async def test_a_deleted_row_is_said_deleted_not_unknown(rpc: Rpc) -> None:
    """A write into a deleted row names why (was: 'Not found' for the row get still returns,
    'unknown conversation'/'unknown workspace' for one that exists, deleted)."""
    workspace, conv = await setup_conversation(rpc)
    task = await rpc.call("task.enqueue", {"workspace_id": workspace["id"], "kind": "k"})
    await rpc.call("conversation.delete", {"id": conv["id"]})
    await rpc.call("task.cancel", {"id": task["id"]})
    reply = await rpc.request(
        "message.send", {"conversation_id": conv["id"], "role": "user", "content": "x"}
    )
    assert reply["error"]["data"] == {
        "field": "conversation_id",
        "reason": f"conversation {conv['id']!r} is deleted",
    }
    await rpc.call("workspace.delete", {"id": workspace["id"]})
    for method, params in (
        ("workspace.update", {"id": workspace["id"], "name": "again"}),
        ("conversation.update", {"id": conv["id"], "name": "again"}),
    ):
        reply = await rpc.request(method, params)
        assert reply["error"]["code"] == -32001, method
        assert reply["error"]["data"]["reason"] == "deleted", method
    reply = await rpc.request("conversation.create", {"workspace_id": workspace["id"], "name": "c"})
    assert reply["error"]["data"]["reason"] == f"workspace {workspace['id']!r} is deleted"
    missing = _uuid()
    reply = await rpc.request("conversation.create", {"workspace_id": missing, "name": "c"})
    assert reply["error"]["data"]["reason"] == f"unknown workspace {missing!r}"


async def test_not_found_maps_to_32001_with_entity_and_id(rpc: Rpc) -> None:
    missing = _uuid()
    for method in ("workspace.get", "conversation.get", "task.get", "workspace.delete"):
        reply = await rpc.request(method, {"id": missing})
        assert reply["error"]["code"] == -32001, method
        assert reply["error"]["data"]["id"] == missing


async def test_invalid_input_names_the_field_and_changes_nothing(rpc: Rpc) -> None:
    cases = [
        ("workspace.create", {}, "name"),
        ("workspace.create", {"name": 5}, "name"),
        ("workspace.create", {"name": "x", "colour": "red"}, "colour"),
        ("conversation.create", {"workspace_id": _uuid(), "name": "c"}, "workspace_id"),
        ("message.send", {"conversation_id": _uuid(), "role": "boss", "content": "x"}, "role"),
        (
            "message.send",
            {"conversation_id": _uuid(), "role": "user", "content": "x"},
            "conversation_id",
        ),
        ("task.enqueue", {"workspace_id": _uuid(), "kind": "k", "priority": 2**70}, "priority"),
        ("task.enqueue", {"workspace_id": _uuid(), "kind": "k", "payload": _deep(40)}, "payload"),
        ("workspace.list", {"limit": 0}, "limit"),
        ("workspace.list", {"limit": True}, "limit"),
    ]
    for method, params, field in cases:
        reply = await rpc.request(method, params)
        assert reply["error"]["code"] == -32602, (method, params)
        assert reply["error"]["data"]["field"] == field, (method, params, reply)
    status = await rpc.call("daemon.status")
    assert status["seq"] == 0


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_daemon_ping_and_status(rpc: Rpc, bridge: BridgeServer) -> None:
    assert await rpc.call("daemon.ping") == {"pong": True}
    status = await rpc.call("daemon.status")
    assert status["version"] == "0.0.0-test"
    assert status["port"] == bridge.port and status["url"] == bridge.url
    assert status["connections"] == 1
    assert bridge.token not in str(status)


async def test_rpc_discover_is_generated_from_the_method_table(rpc: Rpc) -> None:
    doc = await rpc.call("rpc.discover")
    assert doc["openrpc"].startswith("1.")
    table = build_method_table()
    assert [m["name"] for m in doc["methods"]] == sorted(m.name for m in table)
    by_name = {m["name"]: m for m in doc["methods"]}
    send = by_name["message.send"]
    params = {p["name"]: p for p in send["params"]}
    assert params["role"]["required"] and params["role"]["schema"]["enum"] == [
        "user",
        "assistant",
        "system",
        "tool",
    ]
    assert not params["id"]["required"]
    assert "UUIDv7" in params["id"]["description"]
    listing = by_name["message.list"]
    assert "message id" in {p["name"]: p for p in listing["params"]}["after"]["description"]
    assert "id of a message" in listing["summary"]
    assert {e["code"] for e in send["errors"]} >= {-32002, -32602}
    for name in ("workspace.create", "task.enqueue", "subscribe", "unsubscribe", "daemon.status"):
        assert name in by_name
    frozen = "(refused in a deleted workspace)"
    for name in ("conversation.update", "conversation.delete", "message.send", "task.cancel"):
        assert frozen in by_name[name]["summary"], name
    assert frozen not in by_name["workspace.delete"]["summary"]


async def test_rpc_discover_publishes_what_the_server_enforces(rpc: Rpc) -> None:
    by_name = {m["name"]: m for m in (await rpc.call("rpc.discover"))["methods"]}
    workspace, _ = await setup_conversation(rpc)
    task = await rpc.call("task.enqueue", {"workspace_id": workspace["id"], "kind": "k"})
    await rpc.call("task.update", {"id": task["id"], "status": "succeeded"})
    finished = await rpc.request("task.cancel", {"id": task["id"]})
    assert finished["error"]["code"] == -32002
    assert -32002 in {e["code"] for e in by_name["task.cancel"]["errors"]}
    statuses = ["cancelled", "failed", "paused", "queued", "running", "succeeded"]
    for name in ("task.update", "task.list"):
        [status] = [p for p in by_name[name]["params"] if p["name"] == "status"]
        assert status["schema"]["enum"] == statuses, name
    bad = await rpc.request("task.update", {"id": task["id"], "status": "done"})
    assert bad["error"]["data"] == {
        "field": "status",
        "reason": "must be one of " + ", ".join(statuses),
    }
    facade: Any = object()  # the cloud, sync and presence methods are described too
    params = [(m.name, p) for m in build_method_table(cloud=facade, live=facade) for p in m.params]
    assert [name for name, p in params if not p.description] == []
    limits = {name: p.description for name, p in params if p.name == "limit"}
    assert {"workspace.list", "message.list", "sync.rejected"} <= set(limits)
    for name, description in limits.items():
        assert "next_cursor until it is null" in description, name
        assert "page size" not in description, name


async def test_writes_after_store_close_answer_shutting_down(
    rpc: Rpc, bridge: BridgeServer
) -> None:
    await bridge.store.close()
    reply = await rpc.request("workspace.create", {"name": "late"})
    assert reply["error"]["code"] == -32010


async def test_maps_are_answered_without_their_tombstones(rpc: Rpc, store: Store) -> None:
    """A key removed from a JSON map is kept as null for the merge (R3); readers see it
    absent, in answers and events alike (was: {"a": 1, "b": null} everywhere)."""
    ws = await rpc.call("workspace.create", {"name": "w"})
    await rpc.call("workspace.update", {"id": ws["id"], "shared_memory": {"a": 1, "b": 2}})
    task = await rpc.call("task.enqueue", {"workspace_id": ws["id"], "kind": "k"})
    await rpc.call("subscribe", {"topics": ["workspace.updated", "task.updated"]})
    updated = await rpc.call("workspace.update", {"id": ws["id"], "shared_memory": {"a": 1}})
    await rpc.call("task.update", {"id": task["id"], "progress": {"step": 1}})
    progressed = await rpc.call("task.update", {"id": task["id"], "progress": {}})
    events = [(await rpc.next_event())["data"] for _ in range(3)]
    got = await rpc.call("workspace.get", {"id": ws["id"]})
    [listed] = (await rpc.call("workspace.list"))["items"]
    for shown in (updated, got, listed, events[0]):
        assert shown["shared_memory"] == {"a": 1}
    for shown in (progressed, await rpc.call("task.get", {"id": task["id"]}), events[2]):
        assert shown["progress"] == {}
    # the store keeps the tombstones the merge needs
    assert (await store.workspaces.get(ws["id"]))["shared_memory"] == {"a": 1, "b": None}
    assert (await store.tasks.get(task["id"]))["progress"] == {"step": None}


async def test_message_list_of_a_deleted_conversation_is_empty_as_of_an_unknown_one(
    rpc: Rpc,
) -> None:
    """A deleted conversation's messages, or those of a conversation of a deleted workspace,
    are left out as conversation.list leaves out a deleted workspace's conversations (they
    were listed still); conversation.get shows the row as stored, message.send refuses."""
    workspace, conv = await setup_conversation(rpc)
    other = await rpc.call("conversation.create", {"workspace_id": workspace["id"], "name": "o"})
    for c in (conv, other):
        await rpc.call("message.send", {"conversation_id": c["id"], "role": "user", "content": "x"})
    empty = {"items": [], "next_cursor": None}
    assert await rpc.call("message.list", {"conversation_id": _uuid()}) == empty  # unknown
    deleted = await rpc.call("conversation.delete", {"id": conv["id"]})
    assert await rpc.call("conversation.get", {"id": conv["id"]}) == deleted
    assert await rpc.call("message.list", {"conversation_id": conv["id"]}) == empty
    assert len((await rpc.call("message.list", {"conversation_id": other["id"]}))["items"]) == 1
    reply = await rpc.request(
        "message.send", {"conversation_id": conv["id"], "role": "user", "content": "y"}
    )
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["reason"] == f"conversation {conv['id']!r} is deleted"
    await rpc.call("workspace.delete", {"id": workspace["id"]})
    assert await rpc.call("conversation.get", {"id": other["id"]}) == other
    assert await rpc.call("message.list", {"conversation_id": other["id"]}) == empty
    reply = await rpc.request(
        "message.send", {"conversation_id": other["id"], "role": "user", "content": "y"}
    )
    assert "deleted workspace" in reply["error"]["data"]["reason"]


async def test_task_docs_say_how_the_list_is_ordered_and_what_progress_replaces(
    rpc: Rpc,
) -> None:
    """A job-queue user reads ``priority`` as the order of ``task.list`` and "merged key by key"
    as a patch of ``progress``: neither holds, and rpc.discover says what does."""
    by_name = {m["name"]: m for m in (await rpc.call("rpc.discover"))["methods"]}
    workspace = await rpc.call("workspace.create", {"name": "w"})
    low = await rpc.call("task.enqueue", {"workspace_id": workspace["id"], "kind": "a"})
    high = await rpc.call(
        "task.enqueue", {"workspace_id": workspace["id"], "kind": "b", "priority": 9}
    )
    listed = await rpc.call("task.list", {"workspace_id": workspace["id"]})
    assert [t["id"] for t in listed["items"]] == [low["id"], high["id"]]
    assert "oldest first" in by_name["task.list"]["summary"]
    assert "priority does not order" in by_name["task.list"]["summary"]
    await rpc.call("task.update", {"id": low["id"], "progress": {"a": 1}})
    updated = await rpc.call("task.update", {"id": low["id"], "progress": {"b": 2}})
    assert updated["progress"] == {"b": 2}
    [progress] = [p for p in by_name["task.update"]["params"] if p["name"] == "progress"]
    assert "the whole new map (a key left out is removed" in progress["description"]
