"""Presence fits in one frame of the local API (daemon/sync/live.py, live_map.fit_members),
against the in-process devcloud: many devices tracking large presences in a workspace, seen by
a UI whose WebSocket client refuses frames above the local API's limit (as a Python websockets
client refuses frames above 1 MiB by default). The limit is lowered to 256 KiB here so that
the Realtime frames the devices exchange stay small; the rule is the same at 1 MiB."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from daemon.config import BridgeSettings
from daemon.realtime.connection import RealtimeConnection
from daemon.realtime.phoenix import ChannelState
from daemon.realtime.presence import track_payload
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for
from ui_bridge.methods import build_method_table
from ui_bridge.server import BridgeServer

from .conftest import PASSWORD, Device, MakeDevice
from .test_live_bridge import Peer

ADA = "ada@example.com"
FRAME = 256 * 1024
OTHERS = 20  # devices besides A, each tracking ~28 KiB: ~560 KiB in all


async def joined_device(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> tuple[Device, str, str]:
    """Device A of Ada (org Acme), its workspace linked, pushed and joined on Realtime; the
    workspace id and A's access token."""
    await devcloud.create_user(ADA, PASSWORD, org="Acme")
    a = await make_device("a", pull_interval_s=3600.0)
    await a.cloud.login(ADA, PASSWORD)
    ws_id = (await a.store.workspaces.create(name="notes"))["id"]
    await a.cloud.link(workspace_id=ws_id)
    await a.cloud.sync_now("push")
    await wait_for(lambda: a.cloud.live.status()["subscribed"] == [ws_id], message="joined")
    return a, ws_id, await a.cloud.session.access_token()


def bridge_of(device: Device, frame: int = 1 << 20) -> BridgeServer:
    """The device's local API, its live events published to it as app.py wires them."""
    bridge = BridgeServer(
        BridgeSettings(port=0, max_frame_bytes=frame),
        store=device.store,
        data_dir=device.data_dir,
        version="test",
        methods=build_method_table(device.cloud, device.cloud.live),
    )
    device.cloud.live.publisher = bridge.hub.publish_live
    device.cloud.live.max_frame_bytes = frame
    return bridge


def peer_connection(devcloud: RunningDevcloud, token: str, device_id: str) -> RealtimeConnection:
    """Another device on the channel, with ``token``; its own events ignored."""

    async def provide() -> str:
        return token

    async def ignore(event: Any) -> None:
        return None

    return RealtimeConnection(
        devcloud.url, devcloud.anon_key, token_provider=provide, on_event=ignore,
        device_id=device_id,
    )  # fmt: skip


async def test_presence_list_and_events_fit_the_local_api_frame(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, ws_id, token = await joined_device(devcloud, make_device)
    bridge = bridge_of(a, FRAME)
    await bridge.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(bridge.stop)
        headers = {"Authorization": f"Bearer {bridge.token}"}
        ui = Peer(
            await stack.enter_async_context(
                connect(bridge.url, additional_headers=headers, compression=None, max_size=FRAME)
            )
        )
        await ui.call("subscribe", {"topics": ["presence.*"]})
        now = time.time()
        for i in range(OTHERS):
            device = f"device-{i:02d}"
            conn = await stack.enter_async_context(peer_connection(devcloud, token, device))
            await conn.join_workspace(ws_id)
            meta = track_payload(
                device_id=device, user_id=None, display_name=device, since=now, active_at=now,
                active_file="文" * 4096, cursor="c" * (16 * 1024 - 2),
            )  # fmt: skip
            await conn.track(ws_id, meta)
        live = a.cloud.live.connection
        assert live is not None
        await wait_for(
            lambda: len(live.members(ws_id)) == OTHERS + 1,
            timeout=30_000 * MS,
            message="every device in A's channel",
        )
        listed = await ui.call("presence.list", {"workspace_id": ws_id})  # a frame it accepts
        members = listed["members"]
        assert [m["device_id"] for m in members if m["self"]] == [a.store.device_id]
        assert listed["truncated"] == OTHERS + 1 - len(members) > 0
        assert len(json.dumps(listed, ensure_ascii=False).encode()) <= FRAME
        # the event that a change of this device brings (once the channel echoes it) fits
        # too, and shows the same members
        await a.cloud.live.set_presence(ws_id, {"status": "busy"})

        def busy(data: dict[str, Any]) -> bool:
            return [m["status"] for m in data["members"] if m["self"]] == ["busy"]

        async def busy_shown() -> bool:
            await ui.settle()  # the events sent so far are read
            return any(busy(e["data"]) for e in ui.events if e["topic"] == "presence.changed")

        await wait_for(busy_shown, timeout=10_000 * MS, message="A busy in presence.changed")
        [*_, changed] = [e["data"] for e in ui.events if e["topic"] == "presence.changed"]
        assert busy(changed)
        assert changed["truncated"] == listed["truncated"]
        assert [m["device_id"] for m in changed["members"]] == [m["device_id"] for m in members]


async def test_a_broadcast_the_local_api_cannot_encode_is_dropped_quietly(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another member's broadcast nested 300 levels deep (Realtime carries it; the local API's
    encoder writes at most 254): dropped with one INFO line. It was an ERROR with a traceback
    at every such broadcast (a hostile member could flood the log)."""
    caplog.set_level(logging.INFO, logger="daemon.sync.live")
    a, ws_id, token = await joined_device(devcloud, make_device)
    bridge = bridge_of(a)
    await bridge.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(bridge.stop)
        headers = {"Authorization": f"Bearer {bridge.token}"}
        ui = Peer(await stack.enter_async_context(connect(bridge.url, additional_headers=headers)))
        await ui.call("subscribe", {"topics": ["broadcast.*"]})
        peer = await stack.enter_async_context(peer_connection(devcloud, token, "hostile"))
        await peer.join_workspace(ws_id)
        await wait_for(lambda: peer.channel_state(ws_id) is ChannelState.JOINED, message="join")
        deep: Any = []
        for _ in range(300):
            deep = [deep]
        assert await peer.broadcast(ws_id, "deep", {"v": deep})
        assert await peer.broadcast(ws_id, "marker", {"n": 1})  # frames arrive in order

        async def marked() -> bool:
            await ui.settle()
            return any(e["data"]["event"] == "marker" for e in ui.events)

        await wait_for(marked, message="the marker on the UI")
    assert [e["data"]["event"] for e in ui.events] == ["marker"]
    ours = [r for r in caplog.records if r.name == "daemon.sync.live"]
    assert [r.levelno for r in ours if r.levelno >= logging.WARNING] == []
    assert any("live.publish_refused" in r.getMessage() for r in ours)
