"""The sans-I/O Phoenix client (daemon/realtime/phoenix.py): recorded frames, the channel
transition table, heartbeats, reconnect backoff, token refresh and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from daemon.errors import InvalidInput
from daemon.realtime.frames import (
    BroadcastReceived,
    ChannelClosed,
    ChannelError,
    ChannelJoined,
    ConnectionLost,
    ConnectionOpened,
    InvalidFrame,
    PostgresChange,
    PostgresSubscribed,
    PresenceDiff,
    PresenceState,
    Reply,
)
from daemon.realtime.phoenix import TRANSITIONS, ChannelState, Input, PhoenixClient

TOPIC = "realtime:room1"
T0 = 1000.0
JOIN_PAYLOAD: dict[str, Any] = {
    "config": {
        "broadcast": {"ack": True, "self": True},
        "presence": {"key": "k1", "enabled": True},
        "private": False,
        "postgres_changes": [
            {"event": "*", "schema": "public", "table": "todos", "filter": "user_id=eq.abc"},
            {"event": "INSERT", "schema": "public", "table": "notes"},
        ],
    }
}


class Harness:
    """A client plus every frame it sent (decoded), so tests can answer with the right refs."""

    def __init__(self, **options: Any) -> None:
        self.client = PhoenixClient(**options)
        self.sent: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        frames = [json.loads(text) for text in self.client.data_to_send()]
        self.sent.extend(frames)
        return frames

    def events(self) -> list[Any]:
        return self.client.events_received()

    def join_ref(self, topic: str = TOPIC) -> str:
        refs = [f["ref"] for f in self.sent if f["event"] == "phx_join" and f["topic"] == topic]
        return refs[-1] if refs else "999"

    def server(self, now: float = T0, **frame: Any) -> None:
        frame.setdefault("topic", TOPIC)
        frame.setdefault("payload", {})
        frame.setdefault("ref", None)
        self.client.receive_text(json.dumps(frame), now)

    def reply(
        self, ref: str | None, status: str = "ok", response: Any = None, now: float = T0
    ) -> None:
        payload = {"status": status, "response": {} if response is None else response}
        self.server(now, event="phx_reply", ref=ref, payload=payload)


def open_harness(**options: Any) -> Harness:
    h = Harness(**options)
    h.client.connection_opened(T0)
    h.events()
    return h


def joined_harness(**options: Any) -> Harness:
    h = open_harness(**options)
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    h.drain()
    h.reply(h.join_ref())
    h.events()
    return h


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


# Recorded frames (wire spec Appendix A.1, supabase-py ↔ capture server) --------------------------

A1_SERVER = [
    '{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{"postgres_changes":[{"event":"*","schema":"public","table":"todos","filter":"user_id=eq.abc","id":1000},{"event":"INSERT","schema":"public","table":"notes","id":1001}]}},"ref":"1"}',
    '{"topic":"realtime:room1","event":"presence_state","payload":{},"ref":null}',
    '{"topic":"realtime:room1","event":"system","payload":{"channel":"room1","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"},"ref":null}',  # noqa: E501
    '{"topic":"realtime:room1","event":"postgres_changes","payload":{"ids":[1000],"data":{"columns":[{"name":"id","type":"int8"},{"name":"title","type":"text"},{"name":"done","type":"bool"}],"commit_timestamp":"2026-08-21T12:00:00.123Z","errors":null,"record":{"id":1,"title":"hi","done":false},"schema":"public","table":"todos","type":"INSERT"}},"ref":null}',
    '{"topic":"realtime:room1","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2"}',
    '{"topic":"realtime:room1","event":"presence_diff","payload":{"joins":{"k1":{"metas":[{"online_at":"2026-08-21T00:00:00Z","phx_ref":"GAFp4Yk1vRiGAQjh"}]}},"leaves":{}},"ref":null}',
    '{"topic":"realtime:room1","event":"broadcast","payload":{"type":"broadcast","event":"cursor","payload":{"x":1,"y":2}},"ref":null}',
]


def test_recorded_supabase_session_a1() -> None:
    client = PhoenixClient()
    client.connection_opened(T0)
    client.join(TOPIC, JOIN_PAYLOAD, T0)
    [join] = [json.loads(f) for f in client.data_to_send()]
    assert join == {
        "topic": TOPIC,
        "event": "phx_join",
        "payload": JOIN_PAYLOAD,
        "ref": "1",
        "join_ref": "1",
    }
    client.receive_text(A1_SERVER[0], T0)
    assert client.channel_state(TOPIC) is ChannelState.JOINED
    ref = client.push(TOPIC, "presence", {"event": "track", "payload": {"online_at": "x"}})
    assert ref == "2"
    for text in A1_SERVER[1:]:
        client.receive_text(text, T0)
    events = client.events_received()
    assert events == [
        ConnectionOpened(),
        ChannelJoined(
            TOPIC,
            (
                {
                    "event": "*",
                    "schema": "public",
                    "table": "todos",
                    "filter": "user_id=eq.abc",
                    "id": 1000,
                },
                {"event": "INSERT", "schema": "public", "table": "notes", "id": 1001},
            ),
        ),
        PresenceState(TOPIC, {}),
        PostgresSubscribed(TOPIC),
        PostgresChange(
            topic=TOPIC,
            schema="public",
            table="todos",
            type="INSERT",
            record={"id": 1, "title": "hi", "done": False},
            old_record=None,
            commit_timestamp="2026-08-21T12:00:00.123Z",
        ),
        Reply(TOPIC, "2", "ok", {}),
        PresenceDiff(
            TOPIC,
            {"k1": ({"online_at": "2026-08-21T00:00:00Z", "phx_ref": "GAFp4Yk1vRiGAQjh"},)},
            {},
        ),
        BroadcastReceived(TOPIC, "cursor", {"x": 1, "y": 2}),
    ]
    [track] = [json.loads(f) for f in client.data_to_send()]
    assert track == {
        "topic": TOPIC,
        "event": "presence",
        "payload": {"event": "track", "payload": {"online_at": "x"}},
        "ref": "2",
        "join_ref": "1",
    }


def test_leave_then_server_close_reports_one_closed_channel() -> None:
    h = joined_harness()
    h.client.leave(TOPIC, T0)
    [leave] = h.drain()
    assert (leave["event"], leave["join_ref"]) == ("phx_leave", h.join_ref())
    h.reply(leave["ref"])  # A.1: the reply, then phx_close with ref = the join ref
    h.server(event="phx_close", ref=h.join_ref())
    assert h.events() == [ChannelClosed(TOPIC, "left", rejoining=False)]
    assert h.client.channel_state(TOPIC) is ChannelState.CLOSED
    assert h.client.topics == []


# The channel transition table --------------------------------------------------------------------


def to_state(state: ChannelState) -> Harness:
    """A harness whose channel TOPIC is in ``state`` (output drained)."""
    h = open_harness()
    if state is not ChannelState.CLOSED:
        h.client.join(TOPIC, JOIN_PAYLOAD, T0)
        h.drain()
    if state in (ChannelState.JOINED, ChannelState.LEAVING):
        h.reply(h.join_ref())
    if state is ChannelState.WAITING:
        h.reply(h.join_ref(), "error", {"reason": "UnknownErrorOnChannel: boom"})
    if state is ChannelState.LEAVING:
        h.client.leave(TOPIC, T0)
        h.drain()
    h.events()
    assert h.client.channel_state(TOPIC) is state
    return h


def reconnect(h: Harness) -> None:
    h.client.connection_lost(T0, "closed")
    h.client.connection_opened(T0)


STIMULI: dict[str, Callable[[Harness], None]] = {
    "join": lambda h: h.client.join(TOPIC, JOIN_PAYLOAD, T0),
    "reply ok": lambda h: h.reply(h.join_ref()),
    "reply error": lambda h: h.reply(h.join_ref(), "error", {"reason": "InvalidJWTToken: x"}),
    "tick +11s": lambda h: h.client.tick(T0 + 11),
    "phx_close": lambda h: h.server(event="phx_close", ref=h.join_ref()),
    "phx_error": lambda h: h.server(event="phx_error", ref=h.join_ref()),
    "unmatched": lambda h: h.reply("999", "error", {"reason": "unmatched topic"}),
    "socket lost": lambda h: h.client.connection_lost(T0, "closed"),
    "reconnect": reconnect,
    "leave": lambda h: h.client.leave(TOPIC, T0),
}

C, J, JD, W, L = (
    ChannelState.CLOSED,
    ChannelState.JOINING,
    ChannelState.JOINED,
    ChannelState.WAITING,
    ChannelState.LEAVING,
)
# (state, stimulus) -> (next state, events reported, events of the frames sent)
TABLE: dict[tuple[ChannelState, str], tuple[ChannelState, list[str], list[str]]] = {
    (C, "join"): (J, [], ["phx_join"]),
    (J, "join"): (J, [], ["phx_join"]),
    (JD, "join"): (J, [], ["phx_join"]),
    (W, "join"): (J, [], ["phx_join"]),
    (L, "join"): (J, [], ["phx_join"]),
    (C, "reply ok"): (C, [], []),
    (J, "reply ok"): (JD, ["ChannelJoined"], []),
    (JD, "reply ok"): (JD, [], []),
    (W, "reply ok"): (W, [], []),  # the late reply of a failed join
    (L, "reply ok"): (L, [], []),
    (C, "reply error"): (C, [], []),
    (J, "reply error"): (W, ["ChannelError"], []),
    (JD, "reply error"): (JD, [], []),
    (W, "reply error"): (W, [], []),
    (L, "reply error"): (L, [], []),
    (C, "tick +11s"): (C, [], []),
    (J, "tick +11s"): (W, ["ChannelError"], []),  # join timed out
    (JD, "tick +11s"): (JD, [], []),
    (W, "tick +11s"): (J, [], ["phx_join"]),  # rejoin delay passed
    (L, "tick +11s"): (C, ["ChannelClosed"], []),  # leave timed out
    (C, "phx_close"): (C, [], []),
    (J, "phx_close"): (W, ["ChannelClosed"], []),
    (JD, "phx_close"): (W, ["ChannelClosed"], []),
    (W, "phx_close"): (W, [], []),
    (L, "phx_close"): (C, ["ChannelClosed"], []),
    (C, "phx_error"): (C, [], []),
    (J, "phx_error"): (W, ["ChannelError"], []),
    (JD, "phx_error"): (W, ["ChannelError"], []),
    (W, "phx_error"): (W, [], []),
    (L, "phx_error"): (C, ["ChannelClosed"], []),
    (C, "unmatched"): (C, [], []),
    (J, "unmatched"): (J, ["Reply"], []),
    (JD, "unmatched"): (W, ["ChannelError", "Reply"], []),
    (W, "unmatched"): (W, ["Reply"], []),
    (L, "unmatched"): (L, ["Reply"], []),
    (C, "socket lost"): (C, ["ConnectionLost"], []),
    (J, "socket lost"): (W, ["ConnectionLost"], []),
    (JD, "socket lost"): (W, ["ConnectionLost"], []),
    (W, "socket lost"): (W, ["ConnectionLost"], []),
    (L, "socket lost"): (C, ["ChannelClosed", "ConnectionLost"], []),
    (C, "reconnect"): (C, ["ConnectionLost", "ConnectionOpened"], []),
    (J, "reconnect"): (J, ["ConnectionLost", "ConnectionOpened"], ["phx_join"]),
    (JD, "reconnect"): (J, ["ConnectionLost", "ConnectionOpened"], ["phx_join"]),
    (W, "reconnect"): (J, ["ConnectionLost", "ConnectionOpened"], ["phx_join"]),
    (L, "reconnect"): (C, ["ChannelClosed", "ConnectionLost", "ConnectionOpened"], []),
    (C, "leave"): (C, [], []),
    (J, "leave"): (L, [], ["phx_leave"]),
    (JD, "leave"): (L, [], ["phx_leave"]),
    (W, "leave"): (L, [], ["phx_leave"]),
    (L, "leave"): (L, [], []),
}


def test_table_covers_every_cell() -> None:
    assert set(TABLE) == {(state, name) for state in ChannelState for name in STIMULI}


@pytest.mark.parametrize(("state", "stimulus"), sorted(TABLE, key=str))
def test_transition(state: ChannelState, stimulus: str) -> None:
    h = to_state(state)
    STIMULI[stimulus](h)
    expected_state, expected_events, expected_sent = TABLE[(state, stimulus)]
    assert h.client.channel_state(TOPIC) is expected_state
    assert kinds(h.events()) == expected_events
    assert [f["event"] for f in h.drain()] == expected_sent


def test_transitions_table_only_names_real_states_and_inputs() -> None:
    for (state, what), after in TRANSITIONS.items():
        assert isinstance(state, ChannelState)
        assert isinstance(what, Input)
        assert isinstance(after, ChannelState)


# Rejoins --------------------------------------------------------------------------------------


def test_reconnect_rejoins_every_channel_with_its_stored_payload_and_new_refs() -> None:
    h = open_harness()
    other = "realtime:other"
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    h.client.join(other, {"config": {}}, T0)
    first = h.drain()
    h.client.connection_lost(T0 + 1, "1006")
    assert h.client.data_to_send() == []
    assert h.client.next_deadline() is None
    h.client.connection_opened(T0 + 2)
    again = h.drain()
    assert [(f["topic"], f["payload"]) for f in again] == [
        (TOPIC, JOIN_PAYLOAD),
        (other, {"config": {}}),
    ]
    assert {f["ref"] for f in again}.isdisjoint({f["ref"] for f in first})
    assert all(f["ref"] == f["join_ref"] for f in again)


def test_the_stored_payload_is_a_copy() -> None:
    h = open_harness()
    payload = json.loads(json.dumps(JOIN_PAYLOAD))
    h.client.join(TOPIC, payload, T0)
    payload["config"]["presence"]["key"] = "changed later"
    stored = h.client.join_payload(TOPIC)
    assert stored == JOIN_PAYLOAD
    reconnect(h)
    assert [f["payload"] for f in h.drain()][-1] == JOIN_PAYLOAD


def test_join_while_offline_waits_for_the_socket() -> None:
    h = Harness()
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    assert h.drain() == []
    assert h.client.channel_state(TOPIC) is ChannelState.WAITING
    h.client.connection_opened(T0)
    assert [f["event"] for f in h.drain()] == ["phx_join"]


def test_leave_while_offline_forgets_at_once() -> None:
    h = Harness()
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    h.client.leave(TOPIC, T0)
    assert h.events() == [ChannelClosed(TOPIC, "left", rejoining=False)]
    h.client.connection_opened(T0)
    assert h.drain() == []


def test_rejoin_delays_grow_then_stay_at_ten_seconds() -> None:
    h = open_harness(heartbeat_interval_s=1e6)
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    h.drain()
    now, delays = T0, []
    for _ in range(6):
        h.reply(h.join_ref(), "error", {"reason": "UnknownErrorOnChannel: x"}, now=now)
        deadline = h.client.next_deadline()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        h.client.tick(now)
        assert [f["event"] for f in h.drain()] == ["phx_join"]
    assert delays == [1.0, 2.0, 5.0, 10.0, 10.0, 10.0]


def test_rate_limited_join_waits_thirty_seconds() -> None:
    h = open_harness(heartbeat_interval_s=1e6)
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    h.drain()
    h.reply(h.join_ref(), "error", {"reason": "ClientJoinRateLimitReached: Too many joins"})
    assert h.events() == [ChannelError(TOPIC, "ClientJoinRateLimitReached: Too many joins")]
    assert h.client.next_deadline() == T0 + 30


def closed_with_system_error(h: Harness, message: str) -> None:
    """Realtime's ``system`` error, then its ``phx_close``: reported, and a rejoin is due."""
    h.server(
        event="system",
        payload={"channel": "room1", "extension": "system", "message": message, "status": "error"},
    )
    h.server(event="phx_close", ref=h.join_ref())
    assert h.events() == [
        ChannelError(TOPIC, message),
        ChannelClosed(TOPIC, message, rejoining=True),
    ]


def test_system_error_then_close_is_rejoined_not_left_closed() -> None:
    """Token expiry in Realtime: a system error, then phx_close (supabase-py stays CLOSED)."""
    h = joined_harness()
    closed_with_system_error(h, "Token has expired 0 seconds ago")
    h.client.tick(T0 + 1)
    [rejoin] = h.drain()
    assert rejoin["event"] == "phx_join"
    h.reply(rejoin["ref"])
    assert kinds(h.events()) == ["ChannelJoined"]


@pytest.mark.parametrize(
    "message", ["Too many messages per second", "Too many presence messages per second"]
)
def test_a_channel_closed_for_the_projects_message_rate_rejoins_after_thirty_seconds(
    message: str,
) -> None:
    """Realtime shuts every channel that gets a message while the project is over its quota
    (averaged over a minute): a rejoin 1 s later was shut again, and each one pulled."""
    h = joined_harness(heartbeat_interval_s=1e6)
    closed_with_system_error(h, message)
    assert h.client.next_deadline() == T0 + 30  # was T0 + 1
    h.client.tick(T0 + 29)
    assert h.drain() == []
    h.client.tick(T0 + 30)
    assert [f["event"] for f in h.drain()] == ["phx_join"]


def test_system_error_alone_keeps_the_channel_joined() -> None:
    h = joined_harness()
    h.server(
        event="system",
        payload={
            "channel": "room1",
            "extension": "postgres_changes",
            "message": "Error parsing `filter` params",
            "status": "error",
        },
    )
    assert kinds(h.events()) == ["ChannelError"]
    assert h.client.channel_state(TOPIC) is ChannelState.JOINED
    assert h.drain() == []


def test_close_of_an_older_join_is_ignored() -> None:
    h = joined_harness()
    old = h.join_ref()
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)  # Phoenix closes the first channel...
    h.drain()
    h.server(event="phx_close", ref=old)  # ...with the old join ref
    h.reply(h.join_ref())
    assert kinds(h.events()) == ["ChannelJoined"]
    assert h.client.channel_state(TOPIC) is ChannelState.JOINED


def test_frames_for_unknown_topics_are_ignored() -> None:
    h = joined_harness()
    h.server(topic="realtime:gone", event="broadcast", payload={"event": "x", "payload": {}})
    h.server(topic="realtime:gone", event="phx_close", ref="1")
    assert h.events() == []


# Heartbeat and reconnect -------------------------------------------------------------------------


def test_heartbeat_every_interval_and_a_missing_reply_loses_the_connection() -> None:
    h = joined_harness(heartbeat_interval_s=25.0)
    assert h.client.next_deadline() == T0 + 25
    h.client.tick(T0 + 24.9)
    assert h.drain() == []
    h.client.tick(T0 + 25)
    [beat] = h.drain()
    assert beat == {
        "topic": "phoenix",
        "event": "heartbeat",
        "payload": {},
        "ref": beat["ref"],
        "join_ref": None,
    }
    h.server(
        topic="phoenix",
        event="phx_reply",
        ref=beat["ref"],
        payload={"status": "ok", "response": {}},
    )
    h.client.tick(T0 + 50)
    [beat2] = h.drain()
    assert beat2["event"] == "heartbeat"
    h.client.tick(T0 + 75)  # no reply to beat2
    assert h.events() == [ConnectionLost("heartbeat timeout")]
    assert not h.client.is_open
    assert h.client.channel_state(TOPIC) is ChannelState.WAITING
    assert h.drain() == []
    h.client.connection_lost(T0 + 75, "closed")  # the adapter's own report changes nothing
    assert h.events() == []


def test_reconnect_backoff_is_full_jitter_capped_at_thirty_seconds_and_never_gives_up() -> None:
    client = PhoenixClient()
    ceilings = [client.reconnect_delay(0.999999) for _ in range(200)]
    assert ceilings[:6] == pytest.approx([1, 2, 4, 8, 16, 30], rel=1e-3)
    assert max(ceilings) <= 30.0
    assert ceilings[-1] == pytest.approx(30.0, rel=1e-3)  # attempt 200 still gets a delay
    assert client.reconnect_delay(0.0) == 0.0
    assert client.reconnect_delay(0.5) == pytest.approx(15.0)


def test_a_working_connection_resets_the_backoff() -> None:
    h = open_harness()
    for _ in range(5):
        h.client.reconnect_delay(0.5)
    h.client.tick(T0 + 25)
    [beat] = h.drain()
    h.server(
        topic="phoenix",
        event="phx_reply",
        ref=beat["ref"],
        payload={"status": "ok", "response": {}},
    )
    assert h.client.reconnect_delay(0.5) == pytest.approx(0.5)


def test_join_timeout_deadline() -> None:
    h = open_harness(join_timeout_s=10.0)
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    assert h.client.next_deadline() == T0 + 10
    h.client.tick(T0 + 10)
    assert h.events() == [ChannelError(TOPIC, "join timed out")]
    assert h.client.next_deadline() == T0 + 11


# Access token ------------------------------------------------------------------------------------


def test_set_access_token_pushes_to_joined_channels_and_rejoins_carry_it() -> None:
    h = joined_harness()
    h.client.set_access_token("tok-2")
    [push] = h.drain()
    assert push == {
        "topic": TOPIC,
        "event": "access_token",
        "payload": {"access_token": "tok-2"},
        "ref": push["ref"],
        "join_ref": h.join_ref(),
    }
    h.client.set_access_token("tok-2")  # unchanged: nothing is sent again
    assert h.drain() == []
    reconnect(h)
    [rejoin] = h.drain()
    assert rejoin["payload"] == {**JOIN_PAYLOAD, "access_token": "tok-2"}
    assert JOIN_PAYLOAD.get("access_token") is None  # the caller's dict is not touched


def test_joins_carry_the_current_token() -> None:
    h = open_harness()
    h.client.set_access_token("tok-1")
    h.client.join(TOPIC, {**JOIN_PAYLOAD, "access_token": "stale"}, T0)
    [join] = h.drain()
    assert join["payload"]["access_token"] == "tok-1"
    assert h.client.join_payload(TOPIC) == {**JOIN_PAYLOAD, "access_token": "tok-1"}


def test_token_changed_during_a_join_is_pushed_once_joined() -> None:
    h = open_harness()
    h.client.set_access_token("tok-1")
    h.client.join(TOPIC, JOIN_PAYLOAD, T0)
    h.drain()
    h.client.set_access_token("tok-2")
    assert h.drain() == []  # not joined yet
    h.reply(h.join_ref())
    [push] = h.drain()
    assert (push["event"], push["payload"]) == ("access_token", {"access_token": "tok-2"})


def test_waiting_channel_rejoins_with_the_fresh_token() -> None:
    h = joined_harness()
    h.client.set_access_token("old")
    h.drain()
    h.server(event="phx_close", ref=h.join_ref())
    h.client.set_access_token("fresh")
    assert h.drain() == []  # not joined: nothing pushed
    h.client.tick(T0 + 1)
    [rejoin] = h.drain()
    assert rejoin["payload"]["access_token"] == "fresh"


# Bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '[null,null,"realtime:room1","broadcast",{}]',
        '{"topic":"realtime:room1","event":"broadcast","payload":[1],"ref":null}',
        '{"topic":"realtime:room1","event":"broadcast","payload":{"event":1},"ref":null}',
        '{"topic":"realtime:room1","event":"postgres_changes","payload":{"data":{"type":"insert","table":"t"}},"ref":null}',
        '{"topic":"realtime:room1","event":"postgres_changes","payload":{"data":{"type":"INSERT","table":"t","record":[1]}},"ref":null}',
        '{"topic":"realtime:room1","event":"presence_state","payload":{"k":{"metas":{}}},"ref":null}',
        '{"topic":"realtime:room1","event":"system","payload":{"status":"ok"},"ref":null}',
        '{"topic":"realtime:room1","event":"phx_reply","payload":{},"ref":1.5}',
        '{"topic":7,"event":"x","payload":{},"ref":null}',
    ],
)
def test_bad_frames_are_reported_and_later_frames_still_work(text: str) -> None:
    h = joined_harness()
    h.client.receive_text(text, T0)
    h.server(event="broadcast", payload={"event": "cursor", "payload": {"x": 1}})
    events = h.events()
    assert len(events) == 2 and isinstance(events[0], InvalidFrame)
    assert text not in events[0].reason
    assert events[1] == BroadcastReceived(TOPIC, "cursor", {"x": 1})
    assert h.client.channel_state(TOPIC) is ChannelState.JOINED


def test_integer_refs_are_accepted() -> None:
    h = to_state(ChannelState.JOINING)
    h.server(event="phx_reply", ref=int(h.join_ref()), payload={"status": "ok", "response": {}})
    assert kinds(h.events()) == ["ChannelJoined"]


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("room1", {}),
        ("realtime:", {}),
        ("realtime:  ", {}),
        (TOPIC, {"x": float("nan")}),
        (TOPIC, {"x": object()}),
        (TOPIC, [1]),
    ],
)
def test_bad_join_is_refused_and_changes_nothing(topic: str, payload: Any) -> None:
    h = open_harness()
    with pytest.raises(InvalidInput):
        h.client.join(topic, payload, T0)
    assert h.drain() == [] and h.client.topics == [] and h.events() == []


@pytest.mark.parametrize(
    ("event", "payload"),
    [("phx_join", {}), ("heartbeat", {}), ("access_token", {}), ("", {}), ("cursor", {"x": {1}})],
)
def test_bad_push_is_refused_and_changes_nothing(event: str, payload: Any) -> None:
    h = joined_harness()
    with pytest.raises(InvalidInput):
        h.client.push(TOPIC, event, payload)
    assert h.drain() == []
    assert h.client.push(TOPIC, "cursor", {}) == str(int(h.join_ref()) + 1)  # no ref was used up


def test_push_to_a_channel_that_is_not_joined_sends_nothing() -> None:
    h = to_state(ChannelState.JOINING)
    assert h.client.push(TOPIC, "broadcast", {"event": "x"}) is None
    assert h.client.push("realtime:unknown", "broadcast", {"event": "x"}) is None
    assert h.drain() == []


def test_bad_token_and_options_are_refused() -> None:
    with pytest.raises(InvalidInput):
        PhoenixClient().set_access_token("  ")
    with pytest.raises(ValueError):
        PhoenixClient(heartbeat_interval_s=0)


def test_receive_while_closed_is_ignored() -> None:
    client = PhoenixClient()
    client.receive_text("garbage", T0)
    client.tick(T0)
    assert client.events_received() == [] and client.data_to_send() == []


def test_opening_an_open_connection_counts_as_a_reconnect() -> None:
    h = joined_harness()
    h.client.connection_opened(T0 + 1)
    assert h.events() == [ConnectionLost("reopened"), ConnectionOpened()]
    assert [f["event"] for f in h.drain()] == ["phx_join"]


def test_other_server_events_are_ignored() -> None:
    h = joined_harness()
    h.server(
        event="system",
        payload={
            "channel": "room1",
            "extension": "system",
            "message": "Replication connection established",
            "status": "ok",
        },
    )
    h.server(event="some_future_event", payload={"x": 1})
    h.server(
        topic="phoenix", event="phx_reply", ref="12345", payload={"status": "ok", "response": {}}
    )
    assert h.events() == []
    assert h.client.channel_state(TOPIC) is ChannelState.JOINED


def test_phx_error_reason_is_reported() -> None:
    h = joined_harness()
    h.server(event="phx_error", ref=h.join_ref(), payload={"reason": "boom"})
    assert h.events() == [ChannelError(TOPIC, "boom")]


def test_has_data_to_send_tells_whether_frames_wait() -> None:
    client = PhoenixClient()
    assert not client.has_data_to_send
    client.connection_opened(T0)
    client.join(TOPIC, JOIN_PAYLOAD, T0)
    assert client.has_data_to_send
    assert len(client.data_to_send()) == 1
    assert not client.has_data_to_send
    client.receive_text(
        '{"topic":"realtime:room1","event":"postgres_changes","payload":{"data":{"type":"INSERT",'
        '"schema":"public","table":"todos","record":{"id":1}}},"ref":null}',
        T0,
    )
    assert not client.has_data_to_send  # a received change asks for no reply
