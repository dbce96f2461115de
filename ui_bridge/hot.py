"""Keeping the event loop awake for a moment after a reply.

A client that waits for each reply before it sends its next request (an editor sending one
message after another, a CLI walking a list page by page) sends that request a few hundred
microseconds after the reply left. With nothing else to do meanwhile the loop would sleep in
``epoll_wait``; waking it again costs more than the request's own work: the wake-up itself, and
on a small machine the client often ran on the same core meanwhile (the kernel places a woken
task beside its waker), so the request then runs with cold caches. Measured on the 2-core CI
machine (``message.send`` one after another, as ``bench/bridge.py``'s sequential write; 5 runs
each way): a round trip's p50 was 390-540 us with the loop sleeping and 220-360 us with it kept
awake, at 300-460 against 260-420 us of the daemon's CPU per request: waking up cost about as
much as the polling does (against ~80 us per write when 50 clients keep the loop busy).

So after each reply ``HotLoop.touch`` keeps the loop polling its sockets for ``spin_s`` more
seconds: a callback that queues itself again while the time is not up, so every loop turn
polls without a timeout instead of sleeping. The loop still serves everything else in between
(the callback is one more item per turn), and polling releases the GIL (uvloop and asyncio
both poll without it), so the store's threads run meanwhile. The cost is bounded: at most
``spin_s`` of one core after the last reply, nothing while no client is talking to the daemon.
``spin_s = 0`` turns it off (``bridge.spin_us``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["HotLoop"]


class HotLoop:
    """Keep ``loop`` polling (not sleeping) until ``spin_s`` after the latest ``touch``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        spin_s: float,
        clock: Callable[[], float] = time.perf_counter,  # uvloop's loop.time() counts in ms
    ) -> None:
        self._loop = loop
        self.spin_s = spin_s
        self._clock = clock
        self._until = 0.0
        self.spinning = False

    def touch(self) -> None:
        """Stay awake until ``spin_s`` from now (one spinning callback at a time)."""
        if self.spin_s <= 0:
            return
        self._until = self._clock() + self.spin_s
        if not self.spinning:
            self.spinning = True
            self._loop.call_soon(self._spin)

    def _spin(self) -> None:
        if self._clock() < self._until:
            self._loop.call_soon(self._spin)
        else:
            self.spinning = False
