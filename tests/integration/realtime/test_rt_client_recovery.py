"""The Realtime client recovers by itself: a devcloud restart (same database and port) and
access tokens that expire every few seconds."""

from __future__ import annotations

import logging
import time

import pytest
from rt_kit import Cloud, Recorder, Session, connection

from daemon.backoff import Backoff
from daemon.realtime.frames import (
    ChannelClosed,
    ChannelError,
    ChannelJoined,
    ConnectionLost,
    ConnectionOpened,
    PostgresChange,
    PostgresSubscribed,
)
from daemon.realtime.phoenix import ChannelState
from daemon.realtime.presence import track_payload
from tests.helpers import MS, wait_for


def has_change(rec: Recorder, row_id: str) -> bool:
    return any(c.record and c.record.get("id") == row_id for c in rec.of(PostgresChange))


async def test_server_restart_reconnects_rejoins_and_resubscribes(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    await cloud.dc.create_user("alice@example.com", "correct horse 1", org="org-a")
    alice = Session(cloud, "alice@example.com")
    ws = await cloud.create_workspace("org-a", "alpha")
    rec = Recorder()
    caplog.set_level(logging.DEBUG, logger="daemon.realtime.connection")  # (repeats: DEBUG)
    async with connection(cloud, alice, rec, "device-a") as rt:
        await rt.join_workspace(ws)
        await wait_for(lambda: len(rec.of(PostgresSubscribed)) == 1, message="subscribed")
        me = track_payload(
            device_id="device-a", user_id=None, display_name="A", since=0.0, active_at=time.time()
        )
        await rt.track(ws, me)
        await wait_for(lambda: len(rt.members(ws)) == 1, message="own presence")
        port = cloud.port

        await cloud.stop()
        await wait_for(lambda: bool(rec.of(ConnectionLost)), message="the loss noticed")
        assert not rt.is_connected
        assert rt.channel_state(ws) is ChannelState.WAITING
        assert rt.members(ws) == []  # unknown while offline
        await wait_for(
            lambda: caplog.text.count("realtime.connect.failed") >= 6,
            message="more reconnect attempts than supabase-py ever makes (5)",
        )

        await cloud.start()
        assert cloud.port == port
        await wait_for(lambda: len(rec.of(PostgresSubscribed)) == 2, message="resubscribed")
        assert rt.channel_state(ws) is ChannelState.JOINED
        await wait_for(lambda: len(rt.members(ws)) == 1, message="presence tracked again")
        assert rt.members(ws)[0].display_name == "A"
        row = await cloud.create_conversation(ws, "after the restart")
        await wait_for(lambda: has_change(rec, row), message="a change after the restart")

    kinds = [
        type(e).__name__
        for e in rec.events
        if isinstance(e, ConnectionOpened | ConnectionLost | ChannelJoined | PostgresSubscribed)
    ]
    assert kinds == [
        "ConnectionOpened",
        "ChannelJoined",
        "PostgresSubscribed",
        "ConnectionLost",
        "ConnectionOpened",
        "ChannelJoined",
        "PostgresSubscribed",
    ]


async def test_channel_stays_joined_across_several_token_expiries(cloud: Cloud) -> None:
    await cloud.stop()
    await cloud.start(jwt_expiry=5)  # every access token lives five seconds
    await cloud.dc.create_user("alice@example.com", "correct horse 1", org="org-a")
    alice = Session(cloud, "alice@example.com")
    ws = await cloud.create_workspace("org-a", "alpha")
    rec = Recorder()
    async with connection(cloud, alice, rec, "device-a") as rt:
        await rt.join_workspace(ws)
        await wait_for(lambda: bool(rec.of(PostgresSubscribed)), message="subscribed")
        for round_ in range(3):
            tokens = len(alice.tokens)
            await wait_for(
                lambda n=tokens: len(alice.tokens) > n,
                timeout=8_000 * MS,
                message=f"token refresh {round_ + 1}",
            )
            row = await cloud.create_conversation(ws, f"round {round_}")
            await wait_for(lambda r=row: has_change(rec, r), message=f"change {round_}")
        assert time.time() > alice.expiry_of(1), "the channel outlived two tokens"
        assert rt.channel_state(ws) is ChannelState.JOINED
    assert rec.of(ChannelClosed) == [] and rec.of(ChannelError) == []
    assert len(rec.of(ChannelJoined)) == 1  # never had to rejoin


@pytest.mark.parametrize("skew_h", [-2.0, 2.0])
async def test_tokens_are_renewed_in_time_on_a_device_whose_clock_is_off_by_hours(
    cloud: Cloud, skew_h: float
) -> None:
    """A token's ``exp`` is on the cloud's clock. Planned from it on a device two hours
    behind, a token looked good for two more hours: Realtime closed the channel when it
    expired, every token's life (the channel rejoined, a catch-up pull each time). Two hours
    ahead, every token looked expired: the provider was asked every 5 s. The session's own
    count of the token's life (``token_life``, on the device's clock) is used instead."""
    await cloud.stop()
    await cloud.start(jwt_expiry=5)
    await cloud.dc.create_user("alice@example.com", "correct horse 1", org="org-a")

    def device_clock() -> float:
        return time.time() + skew_h * 3600

    alice = Session(cloud, "alice@example.com", clock=device_clock)
    ws = await cloud.create_workspace("org-a", "alpha")
    rec = Recorder()
    options = {"clock": device_clock, "token_life": alice.life}
    async with connection(cloud, alice, rec, "device-a", **options) as rt:
        await rt.join_workspace(ws)
        await wait_for(lambda: bool(rec.of(PostgresSubscribed)), message="subscribed")
        await wait_for(lambda: len(alice.tokens) >= 4, timeout=15_000 * MS, message="3 renewals")
        assert time.time() > alice.expiry_of(1), "the channel outlived two tokens"
        assert rt.channel_state(ws) is ChannelState.JOINED
    assert rec.of(ChannelClosed) == [] and rec.of(ChannelError) == []
    assert len(rec.of(ChannelJoined)) == 1  # never had to rejoin
    assert len(alice.tokens) <= 8  # about one per token's life, not one every few seconds


#: a reconnect backoff far past wait_for's timeout: a reconnect in time is not the backoff's
MINUTE = {"backoff": Backoff(base_s=60.0, cap_s=60.0), "rand": lambda: 0.99}


async def test_a_request_that_reached_the_cloud_ends_the_reconnect_backoff(cloud: Cloud) -> None:
    """The daemon's sync reached the cloud again (``cloud_reachable``): realtime reconnects
    now, not after its backoff (up to 30 s in the daemon, ~59 s here)."""
    await cloud.dc.create_user("alice@example.com", "correct horse 1", org="org-a")
    alice = Session(cloud, "alice@example.com")
    ws = await cloud.create_workspace("org-a", "alpha")
    rec = Recorder()
    async with connection(cloud, alice, rec, "device-a", **MINUTE) as rt:
        await rt.join_workspace(ws)
        await wait_for(lambda: len(rec.of(PostgresSubscribed)) == 1, message="subscribed")
        await cloud.stop()
        await wait_for(lambda: bool(rec.of(ConnectionLost)), message="the loss noticed")
        await cloud.start()
        rt.cloud_reachable()
        await wait_for(lambda: len(rec.of(PostgresSubscribed)) == 2, message="resubscribed")
        row = await cloud.create_conversation(ws, "after the outage")
        await wait_for(lambda: has_change(rec, row), message="a live change again")


async def test_the_early_reconnect_is_once_per_outage(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    """While the realtime server stays down, only the first ``cloud_reachable`` ends a wait:
    realtime is asked no more often than its backoff says, plus once."""
    rec = Recorder()
    caplog.set_level(logging.INFO, logger="daemon.realtime.connection")
    async with connection(cloud, None, rec, "device-a", **MINUTE) as rt:
        await wait_for(lambda: bool(rec.of(ConnectionOpened)), message="connected")
        await cloud.stop()
        await wait_for(lambda: bool(rec.of(ConnectionLost)), message="the loss noticed")
        rt.cloud_reachable()  # still down: one early attempt, which fails
        await wait_for(
            lambda: caplog.text.count("realtime.connect.failed") == 1, message="an early attempt"
        )
        rt.cloud_reachable()  # spent for this outage
        assert not rt._reconnect_now.is_set()  # (the wait of ~59 s goes on)
        await cloud.start()  # (so the fixture's teardown finds it running)
