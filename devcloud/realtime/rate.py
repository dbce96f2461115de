"""Realtime's project message rate (``max_events_per_second``), as Supabase enforces it (pure).

Realtime counts, per project, every broadcast a client sends and every message it delivers to a
channel (broadcast_handler.ex ``increment_rate_counter``, realtime_channel.ex
``:update_rate_counter``). A RateCounter (rate_counter.ex; tenants.ex
``events_per_second_rate``) closes a bucket every 5 s and keeps the last 12: the average is the
buckets' sum over their time, so over the last minute (or since the counter started). Once the
average reaches the limit (100 by default, ``TENANT_MAX_EVENTS_PER_SECOND``) the limit is
triggered until it drops below again; meanwhile every channel that is delivered a message is shut
(``system`` error "Too many messages per second", then ``phx_close``). devcloud counts broadcasts
only: Realtime counts postgres_changes apart (``db_events_per_second``; over it the changes are
dropped, no channel is shut), which devcloud does not limit.
A counter whose buckets are all empty starts afresh (Realtime stops it after 5 idle minutes and
starts a new one; devcloud at once).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_EVENTS_PER_SECOND", "RATE_LIMITED", "MessageRate"]

MAX_EVENTS_PER_SECOND: Final = 100
TICK_S: Final = 5.0
MAX_BUCKETS: Final = 12
RATE_LIMITED: Final = "Too many messages per second"


class MessageRate:
    """The project's message counter; time (seconds, monotonic) is passed in."""

    def __init__(
        self,
        limit: float = MAX_EVENTS_PER_SECOND,
        *,
        tick_s: float = TICK_S,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.limit = limit
        self.tick_s = tick_s
        self.max_buckets = max_buckets
        self._count = 0  # messages in the open bucket
        self._buckets: list[int] = []  # closed buckets, newest first
        self._next_tick: float | None = None
        self.triggered = False
        self.average = 0.0

    def add(self, now: float, count: int = 1) -> None:
        """Count ``count`` messages at ``now``."""
        self._advance(now)
        self._count += count

    def is_triggered(self, now: float) -> bool:
        """Whether the limit holds at ``now`` (decided at each bucket's close, as Realtime)."""
        self._advance(now)
        return self.triggered

    def _advance(self, now: float) -> None:
        if self._next_tick is None:
            self._next_tick = now + self.tick_s
        if now < self._next_tick:
            return
        ticks = int((now - self._next_tick) // self.tick_s) + 1
        for _ in range(min(ticks, self.max_buckets + 1)):  # more would only add empty buckets
            self._close_bucket()
        self._next_tick += ticks * self.tick_s
        if not any(self._buckets):  # idle: a fresh counter from the next message on
            self._buckets, self._next_tick = [], now + self.tick_s

    def _close_bucket(self) -> None:
        self._buckets = [self._count, *self._buckets][: self.max_buckets]
        self._count = 0
        self.average = sum(self._buckets) / len(self._buckets) / self.tick_s
        self.triggered = self.average >= self.limit
