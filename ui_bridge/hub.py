"""Event fan-out: store commits → matching subscriptions, in seq order, no gap, no duplicate.

The store calls ``EventHub.on_commit`` on the event loop right after each commit, in seq order.
Each event is serialised once; every matching subscription gets the shared bytes behind its own
prefix, pushed onto its session's bounded outbox without awaiting anything (a slow client's full
outbox drops that client, never the publisher).

Replay (``subscribe`` with ``since``): the subscription starts *catching up*: live events are
kept in ``pending`` while pages are read from the durable changelog. When a read comes back
empty, every event after the cursor that was committed since is in ``pending`` (the listener ran
for it); they are flushed, deduplicated by seq, and the subscription turns live in the same step
(no await in between). If ``pending`` grows too large (``PENDING_LIMIT`` events, or more bytes
than the outbox has room for) it is dropped and the loop reads again, waiting for room.

Retained events (``subscribe`` without ``since``): the status topics (``RETAINED_TOPICS``:
``cloud.status``, ``sync.status``, ``daemon.status``) carry snapshots, so only the latest
matters. As it fans events out, the hub keeps the latest event of each in memory, like a
broker's retained message; nothing is read from the changelog. A subscription that matches one
of them is registered *held* (``add_live``): its live events wait in ``pending`` while its
reply is sent. (So is
every subscribe of a request: in a batch, the reply waits for the other calls, whose events
must not come before the reply that names the subscription.) Then, in
one step, ``send_retained`` sends it those events (the changelog events as they are, with their
own seq and data), then what ``pending`` holds after the reply's ``seq``, and turns it live.
The hub saw the retained events before the subscription was registered, so their seq is at most
the reply's ``seq``, and every live event comes after it: the order stays ascending and nothing
is sent twice.

Only events seen since the hub started are retained; a status left by an earlier run may be
stale, so it is never used. Right after a daemon start nothing is retained: a subscribe gets
nothing extra, and the first snapshots come live once the cloud side publishes them, at start
(``CloudService.start`` spawns its publisher task; app.py starts the bridge right after, so
the hub listens before that task first runs). With no cloud configured, ``DisabledCloud``
publishes its two snapshots (``configured: false``) the same way, and nothing after.

Live-only events (``publish_live``: presence, broadcasts) are ephemeral and NEVER stored: no
changelog entry, so no replay ever includes them. They go to the subscriptions that are live
at that moment (one still replaying, or held until its reply is sent, misses them) as
``event {subscription, seq, topic, data, ephemeral: true}``, where ``seq`` is the seq of the
last durable event delivered on that subscription: the ephemeral event came after it. It is not
a new seq: a client must not advance its resume point with it (nor drop it as a duplicate).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from daemon.events import ChangeEvent
from ui_bridge.jsonrpc import ErrorCode, RpcError
from ui_bridge.topics import TopicFilter

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = [
    "RETAINED_TOPICS",
    "EventHub",
    "FrameSink",
    "Subscription",
    "encode_event_tail",
    "encode_live_tail",
]

logger = logging.getLogger(__name__)

PAGE: Final = 1000
PENDING_LIMIT: Final = 10_000
#: Topics whose latest event a subscribe without ``since`` gets first (see the module docstring).
RETAINED_TOPICS: Final = frozenset({"cloud.status", "sync.status", "daemon.status"})


class FrameSink(Protocol):
    """Where a subscription's frames go (a session's outbox)."""

    def push(self, frame: bytes) -> bool: ...

    async def wait_for_room(self) -> None: ...

    def fits(self, frames: int, nbytes: int) -> bool: ...


def encode_event_tail(event: ChangeEvent) -> bytes:
    """``"seq":…,"topic":…,"data":…}}``: the part of a notification shared by every subscriber."""
    return orjson.dumps({"seq": event.seq, "topic": event.topic, "data": event.data})[1:] + b"}"


def encode_live_tail(topic: str, data: dict[str, Any]) -> bytes:
    """``"topic":…,"data":…,"ephemeral":true}}``: a live-only event's shared part (no seq)."""
    return orjson.dumps({"topic": topic, "data": data, "ephemeral": True})[1:] + b"}"


class Subscription:
    """One client subscription; ``last_seq`` is the last seq delivered (or skipped)."""

    __slots__ = (
        "active",
        "filter",
        "id",
        "last_seq",
        "live",
        "pending",
        "prefix",
        "retained",
        "sink",
    )

    def __init__(self, sub_id: str, topics: TopicFilter, sink: FrameSink, last_seq: int) -> None:
        self.id = sub_id
        self.filter = topics
        self.sink = sink
        self.last_seq = last_seq
        self.live = False
        self.active = True
        self.pending: list[tuple[int, bytes]] | None = []
        #: the retained events' tails a held subscription is to get first (``send_retained``)
        self.retained: tuple[bytes, ...] = ()
        self.prefix = (
            b'{"jsonrpc":"2.0","method":"event","params":{"subscription":'
            + orjson.dumps(sub_id)
            + b","
        )

    def deliver(self, seq: int, tail: bytes) -> None:
        """Called by the hub for a matching live event."""
        if self.live:
            if seq > self.last_seq:
                self.last_seq = seq
                self.sink.push(self.prefix + tail)
        elif self.pending is not None:
            self.pending.append((seq, tail))
            if len(self.pending) > PENDING_LIMIT:
                self.pending = None  # re-read from the changelog instead

    def pending_fits(self) -> bool:
        """What ``pending`` holds can be flushed into the sink at once without overflowing it
        (large events: a few of them may pass its byte bound)."""
        pending = self.pending or ()
        size = sum(len(tail) for _, tail in pending) + len(pending) * len(self.prefix)
        return self.sink.fits(len(pending), size)

    def go_live(self, cursor: int) -> None:
        """Flush what arrived during catch-up after ``cursor`` and switch to live delivery."""
        self.last_seq = cursor
        self.live = True
        for seq, tail in self.pending or ():
            if seq > self.last_seq:
                self.last_seq = seq
                self.sink.push(self.prefix + tail)
        self.pending = None


class EventHub:
    """Subscriptions of every session, fed by the store's commit listener."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._subs: dict[str, Subscription] = {}
        self._remove_listener: Callable[[], None] | None = None
        #: topic -> (seq, tail) of the latest event of each retained topic seen
        self._retained: dict[str, tuple[int, bytes]] = {}
        #: the seq of the last event the listener has seen: live subscriptions start after it
        self.current_seq = 0

    async def start(self) -> None:
        """Listen to commits, then learn the current seq (commits in between are kept)."""
        self._remove_listener = self._store.add_commit_listener(self.on_commit)
        self.current_seq = max(self.current_seq, await self._store.changelog.last_seq())

    def stop(self) -> None:
        """Stop listening; subscriptions stay registered until their sessions end."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    def __len__(self) -> int:
        return len(self._subs)

    def on_commit(self, events: Sequence[ChangeEvent]) -> None:
        """The commit listener: fan each event out to the matching subscriptions."""
        if not self._subs:  # nobody listens: only the seq to start live subscriptions after
            if events and events[-1].seq > self.current_seq:
                self.current_seq = events[-1].seq
            for event in events:  # and the retained events
                if event.topic in RETAINED_TOPICS:
                    self._retain(event, None)
            return
        subs = tuple(self._subs.values())
        for event in events:
            if event.seq > self.current_seq:
                self.current_seq = event.seq
            tail: bytes | None = None
            for sub in subs:
                if sub.filter.matches(event.topic):
                    if tail is None:
                        try:
                            tail = encode_event_tail(event)
                        except TypeError:
                            logger.exception("event.unencodable seq=%d", event.seq)
                            break
                    sub.deliver(event.seq, tail)
            if event.topic in RETAINED_TOPICS:
                self._retain(event, tail)

    def _retain(self, event: ChangeEvent, tail: bytes | None) -> None:
        """Remember ``event`` as its topic's latest (an unencodable one leaves none: the one
        before is no longer the latest)."""
        if tail is None:
            try:
                tail = encode_event_tail(event)
            except TypeError:
                logger.warning("event.unretained seq=%d topic=%s", event.seq, event.topic)
                self._retained.pop(event.topic, None)
                return
        self._retained[event.topic] = (event.seq, tail)

    def publish_live(
        self, topic: str, data: dict[str, Any], *, skip: FrameSink | None = None
    ) -> int:
        """Deliver an ephemeral event to the matching live subscriptions (but those of the
        session whose sink is ``skip``), without storing it (see the module docstring);
        returns how many got it. Raises TypeError if ``data`` is not JSON."""
        tail: bytes | None = None
        delivered = 0
        for sub in tuple(self._subs.values()):
            if not sub.live or sub.sink is skip or not sub.filter.matches(topic):
                continue
            if tail is None:
                tail = encode_live_tail(topic, data)
            if sub.sink.push(sub.prefix + b'"seq":%d,' % sub.last_seq + tail):
                delivered += 1
        return delivered

    def add_live(self, sub: Subscription, *, hold: bool = False) -> int:
        """Register a subscription that starts now; returns the seq it starts after.

        When retained events match its topics, or ``hold`` is set (its reply may wait for
        other calls: a batch), it is registered held (not ``live``): call ``send_retained``
        once its reply is sent. Else it is live at once."""
        sub.last_seq = self.current_seq
        matches = sub.filter.matches
        retained = sorted(v for topic, v in self._retained.items() if matches(topic))
        sub.retained = tuple(tail for _, tail in retained)
        held = hold or bool(retained)
        sub.live = not held
        sub.pending = [] if held else None
        self._subs[sub.id] = sub
        return sub.last_seq

    def send_retained(self, sub: Subscription) -> bool:
        """Send a held subscription its retained events, then what was committed since it was
        registered, and turn it live; ``False`` if so much was committed meanwhile that
        ``pending`` overflowed: ``catch_up(sub)`` then reads the rest from the changelog."""
        tails, sub.retained = sub.retained, ()
        if not sub.active:
            return True
        for tail in tails:
            sub.sink.push(sub.prefix + tail)
        if sub.pending is None or not sub.pending_fits():
            return False
        sub.go_live(sub.last_seq)
        return True

    async def add_replaying(self, sub: Subscription, since: int) -> None:
        """Register a subscription that replays from ``since``; raises refetch if not retained."""
        changelog = self._store.changelog
        first = await changelog.first_seq()
        last = max(self.current_seq, await changelog.last_seq())
        if since > last or (since + 1 < first and since < last):
            raise RpcError(
                ErrorCode.NOT_FOUND,
                # (past the last seq: a changelog from another data dir or a reset one)
                "No such event yet: refetch"
                if since > last
                else "Events no longer retained: refetch",
                {"reason": "refetch", "since": since, "first_seq": first, "last_seq": last},
            )
        sub.last_seq = since
        self._subs[sub.id] = sub

    async def catch_up(self, sub: Subscription) -> bool:
        """Replay the changelog into ``sub`` then turn it live; ``False`` if a gap appeared."""
        cursor = sub.last_seq
        changelog = self._store.changelog
        while sub.active:
            if sub.pending is None:
                sub.pending = []
            batch = await changelog.read_since(cursor, PAGE)
            if not batch:
                if sub.pending is None:
                    continue  # pending overflowed while reading: read again
                if not sub.pending_fits():  # read it from the changelog instead, paced
                    sub.pending = None
                    await sub.sink.wait_for_room()
                    continue
                sub.go_live(cursor)
                return True
            if batch[0].seq != cursor + 1:
                return False
            cursor = await self._replay_page(sub, batch)
        return True

    async def _replay_page(self, sub: Subscription, batch: Sequence[ChangeEvent]) -> int:
        matches = sub.filter.matches
        for event in batch:
            if not sub.active:
                break
            if matches(event.topic):
                await sub.sink.wait_for_room()
                sub.sink.push(sub.prefix + encode_event_tail(event))
        sub.last_seq = batch[-1].seq
        return batch[-1].seq

    def remove(self, sub_id: str) -> Subscription | None:
        """Unregister a subscription (it stops receiving at once)."""
        sub = self._subs.pop(sub_id, None)
        if sub is not None:
            sub.active = False
        return sub

    def snapshot(self) -> dict[str, Any]:
        """Counters for ``daemon.status``."""
        return {"subscriptions": len(self._subs), "seq": self.current_seq}
