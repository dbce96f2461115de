"""The outgoing queue's byte bound (``bridge.send_queue_bytes``) over real WebSockets: a client
that stops reading while large events are written is dropped once that many bytes wait for it
(audit: 256 KiB messages pinned 770 MB behind the 16384-frame bound), while replay, which waits
for room, delivers large events to a client that reads, however many there are."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.helpers import MS, wait_for

from .conftest import MakeBridge, Rpc
from .test_events import conversation, send, stalled_subscriber

BOUND = 2 << 20
BIG = "x" * (256 << 10)


async def test_a_client_that_stops_reading_is_dropped_past_the_byte_bound(
    make_bridge: MakeBridge, open_rpc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_bridge(send_queue_bytes=BOUND)  # the frame bound stays 16384
    readers: list[Rpc] = [await open_rpc(server) for _ in range(2)]
    writer: Rpc = await open_rpc(server)
    conv_id = await conversation(writer)
    slow = await stalled_subscriber(server)
    (stalled,) = [s for s in server.sessions if s.subscriptions]
    for r in readers:
        await r.call("subscribe", {"topics": ["message.*"]})
    received = [0] * len(readers)

    async def drain(i: int, r: Rpc) -> None:
        while True:
            await r.next_event()
            received[i] += 1

    drainers = [asyncio.create_task(drain(i, r)) for i, r in enumerate(readers)]
    caplog.set_level(logging.WARNING, logger="ui_bridge.session")
    try:
        sent, peak = 0, 0
        while not stalled.outbox.closed:
            # 100 x 256 KiB = 25 MB: far more than the bound plus every socket buffer, and
            # far fewer frames than the frame bound (the only one before)
            assert sent < 100, "the stalled client was never dropped"
            await send(writer, conv_id, BIG)
            sent += 1
            peak = max(peak, stalled.outbox.queued_bytes)
        # at most the bound plus one frame ever waited for it
        assert BOUND // 2 < peak <= BOUND + len(BIG) + 1024
        await wait_for(lambda: stalled not in server.sessions, message="dropped")
        await wait_for(lambda: all(n == sent for n in received), message="readers caught up")
        await send(writer, conv_id, "after the drop")
        await wait_for(lambda: all(n == sent + 1 for n in received), message="live after drop")
    finally:
        for task in drainers:
            task.cancel()
        slow.transport.abort()  # it never reads, so a polite close would wait for nothing
    assert f"conn.dropped conn={stalled.id} reason=outgoing-queue-full" in caplog.text


async def test_replay_of_large_events_paces_itself_under_the_byte_bound(
    make_bridge: MakeBridge, open_rpc: Any
) -> None:
    """40 events of 256 KiB (10 MB, five times the bound) replayed to a client that reads,
    while 10 more are written live: all arrive in order, none twice, and it is not dropped."""
    server = await make_bridge(send_queue_bytes=BOUND)
    writer: Rpc = await open_rpc(server)
    conv_id = await conversation(writer)
    first = await send(writer, conv_id, BIG)
    for _ in range(39):
        await send(writer, conv_id, BIG)
    reader: Rpc = await open_rpc(server)
    since = (await reader.call("daemon.status"))["seq"] - 40
    await reader.call("subscribe", {"topics": ["message.*"], "since": since})

    async def write_live() -> None:
        for _ in range(10):
            await send(writer, conv_id, BIG)

    live = asyncio.create_task(write_live())
    events = [await reader.next_event() for _ in range(50)]
    await asyncio.wait_for(live, 10_000 * MS)
    assert [e["seq"] for e in events] == list(range(since + 1, since + 51))
    assert events[0]["data"]["id"] == first["id"]
    assert all(e["data"]["content"] == BIG for e in events)
    status = await reader.call("daemon.status")
    assert status["subscriptions"] == 1
