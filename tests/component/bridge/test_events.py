"""subscribe / replay / fan-out through real connections and a real store."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from daemon.config import BridgeSettings, StoreSettings
from daemon.store import Store
from daemon.sync.adapters import merge_pulled
from daemon.sync.workspace import DriverSettings
from tests.component.store.test_sync_support import (
    change,
    clock,
    remote_conversation,
    remote_message,
    remote_workspace,
)
from tests.helpers import MS, wait_for
from ui_bridge.server import BridgeServer

from .conftest import MakeBridge, Rpc, auth


async def conversation(rpc: Rpc) -> str:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    conv = await rpc.call("conversation.create", {"workspace_id": workspace["id"], "name": "c"})
    return str(conv["id"])


async def send(rpc: Rpc, conv_id: str, text: str) -> dict[str, Any]:
    params = {"conversation_id": conv_id, "role": "user", "content": text}
    return dict(await rpc.call("message.send", params))


async def test_live_subscription_starts_after_returned_seq(rpc: Rpc) -> None:
    conv_id = await conversation(rpc)
    sub = await rpc.call("subscribe", {"topics": ["message.*"]})
    assert sub["seq"] == 2  # workspace + conversation were written before
    row = await send(rpc, conv_id, "hello")
    event = await rpc.next_event()
    assert event == {
        "subscription": sub["subscription"],
        "seq": 3,
        "topic": "message.created",
        "data": row,
    }


async def test_topic_filter_and_unsubscribe(rpc: Rpc) -> None:
    first = await rpc.call("subscribe", {"topics": ["workspace.*"]})
    second = await rpc.call("subscribe", {"topics": ["conversation.created"]})
    conv_id = await conversation(rpc)
    events = [await rpc.next_event(), await rpc.next_event()]
    assert [(e["subscription"], e["topic"]) for e in events] == [
        (first["subscription"], "workspace.created"),
        (second["subscription"], "conversation.created"),
    ]
    assert await rpc.call("unsubscribe", {"subscription": first["subscription"]})
    await rpc.call("workspace.create", {"name": "unseen"})
    await send(rpc, conv_id, "x")
    await rpc.call("task.enqueue", {"workspace_id": events[0]["data"]["id"], "kind": "k"})
    sentinel = await rpc.call(
        "conversation.create", {"workspace_id": events[1]["data"]["workspace_id"], "name": "z"}
    )
    event = await rpc.next_event()
    assert event["subscription"] == second["subscription"]
    assert event["data"]["id"] == sentinel["id"]
    missing = await rpc.request("unsubscribe", {"subscription": first["subscription"]})
    assert missing["error"]["code"] == -32001


async def test_bad_topic_patterns_name_the_field(rpc: Rpc) -> None:
    for topics in ([], ["mess*"], ["a..b"], "message.*", [1]):
        reply = await rpc.request("subscribe", {"topics": topics})
        assert reply["error"]["code"] == -32602, topics
        assert reply["error"]["data"]["field"] == "topics"


async def test_a_pattern_of_no_event_family_is_refused(rpc: Rpc) -> None:
    """A typo'd family would be a subscription that never gets an event (was: taken)."""
    for typo in ("mesage.*", "workspaces.created", "Message.created"):
        reply = await rpc.request("subscribe", {"topics": ["cloud.status", typo]})
        assert reply["error"]["code"] == -32602, typo
        assert reply["error"]["data"]["field"] == "topics"
        assert repr(typo) in reply["error"]["data"]["reason"], typo
    for topics in (["*.created"], ["**"], ["ai.chunk"], ["doc.**", "sync.status"]):
        assert await rpc.call("subscribe", {"topics": topics}), topics  # a family, or any


async def test_a_connection_holds_at_most_256_subscriptions(rpc: Rpc) -> None:
    """As subscribe's description says."""
    subs = [await rpc.call("subscribe", {"topics": ["workspace.*"]}) for _ in range(256)]
    refused = await rpc.request("subscribe", {"topics": ["workspace.*"]})
    assert refused["error"]["code"] == -32602
    assert refused["error"]["data"] == {"field": "topics", "reason": "at most 256 subscriptions"}
    await rpc.call("unsubscribe", {"subscription": subs[0]["subscription"]})
    assert await rpc.call("subscribe", {"topics": ["workspace.*"]})
    [described] = [
        m for m in (await rpc.call("rpc.discover"))["methods"] if m["name"] == "subscribe"
    ]
    assert "at most 256 subscriptions" in described["summary"]
    assert "subscription.error" in described["summary"]


async def test_replay_after_disconnect_gets_exactly_the_missed_events(
    bridge: BridgeServer, open_rpc: Any
) -> None:
    writer: Rpc = await open_rpc(bridge)
    conv_id = await conversation(writer)
    reader: Rpc = await open_rpc(bridge)
    sub = await reader.call("subscribe", {"topics": ["message.*"]})
    await send(writer, conv_id, "before")
    last_seq = (await reader.next_event())["seq"]
    await reader.ws.close()

    written = []
    for i in range(1000):
        written.append(await send(writer, conv_id, f"missed {i}"))

    again: Rpc = await open_rpc(bridge)
    resumed = await again.call("subscribe", {"topics": ["message.*"], "since": last_seq})
    assert resumed["seq"] == last_seq and resumed["subscription"] != sub["subscription"]
    events = [await again.next_event() for _ in range(1000)]
    assert [e["seq"] for e in events] == list(range(last_seq + 1, last_seq + 1001))
    assert [e["data"] for e in events] == written
    # Live events follow the replay without a gap or a duplicate.
    after = await send(writer, conv_id, "after")
    event = await again.next_event()
    assert event["seq"] == last_seq + 1001 and event["data"] == after


@pytest.mark.parametrize("pending_limit", [10_000, 3])
async def test_replay_races_concurrent_writes_without_gap_or_duplicate(
    bridge: BridgeServer, open_rpc: Any, monkeypatch: pytest.MonkeyPatch, pending_limit: int
) -> None:
    # With a tiny limit the live events buffered during catch-up overflow and are re-read.
    monkeypatch.setattr("ui_bridge.hub.PENDING_LIMIT", pending_limit)
    store = bridge.store
    workspace = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=workspace["id"], name="c")

    async def write(n: int) -> None:
        for start in range(0, n, 50):
            await asyncio.gather(
                *(
                    store.messages.create(conversation_id=conv["id"], role="user", content="m")
                    for _ in range(min(50, n - start))
                )
            )

    await write(2500)  # several pages to replay
    reader: Rpc = await open_rpc(bridge)
    writing = asyncio.create_task(write(500))
    await reader.call("subscribe", {"topics": ["**"], "since": 0})
    await writing
    seqs = [(await reader.next_event())["seq"] for _ in range(3002)]
    assert seqs == list(range(1, 3003))


async def test_since_older_than_retained_is_an_explicit_refetch(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "syncd.db", StoreSettings(changelog_retain=10))
    server = BridgeServer(BridgeSettings(port=0), store=store, data_dir=tmp_path, version="t")
    await server.start()
    try:
        async with connect(server.url, additional_headers=auth(server)) as ws:
            rpc = Rpc(ws)
            for i in range(30):
                await rpc.call("workspace.create", {"name": f"w{i}"})
            for since in (0, 5, 18):
                reply = await rpc.request("subscribe", {"topics": ["**"], "since": since})
                assert reply["error"]["code"] == -32001, since
                assert reply["error"]["data"]["reason"] == "refetch"
                assert reply["error"]["message"] == "Events no longer retained: refetch"
            future = await rpc.request("subscribe", {"topics": ["**"], "since": 31})
            assert future["error"]["data"]["reason"] == "refetch"
            assert future["error"]["message"] == "No such event yet: refetch"
            ok = await rpc.call("subscribe", {"topics": ["**"], "since": 25})
            assert ok["seq"] == 25
            assert [(await rpc.next_event())["seq"] for _ in range(5)] == [26, 27, 28, 29, 30]
    finally:
        await server.stop()
        await store.close()


async def test_two_hundred_clients_receive_an_event_written_by_one(bridge: BridgeServer) -> None:
    clients = [
        await connect(bridge.url, additional_headers=auth(bridge), compression=None)
        for _ in range(200)
    ]
    try:
        rpcs = [Rpc(ws) for ws in clients]
        subs = await asyncio.gather(
            *(r.call("subscribe", {"topics": ["workspace.created"]}) for r in rpcs)
        )
        row = await rpcs[17].call("workspace.create", {"name": "shared"})
        events = await asyncio.gather(*(r.next_event() for r in rpcs))
        assert all(e["data"] == row for e in events)
        assert [e["subscription"] for e in events] == [s["subscription"] for s in subs]
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


def _small_buffer_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def stalled_subscriber(server: BridgeServer) -> ClientConnection:
    """A client subscribed to ``message.*`` that reads nothing more: a small receive buffer
    and a one-message queue, so what the daemon sends it soon waits in its outbox."""
    ws = await connect(
        server.url,
        additional_headers=auth(server),
        sock=_small_buffer_socket(server.port),
        max_queue=1,
        compression=None,
    )
    await Rpc(ws).call("subscribe", {"topics": ["message.*"]})
    return ws


async def test_client_that_stops_reading_is_dropped_others_keep_receiving(
    make_bridge: MakeBridge, open_rpc: Any
) -> None:
    server = await make_bridge(send_queue_size=8)
    readers: list[Rpc] = [await open_rpc(server) for _ in range(5)]
    writer: Rpc = await open_rpc(server)
    conv_id = await conversation(writer)
    slow = await stalled_subscriber(server)
    for r in readers:
        await r.call("subscribe", {"topics": ["message.*"]})
    sessions_before = len(server.sessions)
    big = "x" * 200_000
    received = [0] * len(readers)

    async def drain(i: int, r: Rpc) -> None:
        while True:
            await r.next_event()
            received[i] += 1

    drainers = [asyncio.create_task(drain(i, r)) for i, r in enumerate(readers)]
    try:
        sent = 0
        while not any(session.outbox.closed for session in server.sessions):
            assert sent < 500, "the slow client's queue never overflowed"
            await send(writer, conv_id, big)
            sent += 1
        await wait_for(lambda: len(server.sessions) == sessions_before - 1, message="dropped")
        await wait_for(lambda: all(n == sent for n in received), message="readers caught up")
        await send(writer, conv_id, "after the drop")
        await wait_for(lambda: all(n == sent + 1 for n in received), message="live after drop")
    finally:
        for task in drainers:
            task.cancel()
        slow.transport.abort()  # it never reads, so a polite close would wait for nothing
    assert len(server.sessions) == sessions_before - 1


async def test_events_do_not_block_requests_of_the_same_connection(rpc: Rpc) -> None:
    await rpc.call("subscribe", {"topics": ["**"]})
    for i in range(50):
        await rpc.call("workspace.create", {"name": f"w{i}"})
    status = await asyncio.wait_for(rpc.call("daemon.status"), 5_000 * MS)
    assert status["seq"] == 50 and status["subscriptions"] == 1


@pytest.mark.parametrize("since", [-1, "3", 1.5])
async def test_since_must_be_a_non_negative_integer(rpc: Rpc, since: Any) -> None:
    reply = await rpc.request("subscribe", {"topics": ["**"], "since": since})
    assert reply["error"]["code"] == -32602 and reply["error"]["data"]["field"] == "since"


async def test_pruning_during_replay_ends_the_subscription_with_refetch(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "syncd.db", StoreSettings(changelog_retain=100))
    server = BridgeServer(BridgeSettings(port=0), store=store, data_dir=tmp_path, version="t")
    await server.start()
    real_read = store.changelog.read_since
    calls = 0

    async def read_then_write_more(seq: int, limit: int = 1000) -> Any:
        # After the first page, 300 more writes prune what the replay has not read yet.
        nonlocal calls
        calls += 1
        page = await real_read(seq, limit)
        if calls == 1:
            for i in range(300):
                await store.workspaces.create(name=f"late {i}")
        return page

    try:
        for i in range(100):
            await store.workspaces.create(name=f"w{i}")
        store.changelog.read_since = read_then_write_more  # type: ignore[method-assign]
        async with connect(server.url, additional_headers=auth(server)) as ws:
            rpc = Rpc(ws)
            sub = await rpc.call("subscribe", {"topics": ["**"], "since": 0})
            while True:
                message = await rpc.recv()
                if message.get("method") == "subscription.error":
                    break
                assert message.get("method") == "event"
            assert message["params"] == {
                "subscription": sub["subscription"],
                "code": -32001,
                "reason": "refetch",
            }
            status = await rpc.call("daemon.status")
            assert status["subscriptions"] == 0
    finally:
        await server.stop()
        await store.close()


async def test_stop_does_not_hang_on_a_client_that_stopped_reading(
    make_bridge: MakeBridge, open_rpc: Any
) -> None:
    server = await make_bridge(send_queue_size=100_000)
    writer: Rpc = await open_rpc(server)
    conv_id = await conversation(writer)
    stuck = await stalled_subscriber(server)
    big = "y" * 200_000
    (session,) = [s for s in server.sessions if s.subscriptions]
    for _ in range(60):  # ~12 MB: more than the socket buffers hold
        await send(writer, conv_id, big)
    await wait_for(lambda: len(session.outbox.frames) > 0, message="frames backing up")
    await asyncio.wait_for(server.stop(), 5_000 * MS)
    assert not server.sessions
    stuck.transport.abort()


async def test_a_reading_subscriber_keeps_up_with_a_pulled_page(
    make_bridge: MakeBridge, open_rpc: Any, store: Store
) -> None:
    """One pulled page (a first sync's: DriverSettings.bulk_pull_limit rows) commits one event
    per row at once. A subscriber that reads them is not "too slow": with the default queue
    bound it was dropped (1008) at ~1,000 frames, on every first sync (audit finding)."""
    server = await make_bridge()  # the default settings
    reader: Rpc = await open_rpc(server)
    await reader.call("subscribe", {"topics": ["message.*"]})
    c = clock()
    ws = remote_workspace(c)
    conv = remote_conversation(c, ws["id"])
    rows = DriverSettings().bulk_pull_limit
    changes = [change("workspaces", ws), change("conversations", conv)]
    changes += [change("messages", remote_message(c, ws["id"], conv["id"])) for _ in range(rows)]
    await store.sync.apply_pull(
        scope="workspace:pulled", changes=changes, cursor="1:1", merge=merge_pulled
    )
    for _ in range(rows):
        event = await asyncio.wait_for(reader.next_event(), 10_000 * MS)
        assert event["topic"] == "message.created"
    assert not any(session.outbox.closed for session in server.sessions)


async def test_a_replay_that_cannot_read_the_changelog_says_the_store_is_damaged(
    rpc: Rpc, store: Store
) -> None:
    for i in range(3):
        await rpc.call("workspace.create", {"name": f"w{i}"})
    with sqlite3.connect(store.path, isolation_level=None) as raw:
        raw.execute("UPDATE changelog SET data = '{bad' WHERE seq = 2")

    sub = await rpc.call("subscribe", {"topics": ["**"], "since": 0})
    message = await rpc.recv()
    while message.get("method") == "event":  # seq 1 may come first
        assert message["params"]["seq"] == 1
        message = await rpc.recv()

    assert message["method"] == "subscription.error"
    params = message["params"]
    assert (params["subscription"], params["code"], params["reason"]) == (
        sub["subscription"], -32603, "damaged",
    )  # fmt: skip
    assert "could not read its changelog" in params["message"]
    assert (await rpc.call("daemon.status"))["subscriptions"] == 0
