"""A socket's channel handling, fed frames directly (no network): V2 framing, binary
broadcasts, duplicate joins, presence errors, and dropping a slow client."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from devcloud.keys import DEFAULT_ANON_KEY, DEFAULT_JWT_SECRET, sign
from devcloud.realtime.channel import Binding
from devcloud.realtime.hub import Hub
from devcloud.realtime.presence import Presences
from devcloud.realtime.rate import MessageRate
from devcloud.realtime.serializer import Frame, Vsn, decode_binary, encode_user_broadcast_push
from devcloud.realtime.session import CloseSocket, Connection


class Feed:
    def __init__(self, errors: list[str] | None = None) -> None:
        self.errors = errors or []
        self.prepared: list[Sequence[Binding]] = []

    async def prepare(self, bindings: Sequence[Binding]) -> list[str]:
        self.prepared.append(bindings)
        return self.errors


def connect(hub: Hub, vsn: Vsn = Vsn.V1, feed: Feed | None = None, **kw: Any) -> Connection:
    return Connection(
        hub, feed or Feed(), secret=DEFAULT_JWT_SECRET, vsn=vsn, apikey=DEFAULT_ANON_KEY,
        conn_id="t", **kw,
    )  # fmt: skip


def sent(conn: Connection) -> list[Any]:
    out: list[Any] = []
    while not conn.queue.empty():
        item = conn.queue.get_nowait()
        out.append(item if isinstance(item, bytes | CloseSocket) else json.loads(item))
    return out


def join(topic: str, ref: str, config: dict[str, Any] | None = None) -> Frame:
    return Frame(topic, "phx_join", {"config": config or {}}, ref, ref)


async def test_v2_join_reply_echoes_join_ref_and_pushes_have_null_refs() -> None:
    hub = Hub(Presences("p"))
    conn = connect(hub, Vsn.V2)
    await conn.receive(join("realtime:r", "6", {"presence": {"key": "k", "enabled": True}}))
    reply, state = sent(conn)
    assert reply == ["6", "6", "realtime:r", "phx_reply",
                     {"status": "ok", "response": {"postgres_changes": []}}]  # fmt: skip
    assert state == [None, None, "realtime:r", "presence_state", {}]
    await conn.receive(Frame("realtime:r", "phx_leave", {}, "10", "6"))
    assert sent(conn) == [
        ["6", "10", "realtime:r", "phx_reply", {"status": "ok", "response": {}}],
        ["6", "6", "realtime:r", "phx_close", {}],
    ]


async def test_binary_broadcast_reaches_v2_as_kind4_and_v1_as_json() -> None:
    hub = Hub(Presences())
    sender, v2, v1 = connect(hub, Vsn.V2), connect(hub, Vsn.V2), connect(hub, Vsn.V1)
    await sender.receive(join("realtime:r", "1", {"broadcast": {"ack": True}}))
    await v2.receive(join("realtime:r", "1"))
    await v1.receive(join("realtime:r", "1"))
    for conn in (sender, v2, v1):
        sent(conn)
    frame = decode_binary(encode_user_broadcast_push("1", "8", "realtime:r", "cursor", {"x": 1}))
    await sender.receive(frame, 30)
    assert sent(v2) == [bytes([4, 10, 6, 0, 1]) + b"realtime:rcursor" + b'{"x":1}']
    assert sent(v1) == [
        {
            "topic": "realtime:r",
            "event": "broadcast",
            "payload": {"type": "broadcast", "event": "cursor", "payload": {"x": 1}},
            "ref": None,
        }
    ]
    assert sent(sender) == [["1", "8", "realtime:r", "phx_reply", {"status": "ok", "response": {}}]]


async def test_second_join_on_same_topic_closes_the_first() -> None:
    hub = Hub(Presences())
    conn = connect(hub)
    await conn.receive(join("realtime:r", "1"))
    await conn.receive(join("realtime:r", "4"))
    frames = sent(conn)
    assert [f["event"] for f in frames] == ["phx_reply", "phx_close", "phx_reply"]
    assert frames[1]["ref"] == "1" and frames[2]["ref"] == "4"
    assert len(hub.members("realtime:r")) == 1 and conn.channels["realtime:r"].join_ref == "4"


async def test_stale_join_ref_and_unknown_events_get_errors() -> None:
    hub = Hub(Presences())
    conn = connect(hub)
    await conn.receive(join("realtime:r", "1"))
    sent(conn)
    await conn.receive(Frame("realtime:r", "broadcast", {"event": "e", "payload": {}}, "2", "9"))
    await conn.receive(Frame("realtime:r", "nonsense", {}, "3", "1"))
    await conn.receive(Frame("realtime:r", "presence", {"event": "track", "payload": [1]}, "4"))
    await conn.receive(Frame("realtime:r", "presence", {"event": "dance"}, "5"))
    reasons = [f["payload"]["response"]["reason"] for f in sent(conn)]
    assert reasons == [
        "unmatched topic",
        "unknown event 'nonsense'",
        "Presence track payload must be a map",
        "unknown presence event 'dance'",
    ]


async def test_refused_joins_change_nothing() -> None:
    hub = Hub(Presences())
    conn = connect(hub)
    await conn.receive(join("room", "1"))
    await conn.receive(Frame("realtime:r", "phx_join", {"access_token": "bad"}, "2", "2"))
    await conn.receive(join("realtime:p", "3", {"private": True}))
    reasons = [f["payload"]["response"]["reason"] for f in sent(conn)]
    assert reasons[0] == "unmatched topic"
    assert reasons[1].startswith("MalformedJWT")
    # no authorizer given: private channels are refused, as to a user without policies
    assert reasons[2] == (
        "Unauthorized: You do not have permissions to read from this Channel topic: p"
    )
    assert conn.channels == {} and hub.members("realtime:r") == []


async def test_postgres_changes_system_message_after_prepare() -> None:
    hub = Hub(Presences())
    feed = Feed()
    conn = connect(hub, feed=feed)
    config = {"postgres_changes": [{"event": "*", "schema": "public", "table": "t"}]}
    await conn.receive(join("realtime:r", "1", config))
    reply, system = sent(conn)
    assert reply["payload"]["response"]["postgres_changes"][0]["table"] == "t"
    assert system["payload"]["message"] == "Subscribed to PostgreSQL"
    assert len(feed.prepared) == 1 and list(hub.subscribers())


async def test_prepare_errors_become_system_errors_and_bindings_stay_inactive() -> None:
    hub = Hub(Presences())
    conn = connect(hub, feed=Feed(["no such table"]))
    config = {"postgres_changes": [{"event": "*", "schema": "public", "table": "t"}]}
    await conn.receive(join("realtime:r", "1", config))
    _, system = sent(conn)
    assert system["payload"] == {
        "channel": "r",
        "extension": "postgres_changes",
        "message": "no such table",
        "status": "error",
    }
    assert list(hub.subscribers()) == []


async def test_slow_client_is_dropped_without_blocking_others() -> None:
    hub = Hub(Presences())
    slow, fast, sender = connect(hub, max_queue=3), connect(hub), connect(hub)
    for conn in (slow, fast, sender):
        await conn.receive(join("realtime:r", "1"))
    sent(fast)
    for n in range(5):
        body = {"type": "broadcast", "event": "e", "payload": {"n": n}}
        await sender.receive(Frame("realtime:r", "broadcast", body, str(n + 2), "1"))
    assert slow.dropped
    assert sent(slow) == [CloseSocket(1013, "send queue full")]
    assert [f["payload"]["payload"]["n"] for f in sent(fast)] == [0, 1, 2, 3, 4]


async def test_socket_close_is_a_presence_leave_for_the_others() -> None:
    hub = Hub(Presences("p"))
    watcher, leaver = connect(hub), connect(hub)
    presence = {"presence": {"key": "w", "enabled": True}}
    await watcher.receive(join("realtime:r", "1", presence))
    await leaver.receive(join("realtime:r", "1", {"presence": {"key": "l", "enabled": True}}))
    await leaver.receive(Frame("realtime:r", "presence", {"event": "track", "payload": {}}, "2"))
    sent(watcher)
    leaver.close()
    (diff,) = sent(watcher)
    assert diff["event"] == "presence_diff"
    assert diff["payload"] == {"joins": {}, "leaves": {"l": {"metas": [{"phx_ref": "p1"}]}}}
    assert [s.presence_key for s in hub.members("realtime:r")] == ["w"]


async def test_a_sixth_presence_message_in_30_s_closes_the_channel_until_a_rejoin() -> None:
    """Realtime's client presence rate limit (5 per channel join in a window of 30 s): the
    6th gets a system error and phx_close, and the others see the device leave."""
    hub = Hub(Presences("p"))
    watcher, tracker = connect(hub), connect(hub)
    await watcher.receive(join("realtime:r", "1", {"presence": {"key": "w", "enabled": True}}))
    await tracker.receive(join("realtime:r", "1", {"presence": {"key": "t", "enabled": True}}))

    def track(n: int, join_ref: str = "1") -> Frame:
        body = {"event": "track", "payload": {"n": n}}
        return Frame("realtime:r", "presence", body, str(10 + n), join_ref)

    for n in range(5):
        await tracker.receive(track(n))
    assert all(f["event"] != "system" for f in sent(tracker))
    sent(watcher)
    await tracker.receive(track(5))
    error, close = sent(tracker)
    assert (error["event"], error["payload"]["status"], error["payload"]["message"]) == (
        "system", "error", "Client presence rate limit exceeded",
    )  # fmt: skip
    assert close["event"] == "phx_close"
    [diff] = sent(watcher)
    assert diff["payload"]["leaves"].keys() == {"t"}
    await tracker.receive(join("realtime:r", "2", {"presence": {"key": "t", "enabled": True}}))
    for n in range(5):
        await tracker.receive(track(n, "2"))
    assert all(f["event"] != "system" for f in sent(tracker))
    assert {s.presence_key for s in hub.members("realtime:r")} == {"w", "t"}


async def test_heartbeat_and_generated_presence_key() -> None:
    hub = Hub(Presences())
    conn = connect(hub)
    await conn.receive(Frame("phoenix", "heartbeat", {}, "9"))
    assert sent(conn) == [
        {"topic": "phoenix", "event": "phx_reply",
         "payload": {"status": "ok", "response": {}}, "ref": "9"},
    ]  # fmt: skip
    await conn.receive(join("realtime:a", "1", {"presence": {"key": ""}}))
    await connect(hub).receive(join("realtime:a", "1"))
    keys = [s.presence_key for s in hub.members("realtime:a")]
    assert len(set(keys)) == 2 and all(keys)


async def test_access_token_updates_claims_and_resubscribes() -> None:
    hub = Hub(Presences())
    conn = connect(hub, clock=lambda: 1_800_000_000.0)
    config = {"postgres_changes": [{"event": "*", "schema": "public", "table": "t"}]}
    await conn.receive(join("realtime:r", "1", config))
    sent(conn)
    (subscriber,) = hub.members("realtime:r")
    fresh = sign({"role": "authenticated", "sub": "u2", "exp": 1_800_000_600}, DEFAULT_JWT_SECRET)
    await conn.receive(Frame("realtime:r", "access_token", {"access_token": fresh}, "2", "1"))
    (system,) = sent(conn)
    assert system["payload"]["message"] == "Subscribed to PostgreSQL"
    assert subscriber.claims["sub"] == "u2"
    await conn.receive(Frame("realtime:r", "access_token", {"access_token": fresh}, "3", "1"))
    await conn.receive(Frame("realtime:r", "access_token", {"access_token": None}, "4", "1"))
    assert sent(conn) == []  # the same token again, or none: ignored, and never a reply
    stale = sign({"role": "authenticated", "exp": 1_799_999_990}, DEFAULT_JWT_SECRET)
    await conn.receive(Frame("realtime:r", "access_token", {"access_token": stale}, "5", "1"))
    error, close = sent(conn)
    assert error["payload"]["status"] == "error"
    assert error["payload"]["message"] == "Token has expired 10 seconds ago"
    assert close == {"topic": "realtime:r", "event": "phx_close", "payload": {}, "ref": "1"}
    assert hub.members("realtime:r") == [] and conn.channels == {}


async def test_replication_ready_is_announced_when_asked() -> None:
    hub = Hub(Presences())
    conn = connect(hub)
    await conn.receive(join("realtime:r", "1", {"broadcast": {"replication_ready": True}}))
    _, system = sent(conn)
    assert system["payload"] == {
        "channel": "r",
        "extension": "system",
        "message": "Replication connection established",
        "status": "ok",
    }


async def test_a_join_past_max_channels_is_refused_as_realtime_refuses_it() -> None:
    """Realtime's max_channels_per_client (100 by default): one more topic on the socket is
    refused ``ChannelRateLimitReached: Too many channels``; rejoining a joined topic is not."""
    conn = connect(Hub(Presences()), max_channels=2)
    for ref, topic in (("1", "realtime:a"), ("2", "realtime:b"), ("3", "realtime:a")):
        await conn.receive(join(topic, ref))
        sent(conn)
    await conn.receive(join("realtime:c", "4"))
    assert sent(conn) == [
        {
            "topic": "realtime:c",
            "event": "phx_reply",
            "payload": {
                "status": "error",
                "response": {"reason": "ChannelRateLimitReached: Too many channels"},
            },
            "ref": "4",
        }
    ]
    assert sorted(conn.channels) == ["realtime:a", "realtime:b"]
    await conn.receive(Frame("realtime:b", "phx_leave", {}, "5", "2"))
    sent(conn)
    await conn.receive(join("realtime:c", "6"))
    assert sent(conn)[0]["payload"]["status"] == "ok"


async def test_over_the_project_message_rate_a_delivery_closes_the_receiving_channel() -> None:
    """Realtime's ``max_events_per_second``: each broadcast counts once sent and once per
    delivery; once a bucket closes over the limit, a channel that is delivered a message gets
    it, then the system error and phx_close."""
    now = {"t": 0.0}
    hub = Hub(Presences(), MessageRate(2, tick_s=1.0), clock=lambda: now["t"])
    sender, receiver = connect(hub), connect(hub)
    await sender.receive(join("realtime:r", "1"))
    await receiver.receive(join("realtime:r", "1"))
    sent(sender), sent(receiver)

    def cast(n: int) -> Frame:
        return Frame("realtime:r", "broadcast", {"event": "e", "payload": {"n": n}}, str(n), "1")

    await sender.receive(cast(1))  # 2 messages in the first second: 2 a second, the limit
    assert [f["event"] for f in sent(receiver)] == ["broadcast"]
    now["t"] = 1.0
    await sender.receive(cast(2))
    delivered, error, close = sent(receiver)
    assert delivered["payload"]["payload"] == {"n": 2}
    assert (error["event"], error["payload"]["message"]) == (
        "system", "Too many messages per second",
    )  # fmt: skip
    assert close["event"] == "phx_close"
    assert hub.members("realtime:r") == [sender.channels["realtime:r"]]
    assert sent(sender) == []  # the sender's own channel is shut only when delivered to
