"""A connection's outgoing queue: bounded, never blocking the publisher (see ``session``).

Everything a session sends that cannot go out at once waits here for the session's writer
task; a client that stops reading fills it up and is dropped (``on_overflow``), and a replay
waits for room instead of overflowing it.

Two bounds: frames (``limit``) and bytes (``byte_limit``). A frame pushed while the queue
already holds ``limit`` frames or at least ``byte_limit`` bytes overflows it, so the queue
holds at most ``byte_limit`` bytes plus one frame (a single large reply to an otherwise
empty queue always fits). The byte count is one integer add and compare per frame.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["Outbox"]


class Outbox:
    """A bounded queue of frames; ``push`` never blocks, overflow calls ``on_overflow`` once."""

    __slots__ = (
        "_emptied",
        "_loop",
        "_on_overflow",
        "_room",
        "_waiter",
        "byte_limit",
        "closed",
        "frames",
        "limit",
        "queued_bytes",
    )

    def __init__(self, limit: int, byte_limit: int, on_overflow: Callable[[], None]) -> None:
        self.frames: deque[bytes] = deque()
        self.limit = limit
        self.byte_limit = byte_limit
        self.queued_bytes = 0  # the sum of len(frame) over ``frames``
        self.closed = False
        self._on_overflow = on_overflow
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._emptied: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the first waiter's

    def _future(self) -> asyncio.Future[None]:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.create_future()

    def push(self, frame: bytes) -> bool:
        """Queue a frame; ``False`` if the outbox is closed or just overflowed."""
        if self.closed:
            return False
        if len(self.frames) >= self.limit or self.queued_bytes >= self.byte_limit:
            self.close()
            self._on_overflow()
            return False
        self.frames.append(frame)
        self.queued_bytes += len(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def take(self, max_frames: int, max_bytes: int) -> list[bytes]:
        """Remove and return the oldest frames for the writer: at most ``max_frames``, and
        none after the one that brings the total to ``max_bytes`` (at least one if any)."""
        frames, size = self.frames, 0
        batch: list[bytes] = []
        while frames and size < max_bytes and len(batch) < max_frames:
            frame = frames.popleft()
            size += len(frame)
            batch.append(frame)
        self.queued_bytes -= size
        return batch

    def close(self) -> None:
        """Drop queued frames and wake everyone up."""
        self.closed = True
        self.frames.clear()
        self.queued_bytes = 0
        for fut in (self._waiter, self._room, self._emptied):
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def wait_for_frames(self) -> None:
        """Until a frame is queued or the outbox is closed."""
        if self.frames or self.closed:
            return
        self._waiter = self._future()
        await self._waiter
        self._waiter = None

    def is_half_full(self) -> bool:
        """More than half of either bound is used."""
        return len(self.frames) > self.limit // 2 or self.queued_bytes > self.byte_limit // 2

    def fits(self, frames: int, nbytes: int) -> bool:
        """``frames`` frames of ``nbytes`` bytes in all can be pushed at once without
        overflowing (what a subscription turning live flushes)."""
        return (
            len(self.frames) + frames <= self.limit
            and self.queued_bytes + nbytes <= self.byte_limit
        )

    async def wait_for_room(self) -> None:
        """Until the queue is at most half full by frames and by bytes (replay uses this to
        avoid overflowing: after it, one more frame of any size fits)."""
        while not self.closed and self.is_half_full():
            self._room = self._future()
            await self._room
            self._room = None

    async def wait_until_empty(self) -> None:
        """Until every queued frame was taken by the writer (or the outbox is closed)."""
        while self.frames and not self.closed:
            self._emptied = self._future()
            await self._emptied
            self._emptied = None

    def is_idle(self) -> bool:
        """Nothing queued and the writer is waiting for frames."""
        return not self.frames and self._waiter is not None and not self.closed

    def taken(self) -> None:
        """The writer took frames: wake a waiting replay if there is room again."""
        room = self._room
        if room is not None and not room.done() and not self.is_half_full():
            room.set_result(None)
        emptied = self._emptied
        if emptied is not None and not emptied.done() and not self.frames:
            emptied.set_result(None)
