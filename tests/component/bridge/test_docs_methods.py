"""doc.open / doc.update / doc.get and doc.updated events through real WebSocket connections."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text, TransactionEvent, create_update_message

from daemon.store import Store
from daemon.store.ids import uuid7
from ui_bridge.server import BridgeServer

from .conftest import Rpc

#: one update typing "typed" (a fixed client id: the same bytes every run)
TYPED = bytes.fromhex("010186f28b9489b1c50e00040107636f6e74656e7405747970656400")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Editor:
    """One UI: a pycrdt Doc kept in sync with the daemon over its own connection."""

    def __init__(self, rpc: Rpc, doc_id: str) -> None:
        self.rpc = rpc
        self.doc_id = doc_id
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("content", type=Text)
        self.local: list[bytes] = []
        self._remote = False
        self.events_applied = 0
        self.doc.observe(self._keep)

    def _keep(self, event: TransactionEvent) -> None:
        if not self._remote:
            self.local.append(event.update)

    async def open(self) -> dict[str, Any]:
        opened: dict[str, Any] = await self.rpc.call("doc.open", {"id": self.doc_id})
        self.receive(base64.b64decode(opened["state"]))
        return opened

    def receive(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._remote = False

    async def edit(self, index: int, value: str) -> None:
        with self.doc.transaction():
            self.text.insert(min(index, len(self.text)), value)
        params = {"id": self.doc_id, "update": b64(self.local[-1])}
        await self.rpc.call("doc.update", params)

    async def receive_events(self, total: int) -> None:
        """Apply doc.updated events until ``total`` have been applied."""
        while self.events_applied < total:
            event = await self.rpc.next_event()
            assert event["topic"] == "doc.updated" and event["data"]["id"] == self.doc_id
            self.receive(base64.b64decode(event["data"]["update"]))
            self.events_applied += 1


async def make_doc(rpc: Rpc, **params: Any) -> str:
    opened = await rpc.call("doc.open", {"id": uuid7(), **params})
    return str(opened["id"])


async def test_two_clients_editing_one_document_converge(
    rpc: Rpc, bridge: BridgeServer, open_rpc: Any
) -> None:
    doc_id = await make_doc(rpc)
    other = await open_rpc(bridge)
    alice, bob = Editor(rpc, doc_id), Editor(other, doc_id)
    for editor in (alice, bob):
        await editor.rpc.call("subscribe", {"topics": ["doc.updated"]})
        await editor.open()
    for i in range(10):  # both edit at once, each before seeing the other's edit
        await asyncio.gather(alice.edit(0, f"a{i} "), bob.edit(0, f"b{i} "))
    for editor in (alice, bob):  # each receives all 20 updates, its own included
        await editor.receive_events(20)
    final = await rpc.call("doc.get", {"id": doc_id})
    assert str(alice.text) == str(bob.text) == final["text"]
    assert sorted(final["text"].split()) == sorted(
        [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]
    )
    late = Editor(rpc, doc_id)
    late.receive(base64.b64decode(final["state"]))
    assert str(late.text) == final["text"]


async def test_subscribing_before_opening_misses_nothing_written_meanwhile(
    rpc: Rpc, bridge: BridgeServer, open_rpc: Any
) -> None:
    """The documented way to follow a document (README "Documents"): subscribe, then open;
    updates written all along reach the joiner through the state or the events."""
    doc_id = await make_doc(rpc)
    writer = Editor(rpc, doc_id)
    joiner = Editor(await open_rpc(bridge), doc_id)

    async def join() -> None:
        await joiner.rpc.call("subscribe", {"topics": ["doc.updated"]})
        await joiner.open()

    async def write() -> None:
        for i in range(30):
            await writer.edit(0, f"w{i} ")

    await asyncio.gather(write(), join())
    final = (await rpc.call("doc.get", {"id": doc_id}))["text"]
    assert len(final.split()) == 30
    while str(joiner.text) != final:  # the events after the state (some may repeat it)
        event = await asyncio.wait_for(joiner.rpc.next_event(), timeout=5)
        joiner.receive(base64.b64decode(event["data"]["update"]))


async def test_an_acknowledged_update_is_committed(
    rpc: Rpc, bridge: BridgeServer, tmp_path: Path
) -> None:
    doc_id = await make_doc(rpc)
    editor = Editor(rpc, doc_id)
    await editor.edit(0, "durable")
    raw = sqlite3.connect(tmp_path / "syncd.db")
    try:
        [(data,)] = raw.execute("SELECT data FROM doc_updates").fetchall()
    finally:
        raw.close()
    assert data == editor.local[-1]


async def test_open_creates_in_a_workspace_and_documents_its_convention(rpc: Rpc) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    opened = await rpc.call("doc.open", {"workspace_id": workspace["id"], "name": "Spec"})
    assert opened["workspace_id"] == workspace["id"] and opened["name"] == "Spec"
    assert (await rpc.call("doc.get", {"id": opened["id"]}))["text"] == ""
    methods = {m["name"]: m for m in (await rpc.call("rpc.discover"))["methods"]}
    assert {"doc.open", "doc.update", "doc.get"} <= set(methods)
    assert '"content"' in methods["doc.get"]["summary"]
    assert '"content"' in methods["doc.open"]["summary"]


async def test_a_document_of_a_deleted_workspace_refuses_updates(rpc: Rpc, store: Store) -> None:
    """As every other write into a deleted workspace (conversation.update, message.send, …)."""
    workspace = await rpc.call("workspace.create", {"name": "w"})
    opened = await rpc.call("doc.open", {"workspace_id": workspace["id"], "name": "Spec"})
    await rpc.call("workspace.delete", {"id": workspace["id"]})
    seq = await store.changelog.last_seq()
    editor = Editor(rpc, opened["id"])
    with editor.doc.transaction():
        editor.text.insert(0, "late")
    reply = await rpc.request("doc.update", {"id": opened["id"], "update": b64(editor.local[-1])})
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["field"] == "id"
    reason = reply["error"]["data"]["reason"]
    assert f"belongs to deleted workspace {workspace['id']!r}" in reason
    assert await store.changelog.last_seq() == seq
    assert (await rpc.call("doc.get", {"id": opened["id"]}))["text"] == ""
    created = await rpc.request("doc.open", {"workspace_id": workspace["id"], "name": "new"})
    assert created["error"]["data"]["field"] == "workspace_id"
    methods = {m["name"]: m for m in (await rpc.call("rpc.discover"))["methods"]}
    assert "(refused in a deleted workspace)" in methods["doc.update"]["summary"]
    assert "not in a deleted workspace" in methods["doc.open"]["summary"]


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ("%%% not base64 %%%", "base64"),
        ("AAE", "base64"),  # bad padding
        (b64(b"garbage bytes, no Yjs update"), "Yjs"),
        ("", "Yjs"),
        # audit G1 t3: a valid update with a few bytes changed (yrs would keep it pending)
        (
            "AQWe4YuPk6QKAAEBB2NBbnRlbnQChJ7h9IuPk6QKAQFshJ7h9IuPk6QKAghsbyB3b3JsZMSe4fSLj5OkCgKe4f"
            "SLj0GkCgMDWFliWigBBG1ldGEBawF3AXYBnuH0i4+TpAoBAAI=",
            "Yjs update",
        ),
        # a y-protocols sync message [0, 2, len, update], as y-websocket sends (t32)
        (b64(create_update_message(TYPED)), "y-protocols sync message"),
        # two updates concatenated instead of merged (t32)
        (b64(TYPED + TYPED), "Y.mergeUpdates"),
    ],
)
async def test_invalid_updates_are_refused_and_change_nothing(
    rpc: Rpc, store: Store, update: str, reason: str
) -> None:
    doc_id = await make_doc(rpc)
    seq = await store.changelog.last_seq()
    reply = await rpc.request("doc.update", {"id": doc_id, "update": update})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["field"] == "update"
    assert reason in reply["error"]["data"]["reason"]
    assert await store.changelog.last_seq() == seq
    assert (await rpc.call("doc.get", {"id": doc_id}))["text"] == ""


async def test_unknown_documents_and_bad_params_get_clear_errors(rpc: Rpc) -> None:
    missing = await rpc.request("doc.get", {"id": uuid7()})
    assert missing["error"]["code"] == -32001
    update = await rpc.request("doc.update", {"id": uuid7(), "update": "AAA="})
    assert update["error"]["code"] == -32001
    bad_ws = await rpc.request("doc.open", {"id": uuid7(), "workspace_id": "nope"})
    assert bad_ws["error"]["code"] == -32602
    assert bad_ws["error"]["data"]["field"] == "workspace_id"
    no_update = await rpc.request("doc.update", {"id": uuid7()})
    assert no_update["error"]["data"] == {"field": "update", "reason": "is required"}


async def test_the_empty_update_is_answered_without_being_stored(rpc: Rpc, store: Store) -> None:
    """What an editor encodes when it has nothing to send (Y.applyUpdate takes it as a no-op)."""
    doc_id = await make_doc(rpc)
    seq = await store.changelog.last_seq()
    reply = await rpc.call("doc.update", {"id": doc_id, "update": "AAA="})
    assert reply == {"id": doc_id, "update_id": None}
    assert await store.changelog.last_seq() == seq  # no row, no event, nothing to sync
    methods = {m["name"]: m for m in (await rpc.call("rpc.discover"))["methods"]}
    result = methods["doc.update"]["result"]["schema"]
    assert {"type": "null"} in result["properties"]["update_id"]["oneOf"]


async def test_open_with_a_workspace_adopts_a_local_only_document_or_refuses(
    rpc: Rpc, store: Store
) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    other = await rpc.call("workspace.create", {"name": "other"})
    doc_id = await make_doc(rpc)  # local-only
    editor = Editor(rpc, doc_id)
    await editor.open()
    await editor.edit(0, "typed")
    opened = await rpc.call("doc.open", {"id": doc_id, "workspace_id": workspace["id"]})
    assert opened["workspace_id"] == workspace["id"]
    assert (await rpc.call("doc.get", {"id": doc_id}))["text"] == "typed"
    seq = await store.changelog.last_seq()
    refused = await rpc.request("doc.open", {"id": doc_id, "workspace_id": other["id"]})
    assert refused["error"]["code"] == -32602
    assert refused["error"]["data"]["field"] == "workspace_id"
    assert f"belongs to workspace {workspace['id']!r}" in refused["error"]["data"]["reason"]
    assert (await rpc.call("doc.open", {"id": doc_id}))["workspace_id"] == workspace["id"]
    assert await store.changelog.last_seq() == seq
    methods = {m["name"]: m for m in (await rpc.call("rpc.discover"))["methods"]}
    [param] = [p for p in methods["doc.open"]["params"] if p["name"] == "workspace_id"]
    assert "adopt an existing local-only document" in param["description"]
