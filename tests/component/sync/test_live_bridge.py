"""The live-only event path of the local API (EventHub.publish_live) and the presence and
broadcast methods' errors, over a real BridgeServer and a raw WebSocket JSON-RPC peer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from daemon.config import BridgeSettings, StoreSettings
from daemon.store import Store
from daemon.sync.live import DisabledLive
from daemon.sync.live_pacer import SENDS_PER_S
from daemon.sync.service import DisabledCloud
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for
from ui_bridge.jsonrpc import ErrorCode
from ui_bridge.methods import LiveFacade, build_method_table
from ui_bridge.server import BridgeServer

from .conftest import MakeDevice

WS = "01900000-0000-7000-8000-000000000001"
RECV_TIMEOUT = 5_000 * MS


class Peer:
    """A raw JSON-RPC peer: requests, and every event notification kept in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def request(self, method: str, params: Any = None) -> dict[str, Any]:
        req_id = next(self.ids)
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method,
                                       "params": params or {}}))  # fmt: skip
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), RECV_TIMEOUT))
            if message.get("id") == req_id:
                return dict(message)
            if message.get("method") == "event":
                self.events.append(message["params"])

    async def call(self, method: str, params: Any = None) -> Any:
        reply = await self.request(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        reply = await self.request(method, params)
        assert "error" in reply, reply
        return dict(reply["error"])

    async def settle(self) -> None:
        """Every notification sent before now has been read (a request is answered in order)."""
        await self.call("daemon.ping")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "syncd.db", StoreSettings())
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def serving(
    store: Store, data_dir: Path, cloud: Any, live: LiveFacade
) -> AsyncIterator[tuple[BridgeServer, Peer]]:
    bridge = BridgeServer(
        BridgeSettings(port=0),
        store=store,
        data_dir=data_dir,
        version="test",
        methods=build_method_table(cloud, live),
    )
    await bridge.start()
    try:
        headers = {"Authorization": f"Bearer {bridge.token}"}
        async with connect(bridge.url, additional_headers=headers, compression=None) as ws:
            yield bridge, Peer(ws)
    finally:
        await bridge.stop()


async def test_live_events_reach_live_subscriptions_and_are_never_replayed(
    store: Store, tmp_path: Path
) -> None:
    async with serving(store, tmp_path, DisabledCloud(store), DisabledLive()) as (bridge, peer):
        everything = await peer.call("subscribe", {"topics": ["**"]})
        presence_only = await peer.call("subscribe", {"topics": ["presence.*"]})
        workspace = await store.workspaces.create(name="w")
        await peer.settle()
        [created] = [e for e in peer.events if e["topic"] == "workspace.created"]
        data = {"workspace_id": WS, "members": []}
        assert bridge.hub.publish_live("presence.changed", data) == 2
        assert bridge.hub.publish_live("broadcast.received", {"event": "x"}) == 1
        await peer.settle()
        live = [e for e in peer.events if e.get("ephemeral")]
        assert [(e["subscription"], e["topic"]) for e in live] == [
            (everything["subscription"], "presence.changed"),
            (presence_only["subscription"], "presence.changed"),
            (everything["subscription"], "broadcast.received"),
        ]
        # seq: the last durable event each subscription got (none yet: where it started).
        assert [e["seq"] for e in live] == [created["seq"], presence_only["seq"], created["seq"]]
        assert live[0]["data"] == data
        assert "ephemeral" not in created
        peer.events.clear()
        replay = await peer.call("subscribe", {"topics": ["**"], "since": 0})
        await store.workspaces.update(workspace["id"], name="w2")  # a marker after the replay

        async def marker_seen() -> bool:  # on the replaying subscription (the others race it)
            await peer.settle()
            return any(
                e["topic"] == "workspace.updated" and e["subscription"] == replay["subscription"]
                for e in peer.events
            )

        await wait_for(marker_seen, message="the replay and the marker")
        replayed = [e for e in peer.events if e["subscription"] == replay["subscription"]]
        assert [e["topic"] for e in replayed] == ["workspace.created", "workspace.updated"]
        assert await store.changelog.last_seq() == created["seq"] + 1  # nothing was stored


async def test_presence_methods_without_a_cloud_answer_32003(store: Store, tmp_path: Path) -> None:
    async with serving(store, tmp_path, DisabledCloud(store), DisabledLive()) as (_, peer):
        for method, params in (
            ("presence.set", {"workspace_id": WS, "status": "busy"}),
            ("presence.list", {"workspace_id": WS}),
            ("broadcast.send", {"workspace_id": WS, "event": "e", "payload": {}}),
        ):
            assert (await peer.error(method, params))["code"] == ErrorCode.CLOUD_NOT_CONFIGURED
        bad = await peer.error("presence.set", {"workspace_id": WS, "status": "asleep"})
        assert bad["code"] == ErrorCode.INVALID_PARAMS and bad["data"]["field"] == "status"
        missing = await peer.error("broadcast.send", {"workspace_id": WS})
        assert missing["code"] == ErrorCode.INVALID_PARAMS and missing["data"]["field"] == "event"
        described = {m["name"] for m in (await peer.call("rpc.discover"))["methods"]}
        assert {"presence.set", "presence.list", "broadcast.send"} <= described


async def test_presence_methods_need_a_login_and_a_linked_workspace(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    await devcloud.create_user("dee@example.com", "correct horse battery", org="Delta")
    device = await make_device("a")
    async with serving(device.store, device.data_dir, device.cloud, device.cloud.live) as (_, peer):
        error = await peer.error("presence.list", {"workspace_id": WS})
        assert error["code"] == ErrorCode.LOGIN_REQUIRED
        await device.cloud.login("dee@example.com", "correct horse battery")
        local = await device.store.workspaces.create(name="not linked")
        error = await peer.error("broadcast.send", {"workspace_id": local["id"], "event": "e"})
        assert error["code"] == ErrorCode.INVALID_PARAMS
        assert error["data"]["field"] == "workspace_id"
        assert "not linked" in error["data"]["reason"]
        await device.cloud.link(workspace_id=local["id"])
        listed = await peer.call("presence.list", {"workspace_id": local["id"]})
        assert listed["workspace_id"] == local["id"]
        own = [m["device_id"] for m in listed["members"] if m["self"]]
        assert own == [device.store.device_id]  # connected yet or not
        tracked = await peer.call(
            "presence.set", {"workspace_id": local["id"], "active_file": "a.md", "cursor": [1, 2]}
        )
        assert tracked["presence"]["active_file"] == "a.md"
        assert tracked["presence"]["cursor"] == [1, 2] and tracked["presence"]["status"] == "active"
        reserved = await peer.error(
            "broadcast.send", {"workspace_id": local["id"], "event": "doc.update", "payload": {}}
        )
        assert reserved["code"] == ErrorCode.INVALID_PARAMS
        assert reserved["data"]["field"] == "event" and "reserved" in reserved["data"]["reason"]


async def test_a_broadcast_reaches_the_other_uis_of_this_daemon_but_not_its_sender(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    await devcloud.create_user("fay@example.com", "correct horse battery", org="Phi")
    device = await make_device("a")
    await device.cloud.login("fay@example.com", "correct horse battery")
    ws = await device.store.workspaces.create(name="shared")
    await device.cloud.link(workspace_id=ws["id"])
    live = device.cloud.live
    async with serving(device.store, device.data_dir, device.cloud, live) as (bridge, sender):
        headers = {"Authorization": f"Bearer {bridge.token}"}
        async with connect(bridge.url, additional_headers=headers, compression=None) as ws2:
            window = Peer(ws2)
            for peer in (sender, window):
                await peer.call("subscribe", {"topics": ["broadcast.*"]})
            refused = {"workspace_id": ws["id"], "event": "doc.update", "payload": {"x": 1}}
            assert (await sender.error("broadcast.send", refused))["code"] == -32602
            params = {"workspace_id": ws["id"], "event": "cursor", "payload": {"line": 3}}
            await sender.call("broadcast.send", params)

            async def received() -> bool:
                await window.settle()
                return bool(window.events)

            await wait_for(received, message="the broadcast on the other window")
            [event] = window.events
            assert (event["topic"], event["data"], event["ephemeral"]) == (
                "broadcast.received",
                params,
                True,
            )
            await sender.settle()
            assert sender.events == []  # not its own


async def test_broadcasts_past_the_rate_are_refused_with_when_to_try_again(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """A UI streaming broadcasts (live cursors at 60 Hz) passed Supabase Realtime's project
    message rate, and Realtime shut every channel of the project for it (30 s without live
    rows, presence or documents). Past SENDS_PER_S a second, broadcast.send is refused
    (-32005 with retry_after_s), as realtime-js refuses its own sends ("rate limited")."""
    await devcloud.create_user("gus@example.com", "correct horse battery", org="Gamma")
    device = await make_device("a")
    await device.cloud.login("gus@example.com", "correct horse battery")
    ws = await device.store.workspaces.create(name="shared")
    await device.cloud.link(workspace_id=ws["id"])
    async with serving(device.store, device.data_dir, device.cloud, device.cloud.live) as (_, ui):
        params = {"workspace_id": ws["id"], "event": "cursor", "payload": {"line": 1}}
        replies = [await ui.request("broadcast.send", params) for _ in range(SENDS_PER_S + 1)]
        refused = [r["error"] for r in replies if "error" in r]
        assert len(replies) - len(refused) >= SENDS_PER_S  # (more only on a very slow machine)
        assert refused, "11 sends in a second were all accepted"
        assert refused[0]["code"] == ErrorCode.RATE_LIMITED
        data = refused[0]["data"]
        assert data["operation"] == "broadcast.send" and 0 < data["retry_after_s"] <= 1.0

        async def accepted_again() -> bool:
            return "result" in await ui.request("broadcast.send", params)

        await wait_for(accepted_again, message="a send once the second has passed")
