"""Retained status events: a subscribe without ``since`` first gets the latest ``cloud.status``
/ ``sync.status`` event its topics match (ui_bridge/hub.py), through real connections and a
real store; statuses are published as the cloud service publishes them (``store_publisher``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.sync.local import store_publisher
from tests.helpers import MS, wait_for
from ui_bridge.client import Event, connect
from ui_bridge.server import BridgeServer

from .conftest import Gate, MakeBridge, Rpc


async def publish_status(store: Store, topic: str, **data: Any) -> ChangeEvent:
    """Publish a status snapshot as the cloud service does; returns its changelog event."""
    await store_publisher(store)(topic, data)
    last = await store.changelog.last_seq()
    [event] = await store.changelog.read_since(last - 1, 1)
    assert event.topic == topic
    return event


def as_notification(sub: dict[str, Any], event: ChangeEvent) -> dict[str, Any]:
    return {
        "subscription": sub["subscription"],
        "seq": event.seq,
        "topic": event.topic,
        "data": event.data,
    }


async def test_subscribe_without_since_gets_the_latest_status_first(
    bridge: BridgeServer, rpc: Rpc
) -> None:
    store = bridge.store
    await publish_status(store, "cloud.status", logged_in=False)
    cloud = await publish_status(store, "cloud.status", logged_in=True)
    sync = await publish_status(store, "sync.status", state="idle")
    await store.workspaces.create(name="after the statuses")

    only_cloud = await rpc.call("subscribe", {"topics": ["cloud.status"]})
    assert only_cloud["seq"] == 4  # events after it follow; the retained one is before it
    assert await rpc.next_event() == as_notification(only_cloud, cloud)

    everything = await rpc.call("subscribe", {"topics": ["**"]})
    assert [await rpc.next_event(), await rpc.next_event()] == [
        as_notification(everything, cloud),  # in seq order: cloud.status was published first
        as_notification(everything, sync),
    ]
    # Nothing else was retained (not the older cloud.status, not the workspace): the next
    # event on each subscription is a live one.
    newer = await publish_status(store, "cloud.status", logged_in=False)
    assert [await rpc.next_event(), await rpc.next_event()] == [
        as_notification(only_cloud, newer),
        as_notification(everything, newer),
    ]
    # A subscription matching no retained topic gets nothing first.
    workspaces = await rpc.call("subscribe", {"topics": ["workspace.*"]})
    marker = await store.workspaces.create(name="marker")
    events = [await rpc.next_event(), await rpc.next_event()]
    assert [(e["subscription"], e["data"]) for e in events] == [
        (everything["subscription"], marker),
        (workspaces["subscription"], marker),
    ]
    await rpc.call("daemon.ping")  # every notification sent before the ping's reply is read
    assert not rpc.events


async def test_subscribe_with_since_is_a_replay_without_retained_events(
    bridge: BridgeServer, rpc: Rpc
) -> None:
    store = bridge.store
    first = await publish_status(store, "cloud.status", logged_in=False)
    second = await publish_status(store, "cloud.status", logged_in=True)
    caught_up = await rpc.call("subscribe", {"topics": ["cloud.status"], "since": second.seq})
    replay = await rpc.call("subscribe", {"topics": ["cloud.status"], "since": 0})
    assert [await rpc.next_event(), await rpc.next_event()] == [
        as_notification(replay, first),
        as_notification(replay, second),
    ]
    marker = await publish_status(store, "cloud.status", logged_in=False)
    got = [await rpc.next_event(), await rpc.next_event()]
    assert {e["subscription"]: e for e in got} == {
        caught_up["subscription"]: as_notification(caught_up, marker),
        replay["subscription"]: as_notification(replay, marker),
    }


@pytest.mark.parametrize("pending_limit", [10_000, 3])
async def test_a_status_committed_while_the_subscribe_is_held_is_sent_once_after_the_reply(
    make_bridge: MakeBridge,
    open_rpc: Any,
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
    pending_limit: int,
) -> None:
    # The subscribe's reply waits for the whole batch (the gate): events committed meanwhile
    # wait too. With a tiny limit they overflow and are read back from the changelog.
    monkeypatch.setattr("ui_bridge.hub.PENDING_LIMIT", pending_limit)
    bridge = await make_bridge(methods=gate.table())
    store = bridge.store
    retained = await publish_status(store, "cloud.status", logged_in=False)
    rpc: Rpc = await open_rpc(bridge)
    await rpc.send(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topics": ["**"]}},
            {"jsonrpc": "2.0", "id": 2, "method": "gate"},
        ]
    )
    await wait_for(lambda: gate.entered == 1, message="the batch held by the gate")
    newer = await publish_status(store, "cloud.status", logged_in=True)  # also retained now
    written = [await store.workspaces.create(name=f"w{i}") for i in range(5)]
    gate.open.set()

    reply = await rpc.recv()
    assert isinstance(reply, list), reply  # the reply comes before every event
    [subscribed] = [item["result"] for item in reply if item["id"] == 1]
    assert subscribed["seq"] == retained.seq
    events = [await rpc.next_event() for _ in range(7)]
    assert events[:2] == [
        as_notification(subscribed, retained),
        as_notification(subscribed, newer),
    ]
    assert [e["data"] for e in events[2:]] == written
    assert [e["seq"] for e in events] == list(range(retained.seq, retained.seq + 7))
    marker = await publish_status(store, "sync.status", state="idle")
    assert await rpc.next_event() == as_notification(subscribed, marker)  # no duplicate before


async def test_nothing_is_retained_without_status_events(bridge: BridgeServer, rpc: Rpc) -> None:
    await bridge.store.workspaces.create(name="w")
    sub = await rpc.call("subscribe", {"topics": ["**"]})
    marker = await bridge.store.workspaces.create(name="marker")
    assert await rpc.next_event() == {
        "subscription": sub["subscription"],
        "seq": 2,
        "topic": "workspace.created",
        "data": marker,
    }


async def next_event(stream: Any) -> Event:
    return await asyncio.wait_for(anext(stream), 5_000 * MS)


async def test_client_stream_gets_the_retained_status_and_resumes_after_the_reply_seq(
    tmp_path: Path, store: Store, make_bridge: MakeBridge
) -> None:
    server = await make_bridge()
    status = await publish_status(store, "sync.status", state="idle")
    await store.workspaces.create(name="before the subscribe")
    client = await connect(data_dir=tmp_path)
    try:
        stream = await client.subscribe(["**"])
        assert stream.last_seq == 2  # the subscribe's seq: where a resubscription replays from
        first = await next_event(stream)
        assert (first.seq, first.topic, first.data) == (status.seq, "sync.status", status.data)
        assert stream.last_seq == 2
        await server.stop()
        missed = await store.workspaces.create(name="while down")
        await make_bridge()  # the client resubscribes with since=2: a replay, nothing retained
        event = await next_event(stream)
        assert (event.seq, event.data) == (3, missed)
        live = await publish_status(store, "sync.status", state="pushing")
        event = await next_event(stream)
        assert (event.seq, event.data) == (live.seq, live.data)
    finally:
        await client.close()


async def test_a_batch_s_subscribe_gets_its_events_after_the_batch_reply(
    make_bridge: MakeBridge, open_rpc: Any, gate: Gate
) -> None:
    # Nothing retained: the subscription is held only because its reply waits for the batch.
    bridge = await make_bridge(methods=gate.table())
    rpc: Rpc = await open_rpc(bridge)
    await rpc.send(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topics": ["**"]}},
            {"jsonrpc": "2.0", "id": 2, "method": "workspace.create", "params": {"name": "in"}},
            {"jsonrpc": "2.0", "id": 3, "method": "gate"},
        ]
    )
    await wait_for(lambda: gate.entered == 1, message="the batch held by the gate")
    later = await bridge.store.workspaces.create(name="while held")
    gate.open.set()

    reply = await rpc.recv()
    assert isinstance(reply, list), reply  # the reply comes before every event
    results = {item["id"]: item["result"] for item in reply}
    subscribed, created = results[1], results[2]
    events = [await rpc.next_event(), await rpc.next_event()]
    assert [(e["subscription"], e["data"]) for e in events] == [
        (subscribed["subscription"], created),
        (subscribed["subscription"], later),
    ]
    assert [e["seq"] for e in events] == [subscribed["seq"] + 1, subscribed["seq"] + 2]
