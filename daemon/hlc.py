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


# -- clock skew: a change the cloud refused for a clock too far ahead ---------------------------

#: Added to the moment the cloud should take a change refused for ``clock_skew``: the cloud's
#: clock is known to a second at best (an HTTP ``Date``), and a retry that comes too early is
#: refused again.
SKEW_MARGIN_MS = 1000
#: The least time between a ``clock_skew`` refusal and the retry of its row: a retry refused
#: again (the cloud's clock misjudged) waits longer each time (``skew_backoff_ms``), so it
#: never loops.
SKEW_RETRY_FLOOR_MS = 5000
#: The longest wait ``skew_backoff_ms`` gives a row refused again and again: a wall clock
#: that runs fast while the cloud's answers carry no ``Date`` cannot tell how long the cloud
#: needs, so the row is tried again every few minutes until it is taken (not every 5 s).
SKEW_RETRY_CAP_MS = 300_000


def skew_backoff_ms(attempt: int) -> int:
    """The least wait (ms) before retrying a row refused as ``clock_skew`` after ``attempt``
    refusals before this one (0: the first): ``SKEW_RETRY_FLOOR_MS``, doubled per attempt,
    at most ``SKEW_RETRY_CAP_MS``."""
    return min(SKEW_RETRY_CAP_MS, SKEW_RETRY_FLOOR_MS << min(max(attempt, 0), 16))


def skew_attempt(waited_ms: int) -> int:
    """The ``attempt`` of a row's next refusal, when its last one had it wait ``waited_ms``
    (that rejection's ``retry_at`` minus its filing): the first whose backoff is at least
    twice that wait (or the cap), so each refusal again waits at least twice as long as the
    one before it, whatever made that wait (the clocks, or the backoff)."""
    attempt = 1
    while attempt < 16 and skew_backoff_ms(attempt) < min(2 * waited_ms, SKEW_RETRY_CAP_MS):
        attempt += 1
    return attempt


def skew_retry_at(
    hlc: str, refused_ms: int, cloud_ms: int | None = None, *, attempt: int = 0
) -> int:
    """When (this device's wall time, ms) to send again a change of clock ``hlc`` that the
    cloud refused as ``clock_skew`` at ``refused_ms``: once the cloud's clock is no more than
    ``MAX_AHEAD_MS`` behind the change's. ``cloud_ms``: the cloud's time when it refused (its
    answer's ``Date``), else this device's wall time stands for it. Never sooner than
    ``skew_backoff_ms(attempt)`` after the refusal (``attempt``: the refusals of the row
    before this one, each sent again after its wait): a first refusal waits at least
    ``SKEW_RETRY_FLOOR_MS``, a row refused again twice as long as before, up to
    ``SKEW_RETRY_CAP_MS``; so a refusal the clocks do not explain (this device's wall clock
    runs fast and no ``Date`` tells the cloud's: its own clock says the cloud should have
    taken the change) is not retried every few seconds for ever. A malformed clock waits
    the backoff alone."""
    backoff = skew_backoff_ms(attempt)
    try:
        wall = decode(hlc).wall_ms
    except ClockError:
        return refused_ms + backoff
    cloud = refused_ms if cloud_ms is None else cloud_ms
    wait = wall - MAX_AHEAD_MS - cloud + SKEW_MARGIN_MS
    return refused_ms + max(wait, backoff)


def clock_ahead(clock_wall_ms: int, now_ms: int) -> tuple[int, int] | None:
    """How far (ms) a clock at ``clock_wall_ms`` runs ahead of the wall time ``now_ms``, and
    when (wall time, ms) its changes are no longer refused as ``clock_skew``, if it is more
    than ``MAX_AHEAD_MS`` ahead (the wall clock ran fast, then was set back: the clock never
    goes back, so every change made meanwhile carries a clock the cloud refuses); else None."""
    ahead = clock_wall_ms - now_ms
    if ahead <= MAX_AHEAD_MS:
        return None
    return ahead, clock_wall_ms - MAX_AHEAD_MS
