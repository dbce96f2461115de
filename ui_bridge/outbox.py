"""A connection's outgoing queue: bounded, never blocking the publisher (see ``session``).

Everything a session sends that cannot go out at once waits here for the session's writer
task; a client that stops reading fills it up and is dropped (``on_overflow``), and a replay
waits for room instead of overflowing it.
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
        "closed",
        "frames",
        "limit",
    )

    def __init__(self, limit: int, on_overflow: Callable[[], None]) -> None:
        self.frames: deque[bytes] = deque()
        self.limit = limit
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
        if len(self.frames) >= self.limit:
            self.close()
            self._on_overflow()
            return False
        self.frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def close(self) -> None:
        """Drop queued frames and wake everyone up."""
        self.closed = True
        self.frames.clear()
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

    async def wait_for_room(self) -> None:
        """Until the queue is at most half full (replay uses this to avoid overflowing)."""
        while not self.closed and len(self.frames) > self.limit // 2:
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
        if room is not None and not room.done() and len(self.frames) <= self.limit // 2:
            room.set_result(None)
        emptied = self._emptied
        if emptied is not None and not emptied.done() and not self.frames:
            emptied.set_result(None)
