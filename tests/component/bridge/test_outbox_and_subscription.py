"""The in-memory parts of fan-out: a subscription's dedupe/ordering and the bounded outbox."""

from __future__ import annotations

import asyncio

import orjson

from daemon.events import ChangeEvent
from tests.helpers import MS, wait_for
from ui_bridge.hub import Subscription, encode_event_tail
from ui_bridge.session import Outbox
from ui_bridge.topics import TopicFilter


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def push(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    async def wait_for_room(self) -> None:
        return None

    def fits(self, frames: int, nbytes: int) -> bool:
        return True

    def seqs(self) -> list[int]:
        return [orjson.loads(f)["params"]["seq"] for f in self.frames]


def tail(seq: int, topic: str = "message.created") -> bytes:
    return encode_event_tail(ChangeEvent(seq, topic, {"n": seq}))


def test_notification_bytes_are_a_valid_event() -> None:
    sink = RecordingSink()
    sub = Subscription("s1", TopicFilter(["**"]), sink, 0)
    sub.go_live(0)
    sub.deliver(1, tail(1))
    assert orjson.loads(sink.frames[0]) == {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"subscription": "s1", "seq": 1, "topic": "message.created", "data": {"n": 1}},
    }


def test_catching_up_buffers_then_flushes_without_duplicates() -> None:
    sink = RecordingSink()
    sub = Subscription("s", TopicFilter(["**"]), sink, 0)
    for seq in (4, 5, 6):  # live events while the changelog is being read
        sub.deliver(seq, tail(seq))
    assert sink.frames == []
    sub.go_live(5)  # the replay got up to 5 from the changelog
    sub.deliver(6, tail(6))  # a duplicate of a buffered one
    sub.deliver(7, tail(7))
    assert sink.seqs() == [6, 7]


def test_live_delivery_ignores_old_seqs() -> None:
    sink = RecordingSink()
    sub = Subscription("s", TopicFilter(["**"]), sink, 10)
    sub.go_live(10)
    for seq in (9, 10, 11, 11, 12):
        sub.deliver(seq, tail(seq))
    assert sink.seqs() == [11, 12]


async def test_outbox_overflow_closes_once_and_drops_frames() -> None:
    overflows: list[int] = []
    outbox = Outbox(3, 1 << 20, lambda: overflows.append(1))
    assert all(outbox.push(b"x") for _ in range(3))
    assert not outbox.push(b"y")
    assert not outbox.push(b"z")
    assert overflows == [1] and outbox.closed and not outbox.frames


async def test_outbox_wakes_writer_and_waiting_replay() -> None:
    outbox = Outbox(4, 1 << 20, lambda: None)
    waiter = asyncio.create_task(outbox.wait_for_frames())
    await wait_for(outbox.is_idle, message="writer idle")
    outbox.push(b"a")
    await asyncio.wait_for(waiter, 1_000 * MS)
    for frame in (b"b", b"c"):
        outbox.push(frame)
    room = asyncio.create_task(outbox.wait_for_room())
    await wait_for(lambda: outbox._room is not None, message="replay waiting for room")
    assert not room.done()  # 3 queued > half of 4
    outbox.frames.popleft()
    outbox.taken()
    await asyncio.wait_for(room, 1_000 * MS)


async def test_outbox_byte_bound_overflows_once_that_much_waits() -> None:
    """A frame pushed while ``byte_limit`` bytes wait overflows the outbox (the frame bound is
    far away): a stalled client pins at most the byte bound plus one frame."""
    overflows: list[int] = []
    outbox = Outbox(16384, 1000, lambda: overflows.append(1))
    assert outbox.push(b"x" * 5000)  # one frame larger than the bound fits an empty queue
    assert not outbox.push(b"y")
    assert overflows == [1] and outbox.closed and outbox.queued_bytes == 0
    outbox = Outbox(16384, 1000, lambda: overflows.append(2))
    assert all(outbox.push(b"z" * 300) for _ in range(4))  # 1200 bytes: past the bound
    assert outbox.queued_bytes == 1200
    assert not outbox.push(b"z")
    assert overflows == [1, 2]


async def test_outbox_take_counts_bytes_and_replay_waits_for_byte_room() -> None:
    outbox = Outbox(16384, 1000, lambda: None)
    for _ in range(3):
        outbox.push(b"a" * 300)
    assert outbox.is_half_full()  # 900 > 500 bytes, though 3 frames are far from 8192
    room = asyncio.create_task(outbox.wait_for_room())
    await wait_for(lambda: outbox._room is not None, message="replay waiting for room")
    assert outbox.take(256, 400) == [b"a" * 300, b"a" * 300]  # stops once 400 are reached
    assert outbox.queued_bytes == 300 and len(outbox.frames) == 1
    outbox.taken()
    await asyncio.wait_for(room, 1_000 * MS)
    assert outbox.fits(1, 700) and not outbox.fits(1, 701)
