"""Hybrid logical clock (pure: the wall time is always passed in).

Theory of operation
-------------------
A clock value is ``(wall_ms, counter, device_id)``, totally ordered in that order. On a local
event the wall part becomes ``max(last.wall_ms, now_ms)``; the counter goes up by one if the wall
part did not move and restarts at 0 if it did. On seeing a remote clock the same rule is applied
to ``max(last, remote)``, so that the next local value is greater than everything seen. A wall
clock that goes backwards therefore never makes the clock go backwards: the counter keeps
counting on the last wall time until the wall clock catches up.

Values are encoded as fixed-width strings that sort (byte order) exactly like the tuple::

    f"{wall_ms:013d}-{counter:06d}-{device_id}"

Other components compare these strings directly; keep the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COUNTER = 999_999
MAX_WALL_MS = 9_999_999_999_999
#: How far ahead of this device's wall time another clock may be: the cloud refuses a write
#: whose clock is more than an hour ahead of its own (``clock_skew``, cloud migration 0005).
MAX_AHEAD_MS = 3_600_000
_PATTERN = re.compile(r"^(\d{13})-(\d{6})-([A-Za-z0-9_.:-]+)$")


class ClockError(ValueError):
    """A clock string is malformed, or the counter would overflow its six digits."""


@dataclass(frozen=True, order=True, slots=True)
class Timestamp:
    """One clock value; ordering of instances equals ordering of their encodings."""

    wall_ms: int
    counter: int
    device_id: str

    def encode(self) -> str:
        return encode(self.wall_ms, self.counter, self.device_id)


def encode(wall_ms: int, counter: int, device_id: str) -> str:
    """Encode a clock tuple as its sortable string."""
    return f"{wall_ms:013d}-{counter:06d}-{device_id}"


def decode(value: str) -> Timestamp:
    """Parse an encoded clock; raise ClockError when it is not one."""
    match = _PATTERN.match(value)
    if match is None:
        raise ClockError(f"not a clock: {value!r}")
    return Timestamp(int(match.group(1)), int(match.group(2)), match.group(3))


def is_valid_device_id(device_id: str) -> bool:
    """A device id must not contain characters that would break the encoding's order."""
    return bool(device_id) and _PATTERN.match(encode(0, 0, device_id)) is not None


class Clock:
    """The clock of one device. Not thread-safe: one owner (the store's writer) ticks it."""

    def __init__(self, device_id: str, *, last: str | None = None) -> None:
        if not is_valid_device_id(device_id):
            raise ClockError(f"bad device id: {device_id!r}")
        self.device_id = device_id
        self._wall_ms = 0
        self._counter = 0
        if last is not None:
            stamp = decode(last)
            self._wall_ms, self._counter = stamp.wall_ms, stamp.counter

    @property
    def last(self) -> str:
        """The last value handed out (or seen), as a string."""
        return encode(self._wall_ms, self._counter, self.device_id)

    @property
    def wall_ms(self) -> int:
        """The wall part of ``last`` (cheaper than decoding it)."""
        return self._wall_ms

    def now(self, now_ms: int) -> str:
        """The clock of a local event happening at wall time ``now_ms``."""
        self._advance(self._wall_ms, self._counter, now_ms)
        return encode(self._wall_ms, self._counter, self.device_id)

    def receive(self, remote: str, now_ms: int) -> str:
        """Merge a remote clock seen at ``now_ms``; return the new local clock value."""
        stamp = decode(remote)
        wall, counter = self._wall_ms, self._counter
        if (stamp.wall_ms, stamp.counter) > (wall, counter):
            wall, counter = stamp.wall_ms, stamp.counter
        self._advance(wall, counter, now_ms)
        return encode(self._wall_ms, self._counter, self.device_id)

    def _advance(self, wall: int, counter: int, now_ms: int) -> None:
        if now_ms > wall:
            if now_ms > MAX_WALL_MS:
                raise ClockError(f"wall time out of range: {now_ms}")
            self._wall_ms, self._counter = now_ms, 0
            return
        if counter >= MAX_COUNTER:
            # Overflowing six digits would break the sort order; move the wall part instead.
            self._wall_ms, self._counter = wall + 1, 0
            return
        self._wall_ms, self._counter = wall, counter + 1
