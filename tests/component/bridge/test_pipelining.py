"""Requests of one connection run concurrently: replies as each completes, a bounded number in
flight, pipelined writes group-committed, replay order kept, clean ends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from daemon.store import Store
from daemon.store.ids import uuid7
from tests.helpers import MS, wait_for
from ui_bridge import server as server_module
from ui_bridge import session as session_module
from ui_bridge.server import BridgeServer

from .conftest import Gate, MakeBridge, Rpc, auth


def frame(method: str, req_id: int | str, params: Any = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        message["params"] = params
    return orjson.dumps(message)


async def replies_by_id(rpc: Rpc, count: int) -> dict[Any, dict[str, Any]]:
    """Read frames until ``count`` responses came; events are kept in ``rpc.events``."""
    found: dict[Any, dict[str, Any]] = {}
    while len(found) < count:
        message = await rpc.recv()
        if message.get("method") == "event":
            rpc.events.append(message["params"])
        else:
            found[message["id"]] = message
    return found


async def conversation(store: Store) -> str:
    ws = await store.workspaces.create(name="w")
    return str((await store.conversations.create(workspace_id=ws["id"], name="c"))["id"])


def send_params(conv_id: str, i: int) -> dict[str, Any]:
    return {"conversation_id": conv_id, "role": "user", "content": f"m{i}"}


async def test_a_slow_request_does_not_hold_up_the_next_one(
    make_bridge: MakeBridge, open_rpc: Any, gate: Gate
) -> None:
    rpc: Rpc = await open_rpc(await make_bridge(methods=gate.table()))
    await rpc.send(frame("gate", 1))
    await rpc.send(frame("daemon.ping", 2))
    assert await rpc.recv() == {"jsonrpc": "2.0", "result": {"pong": True}, "id": 2}
    assert gate.entered == 1
    gate.open.set()
    assert await rpc.recv() == {"jsonrpc": "2.0", "result": "opened", "id": 1}


async def test_pipelined_writes_of_one_connection_are_group_committed(
    bridge: BridgeServer, rpc: Rpc
) -> None:
    store = bridge.store
    conv_id = await conversation(store)
    commits: list[int] = []
    store.add_commit_listener(lambda events: commits.append(len(events)))
    for i in range(100):
        await rpc.send(frame("message.send", i, send_params(conv_id, i)))
    replies = await replies_by_id(rpc, 100)
    assert sorted(replies) == list(range(100))
    assert all(replies[i]["result"]["content"] == f"m{i}" for i in range(100))
    assert sum(commits) == 100
    assert len(commits) < 100 and max(commits) > 1  # several writes shared a transaction


async def test_a_batch_frame_runs_its_items_together_and_answers_once(
    bridge: BridgeServer, rpc: Rpc
) -> None:
    store = bridge.store
    conv_id = await conversation(store)
    commits: list[int] = []
    store.add_commit_listener(lambda events: commits.append(len(events)))
    batch = [
        {"jsonrpc": "2.0", "method": "message.send", "params": send_params(conv_id, i), "id": i}
        for i in range(30)
    ]
    await rpc.send(orjson.dumps(batch))
    reply = await rpc.recv()
    assert isinstance(reply, list) and sorted(item["id"] for item in reply) == list(range(30))
    assert all(item["result"]["content"] == f"m{item['id']}" for item in reply)
    assert sum(commits) == 30 and len(commits) < 30


async def test_requests_in_flight_per_connection_are_bounded(
    make_bridge: MakeBridge, open_rpc: Any, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "MAX_IN_FLIGHT", 4)
    server = await make_bridge(methods=gate.table())
    rpc: Rpc = await open_rpc(server)
    for i in range(10):
        await rpc.send(frame("gate", i))
    await wait_for(lambda: gate.entered == 4, message="4 requests running")
    (session,) = server.sessions
    await wait_for(lambda: session._room is not None, message="the reader waits for a slot")
    assert gate.entered == 4 and len(session._requests) == 4
    gate.open.set()
    replies = await replies_by_id(rpc, 10)
    assert sorted(replies) == list(range(10)) and gate.entered == 10


async def test_replay_reply_comes_first_and_events_stay_in_order_amid_pipelined_writes(
    bridge: BridgeServer, rpc: Rpc
) -> None:
    store = bridge.store
    conv_id = await conversation(store)  # seqs 1 and 2
    for _ in range(6):
        await asyncio.gather(
            *(
                store.messages.create(conversation_id=conv_id, role="user", content="old")
                for _ in range(50)
            )
        )
    await rpc.send(frame("subscribe", 0, {"topics": ["message.*"], "since": 0}))
    for i in range(1, 51):
        await rpc.send(frame("message.send", i, send_params(conv_id, i)))
    order: list[str] = []
    seqs: list[int] = []
    while len(seqs) < 350 or len([o for o in order if o != "event"]) < 51:
        message = await rpc.recv()
        if message.get("method") == "event":
            order.append("event")
            seqs.append(message["params"]["seq"])
        else:
            assert "result" in message, message
            order.append("subscribe" if message["id"] == 0 else "send")
    assert order.index("subscribe") < order.index("event")
    assert seqs == list(range(3, 353))  # no gap, no duplicate, in seq order


async def test_a_closed_connection_drains_then_cancels_its_requests(
    make_bridge: MakeBridge, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "DRAIN_TIMEOUT", 50 * MS)
    server = await make_bridge(methods=gate.table())
    ws = await connect(server.url, additional_headers=auth(server), compression=None)
    for i in range(3):
        await ws.send(frame("gate", i))
    await wait_for(lambda: gate.entered == 3, message="3 requests running")
    ws.transport.abort()
    await wait_for(lambda: not server.sessions, message="session ended")
    assert gate.cancelled == 3
    async with connect(server.url, additional_headers=auth(server)) as again:
        await again.send(frame("daemon.ping", 1))
        assert orjson.loads(await again.recv())["result"] == {"pong": True}


async def test_stop_does_not_wait_for_a_stuck_request(
    make_bridge: MakeBridge, open_rpc: Any, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "DRAIN_TIMEOUT", 50 * MS)
    server = await make_bridge(methods=gate.table())
    rpc: Rpc = await open_rpc(server)
    await rpc.send(frame("gate", 1))
    await wait_for(lambda: gate.entered == 1, message="request running")
    await asyncio.wait_for(server.stop(), 5_000 * MS)
    assert not server.sessions and gate.cancelled == 1


@pytest.mark.parametrize("spin_us", [300, 0])
async def test_the_loop_stays_awake_after_each_reply_then_sleeps_again(
    make_bridge: MakeBridge, spin_us: int
) -> None:
    """Every reply, sent directly or through the outbox, keeps the loop polling ``spin_us``
    (ui_bridge/hot.py); the spinning then ends by itself (and never starts at 0)."""
    server = await make_bridge(spin_us=spin_us)
    hot = server.hot
    assert hot is not None
    touches = 0
    touch = hot.touch

    def counted() -> None:
        nonlocal touches
        touches += 1
        touch()

    hot.touch = counted  # type: ignore[method-assign]
    async with connect(server.url, additional_headers=auth(server)) as ws:
        rpc = Rpc(ws)
        assert await rpc.call("daemon.ping") is not None
        for i in range(4):  # pipelined: the later replies go through the outbox
            await rpc.send(frame("daemon.ping", f"p{i}"))
        assert set(await replies_by_id(rpc, 4)) == {"p0", "p1", "p2", "p3"}
        assert touches == 5
        await wait_for(lambda: not hot.spinning, message="the loop to stop spinning")
    assert hot.spin_s == spin_us / 1e6


async def test_stop_answers_the_running_requests_and_refuses_new_ones_before_closing(
    make_bridge: MakeBridge, open_rpc: Any, gate: Gate
) -> None:
    server = await make_bridge(methods=gate.table())
    rpc: Rpc = await open_rpc(server)
    for i in range(3):
        await rpc.send(frame("gate", i))
    await wait_for(lambda: gate.entered == 3, message="3 requests running")
    stopping = asyncio.create_task(server.stop())
    await wait_for(lambda: all(s.draining for s in server.sessions), message="draining")
    await rpc.send(frame("daemon.ping", 10))
    await rpc.send(orjson.dumps([
        {"jsonrpc": "2.0", "method": "daemon.ping"},  # a notification: no answer
        {"jsonrpc": "2.0", "method": "daemon.ping", "id": 11},
        {"jsonrpc": "2.0", "method": 1, "id": 12},
    ]))  # fmt: skip
    assert (await rpc.recv())["error"]["code"] == -32010
    batch = await rpc.recv()
    assert [(r["id"], r["error"]["code"]) for r in batch] == [(11, -32010), (12, -32600)]
    gate.open.set()
    assert sorted([(await rpc.recv())["id"] for _ in range(3)]) == [0, 1, 2]
    with pytest.raises(ConnectionClosed) as closed:
        await rpc.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    await asyncio.wait_for(stopping, 5_000 * MS)


async def test_stop_during_pipelined_writes_answers_every_write_it_commits(
    make_bridge: MakeBridge, open_rpc: Any, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write the store commits was answered with its result; every other request got
    -32010 or no answer at all (the connection closed before it was read). (The drain's time
    limit, which bounds the daemon's stop, is set out of reach of a slow machine.)"""
    monkeypatch.setattr(server_module, "STOP_DRAIN_TIMEOUT", 10.0)
    conv_id = await conversation(store)
    server = await make_bridge()
    rpc: Rpc = await open_rpc(server)
    replies: list[dict[str, Any]] = []

    async def read_all() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                replies.append(orjson.loads(await rpc.ws.recv()))

    async def send_all() -> None:
        with contextlib.suppress(ConnectionClosed):
            for i in range(2000):
                mid = uuid7()
                await rpc.send(frame("message.send", mid, {**send_params(conv_id, i), "id": mid}))

    reader, sender = asyncio.create_task(read_all()), asyncio.create_task(send_all())
    await wait_for(lambda: len(replies) >= 50, message="50 writes answered")
    await asyncio.wait_for(server.stop(), 5_000 * MS)
    await asyncio.wait_for(asyncio.gather(reader, sender), 5_000 * MS)
    acked = {r["id"] for r in replies if "result" in r}
    assert {r["error"]["code"] for r in replies if "error" in r} <= {-32010}
    committed: set[str] = set()
    cursor = None
    while True:
        page = await store.messages.list(conversation_id=conv_id, after=cursor, limit=1000)
        committed.update(m["id"] for m in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert committed == acked
