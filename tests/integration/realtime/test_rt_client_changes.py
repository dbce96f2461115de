"""The daemon's Realtime client against devcloud: postgres_changes per workspace, a failing
handler, broadcast and presence between two connections."""

from __future__ import annotations

import logging

import pytest
from rt_kit import Cloud, Recorder, Session, connection

from daemon.realtime.channels import workspace_topic
from daemon.realtime.connection import RealtimeConnection
from daemon.realtime.frames import (
    BroadcastReceived,
    ChannelError,
    ChannelJoined,
    ConnectionLost,
    Event,
    PostgresChange,
    PostgresSubscribed,
)
from daemon.realtime.phoenix import ChannelState
from daemon.realtime.presence import track_payload
from tests.helpers import MS, wait_for


async def users(cloud: Cloud) -> tuple[Session, Session]:
    await cloud.dc.create_user("alice@example.com", "correct horse 1", org="org-a")
    await cloud.dc.create_user("bob@example.com", "correct horse 1", org="org-b")
    return Session(cloud, "alice@example.com"), Session(cloud, "bob@example.com")


async def test_changes_arrive_for_the_joined_workspace_and_never_for_another_org(
    cloud: Cloud,
) -> None:
    alice, _ = await users(cloud)
    ws_a = await cloud.create_workspace("org-a", "alpha")
    ws_b = await cloud.create_workspace("org-b", "beta")
    rec = Recorder()
    # Heartbeats every 200 ms: devcloud's replies must all be matched (no false timeouts).
    async with connection(cloud, alice, rec, "device-a", heartbeat_interval_s=200 * MS) as rt:
        topic_a = await rt.join_workspace(ws_a)
        topic_b = await rt.join_workspace(ws_b)  # another org's: the private join is refused
        await wait_for(lambda: bool(rec.of(PostgresSubscribed)), message="alpha subscribed")
        await wait_for(lambda: bool(rec.of(ChannelError, topic_b)), message="beta refused")
        assert rec.of(ChannelError, topic_b)[0].reason == (
            "Unauthorized: You do not have permissions to read from this Channel topic: "
            f"workspace:{ws_b}"
        )
        assert rt.channel_state(ws_a) is ChannelState.JOINED
        assert rt.channel_state(ws_b) is not ChannelState.JOINED  # (waiting, or rejoining)
        [joined] = rec.of(ChannelJoined, topic_a)
        assert [b["table"] for b in joined.bindings] == [
            "workspaces",
            "conversations",
            "messages",
            "tasks",
            "documents",
            "doc_updates",
        ]
        assert all(isinstance(b["id"], int) and b["id"] for b in joined.bindings)

        await cloud.create_conversation(ws_b, "bob's secret")
        conv_a = await cloud.create_conversation(ws_a, "alice's plan")
        other_a = await cloud.create_workspace("org-a", "alpha-2")  # same org, not joined
        await cloud.create_conversation(other_a, "elsewhere")
        async with cloud.dc.ctx.pool.acquire() as conn:
            await conn.execute("UPDATE workspaces SET name = 'alpha!' WHERE id = $1", ws_a)
        await wait_for(
            lambda: any(c.table == "workspaces" for c in rec.of(PostgresChange)),
            message="the workspace update",
        )
    changes = rec.of(PostgresChange)
    # Delivery is in commit order: bob's row and the other workspace's row came first, or never.
    assert [(c.topic, c.table, c.type) for c in changes] == [
        (topic_a, "conversations", "INSERT"),
        (topic_a, "workspaces", "UPDATE"),
    ]
    assert changes[0].record is not None and changes[0].record["id"] == conv_a
    assert changes[0].record["workspace_id"] == ws_a
    assert changes[0].old_record is None and changes[0].commit_timestamp
    assert changes[1].record is not None and changes[1].record["name"] == "alpha!"
    assert not rec.of(PostgresChange, topic_b)
    assert rec.of(PostgresSubscribed, topic_b) == []
    # refused joins are retried after 1, 2, 5, then 10 s (tests/unit/test_phoenix.py, on a
    # controlled clock), not in a hot loop, which would have been refused hundreds of times by
    # now: ten allows this test ~50 s even on a loaded machine
    assert len(rec.of(ChannelError, topic_b)) <= 10
    assert rec.of(ConnectionLost) == []


async def test_a_failing_handler_does_not_stop_later_events(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    alice, _ = await users(cloud)
    ws = await cloud.create_workspace("org-a", "alpha")
    failing = Recorder(fail_on=lambda e: isinstance(e, PostgresChange))
    with caplog.at_level(logging.ERROR, logger="daemon.realtime.connection"):
        async with connection(cloud, alice, failing, "device-a") as rt:
            await rt.join_workspace(ws)
            await wait_for(lambda: bool(failing.of(PostgresSubscribed)), message="subscribed")
            for name in ("one", "two", "three"):
                await cloud.create_conversation(ws, name)
            await wait_for(lambda: len(failing.of(PostgresChange)) == 3, message="3 changes")
            assert rt.is_connected
    names = [c.record["name"] for c in failing.of(PostgresChange) if c.record]
    assert names == ["one", "two", "three"]
    failures = [r for r in caplog.records if r.getMessage().startswith("realtime.handler.failed")]
    assert len(failures) == 3
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in failures)


async def test_broadcast_and_presence_between_two_devices(cloud: Cloud) -> None:
    alice, _ = await users(cloud)
    await cloud.dc.create_user("carol@example.com", "correct horse 1", org="org-a")
    carol = Session(cloud, "carol@example.com")
    ws = await cloud.create_workspace("org-a", "alpha")
    rec_a, rec_b = Recorder(), Recorder()
    async with connection(cloud, carol, rec_b, "device-b") as b:
        await b.join_workspace(ws)
        await wait_for(lambda: bool(rec_b.of(ChannelJoined)), message="B joined")
        async with connection(cloud, alice, rec_a, "device-a") as a:
            await a.join_workspace(ws)
            await wait_for(lambda: bool(rec_a.of(ChannelJoined)), message="A joined")
            since = 1_795_000_000.0
            await a.track(
                ws,
                track_payload(
                    device_id="device-a",
                    user_id="alice",
                    display_name="Alice",
                    since=since,
                    active_at=since,
                    active_file="notes.md",
                ),
            )
            await wait_for(lambda: len(b.members(ws, now=since)) == 1, message="A online at B")
            [member] = b.members(ws, now=since)
            assert (member.key, member.display_name, member.active_file, member.status) == (
                "device-a",
                "Alice",
                "notes.md",
                "active",
            )
            assert b.members(ws, now=since + 301)[0].status == "away"
            assert await a.broadcast(ws, "cursor", {"line": 3})
            await wait_for(lambda: bool(rec_b.of(BroadcastReceived)), message="broadcast at B")
            assert rec_b.of(BroadcastReceived) == [
                BroadcastReceived(workspace_topic(ws), "cursor", {"line": 3})
            ]
            assert await b.broadcast(ws, "cursor", {"line": 4})
            await wait_for(lambda: bool(rec_a.of(BroadcastReceived)), message="broadcast at A")
        await wait_for(lambda: b.members(ws) == [], message="A gone from B's members")
    assert len(rec_a.of(BroadcastReceived)) == 1  # self: false — A never hears itself


async def test_a_handler_may_use_the_connection_it_is_called_from(cloud: Cloud) -> None:
    alice, _ = await users(cloud)
    ws = await cloud.create_workspace("org-a", "alpha")
    rec_a, rec_b = Recorder(), Recorder()
    conns: dict[str, RealtimeConnection] = {}

    async def answer_pings(event: Event) -> None:
        await rec_b(event)
        if isinstance(event, BroadcastReceived) and event.event == "ping":
            assert await conns["b"].broadcast(ws, "pong", {"n": event.payload["n"]})

    async with (
        connection(cloud, alice, answer_pings, "device-b", queue_size=1) as b,
        connection(cloud, alice, rec_a, "device-a") as a,
    ):
        conns["b"] = b
        await b.join_workspace(ws)
        await a.join_workspace(ws)
        await wait_for(lambda: len(rec_a.of(ChannelJoined)) == len(rec_b.of(ChannelJoined)) == 1)
        for n in range(20):
            await a.broadcast(ws, "ping", {"n": n})
        await wait_for(lambda: len(rec_a.of(BroadcastReceived)) == 20, message="20 pongs")
    assert [e.payload["n"] for e in rec_a.of(BroadcastReceived)] == list(range(20))
