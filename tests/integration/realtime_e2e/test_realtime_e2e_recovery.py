"""Realtime recovery end to end: a 60 s cloud outage, and access tokens that expire every 30 s.

Realtime is a hint, never the truth: after the outage B resubscribes and its catch-up pull brings
every row it was not told about (A's backlog, and rows written straight into the cloud's
database while B was disconnected). With 30 s tokens the daemons hand each channel a fresh
token before it expires, so channels stay joined and every change keeps arriving in seconds."""

from __future__ import annotations

import time
from collections import Counter

from rt_e2e_kit import (
    Lab,
    insert_message_in_cloud,
    linked_pair,
    message_ids,
    realtime,
    wait_subscribed,
)

from tests.helpers import MS, wait_for
from tests.integration.sync.sync_kit import DaemonProcess

OUTAGE_S = 60.0
SOAK_S = 180.0
WRITE_EVERY_S = 3.0
REALTIME_WITHIN_S = 5.0


async def test_after_a_60_s_outage_b_resubscribes_and_misses_no_row(lab: Lab) -> None:
    cloud = await lab.start_cloud()
    a, b, ws_id, conv_id = await linked_pair(lab, cloud)
    first = await a.send(conv_id, "before the outage")
    await wait_for(lambda: has(b, conv_id, {first["id"]}), timeout=5_000 * MS)

    await cloud.stop()
    down_at = time.monotonic()
    from_a = [(await a.send(conv_id, f"written on A while down {i}"))["id"] for i in range(5)]
    direct = [
        await insert_message_in_cloud(cloud, ws_id, conv_id, f"written in the cloud {i}")
        for i in range(3)
    ]

    async def outage_over() -> bool:
        # Asserted all along: both daemons keep running and B shows none of it yet.
        assert a.running and b.running, "a daemon died during the outage"
        assert not (await message_ids(b, conv_id)) & {*from_a, *direct}
        return time.monotonic() - down_at >= OUTAGE_S

    await wait_for(
        outage_over, timeout=(OUTAGE_S + 15) * 1000 * MS, interval=1_000 * MS, message="60 s"
    )
    assert not (await realtime(b))["connected"], "B did not notice the outage"

    await cloud.start()  # the same cloud on the same port; nobody tells the daemons
    await wait_subscribed(b, ws_id, within=45_000 * MS)
    expected = {first["id"], *from_a, *direct}
    await wait_for(lambda: has(b, conv_id, expected), timeout=45_000 * MS, message="every row on B")
    await wait_for(lambda: has(a, conv_id, expected), timeout=30_000 * MS, message="on A")
    on_b = [m["id"] for m in await b.messages(conv_id)]
    assert len(on_b) == len(set(on_b)) == len(expected)  # nothing missed, nothing twice


async def test_channels_stay_joined_with_tokens_expiring_every_30_s(lab: Lab) -> None:
    cloud = await lab.start_cloud(jwt_expiry=30)
    a, b, ws_id, conv_id = await linked_pair(lab, cloud)
    ui = await lab.ui(b)
    sub = await ui.subscribe(["message.created"])
    issued = await cloud.fetchval("SELECT coalesce(max(id), 0) FROM auth.refresh_tokens")
    written: dict[str, float] = {}
    started = time.monotonic()
    next_write = started

    async def keep_going() -> bool:
        """Write a message every few seconds; assert all along that both daemons stay
        subscribed and that every message older than a few seconds reached B's UI."""
        nonlocal next_write
        now = time.monotonic()
        for daemon in (a, b):
            state = await realtime(daemon)
            assert state["connected"] and ws_id in state["subscribed"], (daemon.name, state)
        arrived = {e.data["id"] for e in ui.of("message.created", sub)}
        late = [i for i, at in written.items() if i not in arrived and now - at > 10.0]
        assert not late, f"{len(late)} messages missed by realtime"
        if now >= next_write and now - started < SOAK_S:
            written[(await a.send(conv_id, f"tick {len(written)}"))["id"]] = time.monotonic()
            next_write += WRITE_EVERY_S
        return now - started >= SOAK_S

    await wait_for(
        keep_going, timeout=(SOAK_S + 30) * 1000 * MS, interval=250 * MS, message="3 minutes"
    )
    await wait_for(
        lambda: set(written) <= {e.data["id"] for e in ui.of("message.created", sub)},
        timeout=10_000 * MS,
        message="the last messages",
    )
    events = ui.of("message.created", sub)
    counts = Counter(e.data["id"] for e in events)
    assert set(counts) == set(written) and max(counts.values()) == 1
    latencies = sorted(e.at - written[e.data["id"]] for e in events)
    assert latencies[-1] < REALTIME_WITHIN_S, latencies[-5:]
    assert len(written) >= SOAK_S / WRITE_EVERY_S - 1
    # The tokens really expired and were renewed meanwhile; no channel was shut for it.
    renewed = "SELECT count(*) FROM auth.refresh_tokens WHERE id > $1"
    assert await cloud.fetchval(renewed, issued) >= 2 * SOAK_S / 30 - 2
    assert "token_expired" not in cloud.log_text()


async def has(daemon: DaemonProcess, conv_id: str, ids: set[str]) -> bool:
    return ids <= await message_ids(daemon, conv_id)
