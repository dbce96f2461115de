"""The in-memory hub every socket shares: who has joined which topic, presence, fan-out.

Everything here is synchronous and never blocks: a frame for a socket goes into that socket's
bounded queue (``Outbox.send_frame``); a socket whose queue is full is dropped by its own writer,
so one slow client never delays the others.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from devcloud.realtime import channel as ch
from devcloud.realtime.channel import JoinConfig
from devcloud.realtime.presence import PresenceDiff, Presences
from devcloud.realtime.rate import RATE_LIMITED, MessageRate
from devcloud.realtime.serializer import Frame

if TYPE_CHECKING:
    from asyncio import TimerHandle

logger = logging.getLogger(__name__)
_subscriber_ids = itertools.count(1)


def channel_key(topic: str, private: bool) -> str:
    """Where a channel's members meet: a private channel and a public one of the same topic
    are apart (as in Realtime: a private broadcast reaches private subscribers only)."""
    return "private:" + topic if private else topic


class Outbox(Protocol):
    """Where a subscriber's frames go: its socket's bounded send queue."""

    conn_id: str

    def send_frame(self, frame: Frame) -> None: ...

    def send_user_broadcast(self, topic: str, event: str, payload: Any, raw: bytes | None) -> None:
        """A broadcast that arrived as a V2 binary frame (V2 sockets get it back as kind 4)."""

    def shutdown(self, subscriber: Subscriber, message: str) -> None:
        """Realtime's shutdown_response: a ``system`` error, then ``phx_close``."""


@dataclass(eq=False)
class Subscriber:
    """One joined channel of one socket (a Phoenix channel process, in Realtime's terms)."""

    outbox: Outbox
    topic: str
    join_ref: str | None
    config: JoinConfig
    claims: dict[str, Any]
    token: str
    presence_key: str
    presence_enabled: bool
    bindings_active: bool = False  # set once "Subscribed to PostgreSQL" went out
    closed: bool = False
    id: int = field(default_factory=lambda: next(_subscriber_ids))
    expiry: TimerHandle | None = None  # the token-expiry shutdown
    # Realtime Authorization (private channels; public ones may do everything)
    can_broadcast: bool = True
    can_track: bool = True
    # Realtime's client presence rate limit (session.py PRESENCE_MAX_CALLS), per join
    presence_calls: int = 0
    presence_reset_at: float | None = None  # time.monotonic() when the window ends

    @property
    def key(self) -> str:
        return channel_key(self.topic, self.config.private)

    def send(self, frame: Frame) -> None:
        if not self.closed:
            self.outbox.send_frame(frame)


class Hub:
    """Topics → subscribers, plus every topic's presence and the project's message rate."""

    def __init__(
        self,
        presences: Presences,
        rate: MessageRate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.presences = presences
        self.rate = rate if rate is not None else MessageRate()
        self._clock = clock
        self._topics: dict[str, dict[int, Subscriber]] = {}

    def add(self, subscriber: Subscriber) -> None:
        self._topics.setdefault(subscriber.key, {})[subscriber.id] = subscriber

    def remove(self, subscriber: Subscriber) -> None:
        """Forget a subscriber; its presence leaves (others get the ``presence_diff``)."""
        subscriber.closed = True
        if subscriber.expiry is not None:
            subscriber.expiry.cancel()
            subscriber.expiry = None
        members = self._topics.get(subscriber.key)
        if members is not None:
            members.pop(subscriber.id, None)
            if not members:
                del self._topics[subscriber.key]
        self.publish_presence(subscriber, self.presences.untrack(subscriber.key, subscriber.id))

    def members(self, key: str) -> list[Subscriber]:
        """The members of the channel ``key`` (``channel_key``)."""
        return list(self._topics.get(key, {}).values())

    def subscribers(self) -> Iterator[Subscriber]:
        """Every live subscriber whose postgres_changes bindings are active."""
        for members in list(self._topics.values()):
            for subscriber in list(members.values()):
                if subscriber.bindings_active and not subscriber.closed:
                    yield subscriber

    def publish_presence(self, subscriber: Subscriber, diff: PresenceDiff) -> None:
        """Send ``diff`` to the presence-enabled members of ``subscriber``'s channel."""
        if diff.is_empty():
            return
        frame = ch.push(subscriber.topic, "presence_diff", diff.to_payload())
        for member in self.members(subscriber.key):
            if member.presence_enabled:
                member.send(frame)

    def broadcast_to(
        self,
        topic: str,
        sender: Subscriber | None,
        payload: dict[str, Any],
        raw: bytes | None,
        binary: bool,
        *,
        private: bool = False,
    ) -> int:
        """Send to the members of ``topic``'s public (or ``private``) channel (to the sender only
        with ``self``); returns the count. Each message counts towards the project's rate (the
        sender's and each delivery): while it is over, a member is shut after its delivery."""
        frame = ch.push(topic, "broadcast", payload)
        sent = 0
        now = self._clock()
        if sender is not None:
            self.rate.add(now)
        for member in self.members(channel_key(topic, private)):
            if member is sender and not member.config.broadcast_self:
                continue
            if member.closed:
                continue
            if binary:
                member.outbox.send_user_broadcast(
                    topic, str(payload.get("event")), payload.get("payload"), raw
                )
            else:
                member.send(frame)
            sent += 1
            self.rate.add(now)
            if self.rate.is_triggered(now):
                logger.info("realtime.rate_limited conn_id=%s", member.outbox.conn_id)
                member.outbox.shutdown(member, RATE_LIMITED)
        return sent
