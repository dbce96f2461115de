"""A UI that connects after the status was published gets it first: the real CloudService on
devcloud publishes ``cloud.status`` / ``sync.status``, a real BridgeServer serves a raw
WebSocket peer (ui_bridge/hub.py, retained events)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from daemon.config import BridgeSettings
from daemon.events import ChangeEvent
from devcloud.server import RunningDevcloud
from tests.component.bridge.conftest import Rpc
from tests.helpers import wait_for
from ui_bridge.methods import build_method_table
from ui_bridge.server import BridgeServer
from ui_bridge.topics import TopicFilter

from .conftest import PASSWORD, Device, MakeDevice


@contextlib.asynccontextmanager
async def serving(device: Device) -> AsyncIterator[BridgeServer]:
    bridge = BridgeServer(
        BridgeSettings(port=0),
        store=device.store,
        data_dir=device.data_dir,
        version="test",
        methods=build_method_table(device.cloud, device.cloud.live),
    )
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


@contextlib.asynccontextmanager
async def peer(bridge: BridgeServer) -> AsyncIterator[Rpc]:
    headers = {"Authorization": f"Bearer {bridge.token}"}
    async with connect(bridge.url, additional_headers=headers, compression=None) as ws:
        yield Rpc(ws)


def latest(device: Device, topic: str, at_most: int) -> ChangeEvent:
    """The last ``topic`` event committed up to seq ``at_most``."""
    return [e for e in device.events if e.topic == topic and e.seq <= at_most][-1]


def notification(sub: dict[str, Any], event: ChangeEvent) -> dict[str, Any]:
    return {"subscription": sub["subscription"], "seq": event.seq, "topic": event.topic,
            "data": event.data}  # fmt: skip


async def subscribe_then_write(
    rpc: Rpc, device: Device, params: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Subscribe, then write a workspace; returns the subscription, the events it got up to
    that write and the write's seq. (A live subscription got them before the write's reply;
    one that matches the write gets its event last.)"""
    sub = await rpc.call("subscribe", params)
    marker = await rpc.call("workspace.create", {"name": "marker"})
    [written] = [e.seq for e in device.events if e.data.get("id") == marker["id"]]
    if params["topics"] == ["**"]:
        while not any(e["seq"] >= written for e in rpc.events):
            message = await rpc.recv()
            if message.get("method") == "event":
                rpc.events.append(message["params"])
    events = [e for e in rpc.events if e["seq"] <= written]
    assert all(e["subscription"] == sub["subscription"] for e in events)
    return sub, events, written


async def logged_in(ui: Rpc, device: Device) -> None:
    await ui.call("cloud.login", {"email": "ada@example.com", "password": PASSWORD})
    await wait_for(
        lambda: any(e.topic == "cloud.status" and e.data["logged_in"] for e in device.events),
        message="a logged-in cloud.status published",
    )


@pytest.mark.parametrize("topics", [["cloud.status"], ["**"]])
async def test_a_ui_connecting_after_the_status_was_published_gets_it_first(
    devcloud: RunningDevcloud, make_device: MakeDevice, topics: list[str]
) -> None:
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    device = await make_device("a")
    async with serving(device) as bridge:
        async with peer(bridge) as first_ui:
            await logged_in(first_ui, device)
        async with peer(bridge) as later_ui:
            sub, events, written = await subscribe_then_write(later_ui, device, {"topics": topics})
    start, matches = sub["seq"], TopicFilter(topics).matches
    retained = sorted(
        (latest(device, t, start) for t in ("cloud.status", "sync.status") if matches(t)),
        key=lambda e: e.seq,
    )
    assert events[: len(retained)] == [notification(sub, e) for e in retained]
    assert retained[-1].seq <= start
    assert latest(device, "cloud.status", start).data["logged_in"]
    # Then the live stream: every matching event after the subscribe's seq, once, in order.
    live = [e for e in device.events if start < e.seq <= written and matches(e.topic)]
    assert events[len(retained) :] == [notification(sub, e) for e in live]


async def test_a_subscribe_with_since_gets_no_retained_event(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> None:
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    device = await make_device("a")
    async with serving(device) as bridge, peer(bridge) as ui:
        await logged_in(ui, device)
        ui.events.clear()
        since = device.events[-1].seq
        params = {"topics": ["**"], "since": since}
        sub, events, written = await subscribe_then_write(ui, device, params)
    assert sub["seq"] == since
    replayed = [e for e in device.events if since < e.seq <= written]
    assert events == [notification(sub, e) for e in replayed]
