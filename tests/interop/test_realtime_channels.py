"""supabase-py's realtime client (and raw sockets) against devcloud's Realtime server: presence,
broadcast, heartbeat, tokens, leave, and dropping slow clients. Same fixture as test_realtime.py."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
import websockets

from tests.helpers import MS, wait_for
from tests.interop import test_realtime
from tests.interop.test_realtime import Cloud, client_for, subscribe, v1_frame

cloud = test_realtime.cloud  # the same fixture: uvicorn + Realtime on a fresh database

# presence --------------------------------------------------------------------------------------


async def test_presence_join_and_leave_on_socket_close(cloud: Cloud) -> None:
    joins: list[str] = []
    leaves: list[str] = []
    async with client_for(cloud, cloud.token("org-a")) as watcher:
        params = {"config": {"presence": {"key": "watcher", "enabled": True}}}
        watch = watcher.channel("room", params)
        watch.on_presence_join(lambda key, cur, new: joins.append(key))
        watch.on_presence_leave(lambda key, cur, left: leaves.append(key))
        await subscribe(watch)
        async with client_for(cloud, cloud.token("org-a", sub="bob")) as other:
            params = {"config": {"presence": {"key": "device-42", "enabled": True}}}
            theirs = other.channel("room", params)
            await subscribe(theirs)
            await theirs.track({"online_at": "2026-08-21T00:00:00Z"})
            await wait_for(lambda: "device-42" in watch.presence_state(), message="join")
            (meta,) = watch.presence_state()["device-42"]
            assert meta["online_at"] == "2026-08-21T00:00:00Z"
            assert isinstance(meta["presence_ref"], str) and meta["presence_ref"]
            assert "device-42" in theirs.presence_state()  # the tracker sees itself too
        # The other client closed its socket without untracking: that is a leave.
        await wait_for(lambda: "device-42" not in watch.presence_state(), message="leave")
    assert joins == ["device-42"] and leaves == ["device-42"]


async def test_presence_untrack_and_state_on_join(cloud: Cloud) -> None:
    async with (
        client_for(cloud, cloud.token("org-a")) as first,
        client_for(cloud, cloud.token("org-a")) as second,
    ):
        one = first.channel("lobby", {"config": {"presence": {"key": "one", "enabled": True}}})
        await subscribe(one)
        await one.track({"status": "here"})
        await wait_for(lambda: "one" in one.presence_state(), message="own track")
        # A later joiner gets the current state in presence_state.
        two = second.channel("lobby", {"config": {"presence": {"key": "two", "enabled": True}}})
        synced: list[bool] = []
        two.on_presence_sync(lambda: synced.append(True))
        await subscribe(two)
        await wait_for(
            lambda: "one" in two.presence_state() and bool(synced), message="presence_state + sync"
        )
        await one.untrack()
        await wait_for(lambda: "one" not in two.presence_state(), message="untrack diff")


# broadcast -------------------------------------------------------------------------------------


async def test_broadcast_self_and_ack(cloud: Cloud) -> None:
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    quiet: list[dict[str, Any]] = []
    async with (
        client_for(cloud) as a,
        client_for(cloud) as b,
        client_for(cloud) as c,
    ):
        cha = a.channel("cursors", {"config": {"broadcast": {"self": True, "ack": True}}})
        cha.on_broadcast("cursor", mine.append)
        chb = b.channel("cursors")
        chb.on_broadcast("*", theirs.append)
        chc = c.channel("cursors", {"config": {"broadcast": {"self": False, "ack": False}}})
        chc.on_broadcast("cursor", quiet.append)
        for channel in (cha, chb, chc):
            await subscribe(channel)
        await cha.send_broadcast("cursor", {"x": 1, "y": 2})
        await chc.send_broadcast("cursor", {"x": 3})
        await wait_for(lambda: len(theirs) == 2 and len(mine) == 2, message="broadcasts")
    assert theirs == [
        {"event": "cursor", "payload": {"x": 1, "y": 2}},
        {"event": "cursor", "payload": {"x": 3}},
    ]
    assert mine == theirs  # self: True delivers the sender's own message back
    assert quiet == [{"event": "cursor", "payload": {"x": 1, "y": 2}}]  # self: False


async def test_broadcast_ack_reply_over_raw_socket(cloud: Cloud) -> None:
    async with websockets.connect(f"{cloud.ws_url}?apikey={cloud.anon_key}&vsn=1.0.0") as ws:
        config = {"broadcast": {"ack": True, "self": False}}
        await ws.send(v1_frame("realtime:r", "phx_join", {"config": config}, "1", "1"))
        assert json.loads(await ws.recv())["payload"]["status"] == "ok"
        body = {"type": "broadcast", "event": "e", "payload": {"a": 1}}
        await ws.send(v1_frame("realtime:r", "broadcast", body, "2", "1"))
        ack = json.loads(await ws.recv())
    assert ack == {
        "topic": "realtime:r",
        "event": "phx_reply",
        "payload": {"status": "ok", "response": {}},
        "ref": "2",
    }


async def test_rest_broadcast_reaches_subscribers(cloud: Cloud) -> None:
    got: list[dict[str, Any]] = []
    async with client_for(cloud) as client:
        channel = client.channel("news")
        channel.on_broadcast("headline", got.append)
        await subscribe(channel)
        await channel.http_send("headline", {"text": "hello"})
        await wait_for(lambda: got == [{"event": "headline", "payload": {"text": "hello"}}])


# heartbeat, tokens, leave ----------------------------------------------------------------------


async def test_heartbeat_reply_v1_and_v2(cloud: Cloud) -> None:
    async with websockets.connect(f"{cloud.ws_url}?apikey={cloud.anon_key}&vsn=1.0.0") as ws:
        await ws.send(v1_frame("phoenix", "heartbeat", {}, None, None))
        assert json.loads(await ws.recv()) == {
            "topic": "phoenix",
            "event": "phx_reply",
            "payload": {"status": "ok", "response": {}},
            "ref": None,
        }
    async with websockets.connect(f"{cloud.ws_url}?apikey={cloud.anon_key}&vsn=2.0.0") as ws:
        await ws.send(json.dumps([None, "12", "phoenix", "heartbeat", {}]))
        reply = json.loads(await ws.recv())
    assert reply == [None, "12", "phoenix", "phx_reply", {"status": "ok", "response": {}}]


async def test_bad_apikey_is_refused(cloud: Cloud) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"{cloud.ws_url}?apikey=nonsense&vsn=1.0.0"):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body) == {
        "error": "The token provided is not a valid JWT"
    }


async def test_token_expiry_closes_the_channel(cloud: Cloud) -> None:
    states: list[str] = []
    system: list[Any] = []
    async with client_for(cloud, cloud.token("org-a", ttl=3)) as client:
        channel = client.channel("expiring")
        channel.on_postgres_changes("*", lambda p: None, table="notes")
        channel.on_system(system.append)
        await channel.subscribe(lambda state, err: states.append(state.value))
        await wait_for(lambda: "CLOSED" in states, timeout=8000 * MS, message="close on expiry")
    # supabase-py sees the system error (CHANNEL_ERROR) and then phx_close (CLOSED).
    assert states == ["SUBSCRIBED", "CHANNEL_ERROR", "CLOSED"]
    assert not any(ch.topic == "realtime:expiring" for ch in cloud.realtime.hub.subscribers())


async def test_access_token_refresh_keeps_channel_and_expired_one_closes(cloud: Cloud) -> None:
    async with websockets.connect(f"{cloud.ws_url}?apikey={cloud.anon_key}&vsn=1.0.0") as ws:
        join = {"config": {}, "access_token": cloud.token("org-a", ttl=600)}
        await ws.send(v1_frame("realtime:t", "phx_join", join, "1", "1"))
        assert json.loads(await ws.recv())["payload"]["status"] == "ok"
        fresh = {"access_token": cloud.token("org-b", ttl=900)}
        await ws.send(v1_frame("realtime:t", "access_token", fresh, "2", "1"))
        (sub,) = [s for c in cloud.realtime.connections for s in c.channels.values()]
        await wait_for(lambda: sub.claims["org"] == "org-b", message="claims updated")
        expired = {"access_token": cloud.token("org-a", ttl=-5)}
        await ws.send(v1_frame("realtime:t", "access_token", expired, "3", "1"))
        system, close = json.loads(await ws.recv()), json.loads(await ws.recv())
    assert system["event"] == "system" and system["payload"]["status"] == "error"
    assert system["payload"]["message"].startswith("Token has expired")
    assert close == {"topic": "realtime:t", "event": "phx_close", "payload": {}, "ref": "1"}


async def test_leave_replies_then_closes_and_unmatched_topic(cloud: Cloud) -> None:
    async with websockets.connect(f"{cloud.ws_url}?apikey={cloud.anon_key}&vsn=1.0.0") as ws:
        await ws.send(v1_frame("realtime:l", "phx_join", {"config": {}}, "1", "1"))
        assert json.loads(await ws.recv())["payload"]["response"] == {"postgres_changes": []}
        await ws.send(v1_frame("realtime:l", "phx_leave", {}, "2", "1"))
        reply, close = json.loads(await ws.recv()), json.loads(await ws.recv())
        assert reply["ref"] == "2" and reply["payload"] == {"status": "ok", "response": {}}
        assert close == {"topic": "realtime:l", "event": "phx_close", "payload": {}, "ref": "1"}
        body = {"type": "broadcast", "event": "e", "payload": {}}
        await ws.send(v1_frame("realtime:l", "broadcast", body, "3", "1"))
        error = json.loads(await ws.recv())
    assert error["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}
    assert error["ref"] == "3"


async def test_remove_channel_leaves_presence(cloud: Cloud) -> None:
    async with client_for(cloud) as watcher:
        watch = watcher.channel("bye", {"config": {"presence": {"key": "w", "enabled": True}}})
        await subscribe(watch)
        async with client_for(cloud) as leaver:
            mine = leaver.channel("bye", {"config": {"presence": {"key": "l", "enabled": True}}})
            await subscribe(mine)
            await mine.track({"n": 1})
            await wait_for(lambda: "l" in watch.presence_state(), message="tracked")
            await leaver.remove_channel(mine)
            await wait_for(lambda: "l" not in watch.presence_state(), message="left")


async def test_slow_client_is_dropped_and_others_keep_receiving(cloud: Cloud) -> None:
    cloud.realtime.max_queue = 32  # applies to sockets opened from now on
    url = f"{cloud.ws_url}?apikey={cloud.anon_key}&vsn=1.0.0"
    join = v1_frame(
        "realtime:flood", "phx_join", {"config": {"broadcast": {"ack": True}}}, "1", "1"
    )
    # A tiny receive buffer (no autotuning) so the kernel cannot absorb the flood for it.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", _port(cloud)))
    async with websockets.connect(url, sock=raw, max_queue=1, compression=None) as slow:
        await slow.send(join)
        assert json.loads(await slow.recv())["payload"]["status"] == "ok"
        (slow_conn,) = cloud.realtime.connections
        async with websockets.connect(url) as fast, websockets.connect(url) as sender:
            for ws in (fast, sender):
                await ws.send(join)
                assert json.loads(await ws.recv())["payload"]["status"] == "ok"
            # ~10 MB, uncompressed: more than the server's send buffer can absorb.
            count, blob = 600, "x" * 16_000
            received = 0

            async def read_all() -> None:
                nonlocal received
                while received < count:
                    if json.loads(await fast.recv())["event"] == "broadcast":
                        received += 1

            reading = asyncio.create_task(read_all())
            for n in range(count):  # `slow` never reads; the sender waits for each ack
                body = {"type": "broadcast", "event": "e", "payload": {"n": n, "blob": blob}}
                await sender.send(v1_frame("realtime:flood", "broadcast", body, str(n + 2), "1"))
                assert json.loads(await sender.recv())["ref"] == str(n + 2)
            await asyncio.wait_for(reading, 20_000 * MS)
            await wait_for(lambda: slow_conn not in cloud.realtime.connections, message="drop")
        slow.transport.abort()  # a closing handshake would wait behind megabytes of backlog
    assert received == count and slow_conn.dropped


def _port(cloud: Cloud) -> int:
    return int(cloud.url.rsplit(":", 1)[1])
