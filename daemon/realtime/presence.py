"""Presence (pure): who is online in a workspace channel, and coalesced track updates.

Theory of operation
-------------------
Every device tracks one presence per workspace channel under its device id (the channel's
presence key). Its meta is what ``track_payload`` builds::

    {"user_id", "display_name", "device_id", "status", "active_file", "cursor",
     "since", "active_at"}        # since/active_at: ISO 8601 UTC, e.g. "2026-08-21T12:00:00.000Z"

``PresenceRoster`` folds the server's ``presence_state`` (the whole state, sent after every join:
it replaces what was known) and ``presence_diff`` (joins, then leaves, matched by ``phx_ref``,
the way Phoenix.Presence syncs) into one ``Member`` per presence key. A device whose last meta
leaves disappears. An update arrives as a join of the new meta plus a leave of the old one. When
a key holds several metas (the same device joined twice), the latest one describes it.

A member that says ``active`` but whose ``active_at`` (else ``since``) is ``idle_after_s`` (5 min)
or more before ``now`` is shown as ``away``: idleness is judged by the reader with its own clock
(``now``: Unix seconds), so an idle device needs no presence traffic to go away.

``TrackCoalescer`` keeps track updates within Realtime's presence rate limits: per key (device or
channel) at most one track per ``interval_s`` (1 s), and at most ``budget`` (4) in any
``window_s`` (30 s). Supabase Realtime counts the presence messages of each channel join in
windows of 30 s and closes the channel at the 6th of a window ("Client presence rate limit
exceeded", then ``phx_close``: no changes, no presence, no broadcasts until the rejoin); one
under its 5 leaves room for a track that is delayed on the way. A value offered too early is
held and replaced by later ones (latest wins) until ``take_due(now)`` releases it; re-offering
what was last sent sends nothing. ``resend(key)`` re-queues the last value after the server
forgot it (every rejoin: a closed socket untracks); the new join counts afresh. A value
released while its channel was not joined (the push was refused) is handed back with
``unsent(key)``: it is held, not due, until the next ``resend`` (the join), and it used none
of the interval or the budget, so the first track of a fresh join goes out with the join
instead of a second later.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from daemon.errors import InvalidInput

__all__ = [
    "IDLE_AFTER_S",
    "STATUSES",
    "Member",
    "PresenceRoster",
    "TrackCoalescer",
    "format_time",
    "member_of",
    "track_payload",
]

IDLE_AFTER_S: Final = 300.0
TRACK_INTERVAL_S: Final = 1.0
#: At most this many tracks per channel join in any TRACK_WINDOW_S (Realtime allows 5 per 30 s).
TRACK_BUDGET: Final = 4
TRACK_WINDOW_S: Final = 30.0
STATUSES: Final = ("active", "away", "busy")

Metas = Mapping[str, tuple[Mapping[str, Any], ...]]
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Member:
    """One online device as others see it; ``status`` already accounts for idleness."""

    key: str  # the presence key: the device id
    user_id: str | None
    display_name: str | None
    device_id: str
    status: str  # active | away | busy
    active_file: str | None
    cursor: Any
    since: str | None  # ISO 8601: online since
    active_at: str | None  # ISO 8601: last input on that device


def format_time(unix_s: float) -> str:
    """``unix_s`` as ISO 8601 UTC with milliseconds and a ``Z``."""
    stamp = datetime.fromtimestamp(unix_s, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 string (naive means UTC); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def track_payload(
    *,
    device_id: str,
    user_id: str | None,
    display_name: str | None,
    since: float,
    active_at: float,
    status: str = "active",
    active_file: str | None = None,
    cursor: Any = None,
) -> dict[str, Any]:
    """The presence meta this device tracks (times in Unix seconds). Raises InvalidInput."""
    if not isinstance(device_id, str) or not device_id.strip():
        raise InvalidInput("device_id", "must be a non-empty string")
    if status not in STATUSES:
        raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
    if active_file is not None and not isinstance(active_file, str):
        raise InvalidInput("active_file", "must be a string or null")
    for name, value in (("since", since), ("active_at", active_at)):
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise InvalidInput(name, "must be a Unix time in seconds")
    return {
        "user_id": user_id,
        "display_name": display_name,
        "device_id": device_id,
        "status": status,
        "active_file": active_file,
        "cursor": cursor,
        "since": format_time(since),
        "active_at": format_time(active_at),
    }


class PresenceRoster:
    """The members of one channel, folded from presence_state and presence_diff."""

    def __init__(self, *, idle_after_s: float = IDLE_AFTER_S) -> None:
        self.idle_after_s = idle_after_s
        # key -> phx_ref (or a stand-in for metas without one) -> meta, in join order
        self._keys: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._anonymous = 0

    def apply_state(self, state: Metas) -> None:
        """A full ``presence_state``: it replaces everything known."""
        self._keys = {}
        self.apply_diff(state, {})

    def apply_diff(self, joins: Metas, leaves: Metas) -> None:
        """A ``presence_diff``: joins are added, then leaves removed (by ``phx_ref``)."""
        for key, metas in joins.items():
            if not metas:
                continue
            entries = self._keys.setdefault(key, {})
            for meta in metas:
                ref = meta.get("phx_ref")
                if not isinstance(ref, str):
                    ref = self._stand_in()
                entries.pop(ref, None)  # a meta sent again is the latest one
                entries[ref] = meta
        for key, metas in leaves.items():
            entries = self._keys.get(key, {})
            for meta in metas:
                ref = meta.get("phx_ref")
                if isinstance(ref, str):
                    entries.pop(ref, None)
            if not entries:
                self._keys.pop(key, None)

    def clear(self) -> None:
        self._keys = {}

    def __len__(self) -> int:
        return len(self._keys)

    def members(self, now: float) -> list[Member]:
        """Every online device at ``now`` (Unix seconds), ordered by presence key."""
        return [self._member(key, now) for key in sorted(self._keys)]

    def next_change(self, now: float) -> float | None:
        """The next time (after ``now``) an active member turns away, if any."""
        times: list[float] = []
        for key in self._keys:
            meta = self._latest(key)
            last = self._last_active(meta)
            if last is None or meta.get("status") in ("away", "busy"):
                continue
            if last + self.idle_after_s > now:
                times.append(last + self.idle_after_s)
        return min(times, default=None)

    def _stand_in(self) -> str:
        self._anonymous += 1
        return f"#{self._anonymous}"

    def _latest(self, key: str) -> Mapping[str, Any]:
        return next(reversed(self._keys[key].values()))

    def _last_active(self, meta: Mapping[str, Any]) -> float | None:
        last = parse_time(meta.get("active_at"))
        return last if last is not None else parse_time(meta.get("since"))

    def _member(self, key: str, now: float) -> Member:
        return member_of(key, self._latest(key), now, self.idle_after_s)


def member_of(
    key: str, meta: Mapping[str, Any], now: float, idle_after_s: float = IDLE_AFTER_S
) -> Member:
    """The member a presence ``meta`` (``track_payload``'s shape) under ``key`` describes at
    ``now``: ``active`` turns ``away`` after ``idle_after_s`` without input."""
    status = _text(meta.get("status"))
    if status not in STATUSES:
        status = "active"
    last = parse_time(meta.get("active_at"))
    if last is None:
        last = parse_time(meta.get("since"))
    if status == "active" and last is not None and now - last >= idle_after_s:
        status = "away"
    return Member(
        key=key,
        user_id=_text(meta.get("user_id")),
        display_name=_text(meta.get("display_name")),
        device_id=_text(meta.get("device_id")) or key,
        status=status,
        active_file=_text(meta.get("active_file")),
        cursor=meta.get("cursor"),
        since=_text(meta.get("since")),
        active_at=_text(meta.get("active_at")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class _Track:
    sent_at: float | None = None
    sent: Mapping[str, Any] | None = None
    pending: Mapping[str, Any] | None = None
    before: tuple[float | None, Mapping[str, Any] | None] = (None, None)  # undone by unsent
    awaiting_join: bool = False  # held by unsent: not due before the next resend
    recent: deque[float] = field(default_factory=deque)  # send times in the window, this join


class TrackCoalescer(Generic[K]):
    """At most one track per ``interval_s`` and ``budget`` per ``window_s`` per key; the
    latest value wins."""

    def __init__(
        self,
        interval_s: float = TRACK_INTERVAL_S,
        *,
        budget: int = TRACK_BUDGET,
        window_s: float = TRACK_WINDOW_S,
    ) -> None:
        if interval_s <= 0 or window_s <= 0:
            raise ValueError("interval_s and window_s must be positive")
        if budget < 1:
            raise ValueError("budget must be at least 1")
        self.interval_s = interval_s
        self.budget = budget
        self.window_s = window_s
        self._tracks: dict[K, _Track] = {}

    def offer(self, key: K, payload: Mapping[str, Any], now: float) -> Mapping[str, Any] | None:
        """The payload to send now, or None: held until ``take_due``, or nothing changed."""
        track = self._tracks.setdefault(key, _Track())
        if track.awaiting_join:
            track.pending = payload
            return None
        if payload == track.sent:
            track.pending = None  # back to what the server has: nothing to send
            return None
        if now < self._free_at(track):
            track.pending = payload
            return None
        return self._mark_sent(track, payload, now)

    def take_due(self, now: float) -> list[tuple[K, Mapping[str, Any]]]:
        """Held payloads whose key may send again at ``now``."""
        due: list[tuple[K, Mapping[str, Any]]] = []
        for key, track in self._tracks.items():
            if (
                track.pending is not None
                and not track.awaiting_join
                and now >= self._free_at(track)
            ):
                due.append((key, self._mark_sent(track, track.pending, now)))
        return due

    def next_due(self) -> float | None:
        """When ``take_due`` has something to release next (None: nothing is held)."""
        times = [
            self._free_at(track)
            for track in self._tracks.values()
            if track.pending is not None and not track.awaiting_join
        ]
        return min(times, default=None)

    def resend(self, key: K) -> None:
        """The server lost ``key``'s track (a rejoin): queue the last value again."""
        track = self._tracks.get(key)
        if track is None:
            return
        if track.pending is None and track.sent is not None:
            track.pending = track.sent
        track.sent, track.awaiting_join = None, False
        track.recent.clear()  # a new channel join: the server counts its tracks afresh

    def unsent(self, key: K) -> None:
        """The value just released for ``key`` was not sent (its channel is not joined): hold
        it until the next ``resend``, as if it had never been released."""
        track = self._tracks.get(key)
        if track is None or track.sent is None:
            return
        if track.pending is None:
            track.pending = track.sent
        track.sent_at, track.sent = track.before
        if track.recent:
            track.recent.pop()  # it used none of the budget either
        track.awaiting_join = True

    def discard(self, key: K) -> None:
        """Forget ``key`` (its channel was left)."""
        self._tracks.pop(key, None)

    def _free_at(self, track: _Track) -> float:
        """When ``track`` may send next: ``interval_s`` after its last track, and once the
        oldest of its last ``budget`` tracks is ``window_s`` old."""
        at = 0.0 if track.sent_at is None else track.sent_at + self.interval_s
        if len(track.recent) >= self.budget:
            at = max(at, track.recent[-self.budget] + self.window_s)
        return at

    def _mark_sent(
        self, track: _Track, payload: Mapping[str, Any], now: float
    ) -> Mapping[str, Any]:
        track.before = (track.sent_at, track.sent)
        track.sent_at, track.sent, track.pending = now, payload, None
        while track.recent and track.recent[0] <= now - self.window_s:
            track.recent.popleft()
        track.recent.append(now)
        return payload
