"""One Realtime WebSocket connection: its channels, its bounded send queue, and the handling of
every client event (heartbeat, phx_join, phx_leave, access_token, broadcast, presence).

Frames are handled one at a time in arrival order by the socket's reader; replies and pushes go
into a bounded queue that a writer task drains. When the queue is full the socket is dropped
(close 1013) instead of letting one slow client hold everybody else's fan-out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from devcloud.realtime import channel as ch
from devcloud.realtime.authorization import NONE, Permissions, unauthorized_read
from devcloud.realtime.channel import Binding, JoinRefused
from devcloud.realtime.hub import Hub, Subscriber
from devcloud.realtime.serializer import (
    Frame,
    FrameError,
    Vsn,
    encode_text,
    encode_user_broadcast,
)

logger = logging.getLogger(__name__)

MAX_QUEUE = 1024  # frames waiting for one socket before it is dropped
MAX_PAYLOAD_BYTES = 1_000_000  # larger pushes would exceed supabase-py's 1 MiB frame limit
# Realtime's client_presence_rate_limit: each channel join may send this many presence
# messages in a window of PRESENCE_WINDOW_S (opened by the first one); one more closes it.
PRESENCE_MAX_CALLS = 5
PRESENCE_WINDOW_S = 30.0
# Realtime's max_channels_per_client (a tenant setting, 100 by default): a socket's join of
# one more topic is refused "ChannelRateLimitReached: Too many channels" (realtime_channel.ex
# limit_channels); the official clients and syncd then wait 30 s before they try again.
MAX_CHANNELS = 100
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class CloseSocket:
    """Writer instruction: close the WebSocket with ``code``."""

    code: int
    reason: str = ""


class BindingPreparer(Protocol):
    """The change feed: make sure captures exist for these bindings; returns error messages."""

    async def prepare(self, bindings: Sequence[Binding]) -> list[str]: ...


#: Realtime Authorization of a private channel: (claims, sub-topic) -> what they may do.
Authorizer = Callable[[Mapping[str, Any], str], Awaitable[Permissions]]


async def _refuse_private(claims: Mapping[str, Any], subtopic: str) -> Permissions:
    return NONE


class Connection:
    """The server side of one socket (sans the WebSocket itself, which ``run`` is given)."""

    def __init__(
        self,
        hub: Hub,
        feed: BindingPreparer,
        *,
        secret: str,
        vsn: Vsn,
        apikey: str,
        conn_id: str,
        max_queue: int = MAX_QUEUE,
        clock: Callable[[], float] = time.time,
        authorizer: Authorizer = _refuse_private,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        self.hub = hub
        self.feed = feed
        self.secret = secret
        self.vsn = vsn
        self.apikey = apikey
        self.conn_id = conn_id
        self.clock = clock
        self.authorizer = authorizer
        self.max_channels = max_channels
        self.queue: asyncio.Queue[str | bytes | CloseSocket] = asyncio.Queue(max_queue)
        self.channels: dict[str, Subscriber] = {}
        self.dropped = False
        self.on_drop: Callable[[], object] | None = None  # the server stops reading the socket

    # Output ----------------------------------------------------------------------------------

    def send_frame(self, frame: Frame) -> None:
        self._enqueue(encode_text(self.vsn, frame))

    def send_user_broadcast(self, topic: str, event: str, payload: Any, raw: bytes | None) -> None:
        if self.vsn is Vsn.V2:
            try:
                self._enqueue(encode_user_broadcast(topic, event, payload, raw=raw))
                return
            except FrameError:  # a header field too long for a binary frame: send JSON
                pass
        if raw is None:  # JSON cannot carry raw bytes
            body = {"type": "broadcast", "event": event, "payload": payload}
            self.send_frame(ch.push(topic, "broadcast", body))

    def _enqueue(self, item: str | bytes) -> None:
        if self.dropped:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.drop("send queue full")

    def drop(self, reason: str, *, code: int = CLOSE_TRY_AGAIN_LATER, log: bool = True) -> None:
        """Stop sending and have the writer close the socket (e.g. the client is too slow)."""
        if self.dropped:
            return
        self.dropped = True
        if log:
            logger.warning("realtime.socket.dropped conn_id=%s reason=%s", self.conn_id, reason)
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(CloseSocket(code, reason))
        if self.on_drop is not None:
            self.on_drop()

    # Input -----------------------------------------------------------------------------------

    async def receive(self, frame: Frame, size: int = 0) -> None:
        """Handle one client frame (``size``: its encoded length)."""
        if frame.topic == ch.PHOENIX_TOPIC:
            if frame.event == "heartbeat":
                self.send_frame(ch.reply(frame.topic, frame.ref, None))
            return
        if frame.event == "phx_join":
            await self._join(frame)
            return
        subscriber = self.channels.get(frame.topic)
        if subscriber is None or (frame.join_ref and frame.join_ref != subscriber.join_ref):
            self._unmatched(frame)
            return
        if frame.event == "phx_leave":
            self.send_frame(ch.reply(frame.topic, frame.ref, frame.join_ref))
            self._close_channel(subscriber)
        elif frame.event == "access_token":
            await self._access_token(subscriber, frame.payload.get("access_token"))
        elif frame.event == "broadcast":
            self._broadcast(subscriber, frame, size)
        elif frame.event == "presence":
            self._presence(subscriber, frame)
        else:
            reason = f"unknown event {frame.event!r}"
            self.send_frame(ch.error_reply(frame.topic, frame.ref, frame.join_ref, reason))

    def _unmatched(self, frame: Frame) -> None:
        if frame.event == "phx_leave":  # leaving what was never joined is fine
            self.send_frame(ch.reply(frame.topic, frame.ref, frame.join_ref))
        elif frame.event != "access_token":  # access_token never gets a reply
            self.send_frame(
                ch.error_reply(frame.topic, frame.ref, frame.join_ref, "unmatched topic")
            )

    def close(self) -> None:
        """The socket is gone: leave every channel (presence leaves go to the others)."""
        for subscriber in list(self.channels.values()):
            self.hub.remove(subscriber)
        self.channels.clear()

    # Join ------------------------------------------------------------------------------------

    async def _join(self, frame: Frame) -> None:
        old = self.channels.get(frame.topic)
        if old is not None:  # Phoenix: a second join stops the first channel
            self._close_channel(old)
        try:
            subscriber = await self._admit(frame)
        except JoinRefused as exc:
            logger.info("realtime.join.refused conn_id=%s code=%s", self.conn_id, exc.code)
            reason = "unmatched topic" if exc.code == "UnmatchedTopic" else exc.reason
            self.send_frame(ch.error_reply(frame.topic, frame.ref, frame.join_ref, reason))
            return
        self.channels[frame.topic] = subscriber
        self.hub.add(subscriber)
        self.send_frame(ch.join_reply(frame.topic, frame.ref, frame.join_ref, subscriber.config))
        if subscriber.presence_enabled:
            state = self.hub.presences.state(subscriber.key)
            subscriber.send(ch.push(frame.topic, "presence_state", state))
        self._schedule_expiry(subscriber)
        await self._start_changes(subscriber)
        if subscriber.config.replication_ready:  # the LISTEN connection is up since start()
            subscriber.send(ch.replication_ready(frame.topic))

    async def _admit(self, frame: Frame) -> Subscriber:
        subtopic = ch.parse_topic(frame.topic)
        if len(self.channels) >= self.max_channels:  # (a rejoined topic was closed above)
            raise JoinRefused("ChannelRateLimitReached", "Too many channels")
        config = ch.parse_join(frame.payload)
        token = config.access_token or self.apikey
        claims = ch.check_token(token, self.secret, self.clock())
        permissions = await self._permissions(config.private, claims, subtopic)
        subscriber = Subscriber(
            outbox=self,
            topic=frame.topic,
            join_ref=frame.join_ref or frame.ref,
            config=config,
            claims=claims,
            token=token,
            presence_key=config.presence_key or str(uuid.uuid1()),
            presence_enabled=config.presence_enabled,
        )
        self._grant(subscriber, permissions)
        return subscriber

    async def _permissions(
        self, private: bool, claims: Mapping[str, Any], subtopic: str
    ) -> Permissions | None:
        """A private channel's permissions (None for a public channel); raises JoinRefused
        when the policies do not let ``claims`` read from ``subtopic``."""
        if not private:
            return None
        permissions = await self.authorizer(claims, subtopic)
        if not permissions.can_read:
            raise JoinRefused("Unauthorized", unauthorized_read(subtopic))
        return permissions

    @staticmethod
    def _grant(subscriber: Subscriber, permissions: Permissions | None) -> None:
        if permissions is not None:
            subscriber.can_broadcast = permissions.write_broadcast
            subscriber.can_track = permissions.write_presence

    async def _start_changes(self, subscriber: Subscriber) -> None:
        config = subscriber.config
        if not config.bindings:
            return
        errors = list(config.binding_errors)
        if not errors:
            errors = await self.feed.prepare(config.bindings)
        if subscriber.closed:
            return
        if errors:
            for message in errors:
                subscriber.send(
                    ch.system(
                        subscriber.topic,
                        extension="postgres_changes",
                        status="error",
                        message=message,
                    )
                )
            return
        subscriber.bindings_active = True
        subscriber.send(ch.subscribed(subscriber.topic))

    # Channel events --------------------------------------------------------------------------

    def _count_presence(self, subscriber: Subscriber) -> bool:
        """Count one presence message of this join; False once the window's are used up
        (presence_handler.ex ``limit_client_presence_event``: a fixed window opened by the
        first message, any event counted, before it is looked at)."""
        now = time.monotonic()
        if subscriber.presence_reset_at is None or now > subscriber.presence_reset_at:
            subscriber.presence_reset_at = now + PRESENCE_WINDOW_S
            subscriber.presence_calls = 1
            return True
        if subscriber.presence_calls >= PRESENCE_MAX_CALLS:
            return False
        subscriber.presence_calls += 1
        return True

    def _close_channel(self, subscriber: Subscriber) -> None:
        if self.channels.get(subscriber.topic) is subscriber:
            del self.channels[subscriber.topic]
        subscriber.send(ch.close(subscriber.topic, subscriber.join_ref))
        self.hub.remove(subscriber)

    def shutdown(self, subscriber: Subscriber, message: str) -> None:
        """Realtime's shutdown_response: a ``system`` error, then ``phx_close``."""
        subscriber.send(
            ch.system(subscriber.topic, extension="system", status="error", message=message)
        )
        self._close_channel(subscriber)

    def _schedule_expiry(self, subscriber: Subscriber) -> None:
        if subscriber.expiry is not None:
            subscriber.expiry.cancel()
        delay = max(0.0, float(subscriber.claims["exp"]) - self.clock())
        loop = asyncio.get_running_loop()
        subscriber.expiry = loop.call_later(delay, self._expire, subscriber)

    def _expire(self, subscriber: Subscriber) -> None:
        subscriber.expiry = None
        if not subscriber.closed:
            logger.info("realtime.channel.token_expired conn_id=%s", self.conn_id)
            self.shutdown(subscriber, "Token has expired 0 seconds ago")

    async def _access_token(self, subscriber: Subscriber, token: Any) -> None:
        if not isinstance(token, str) or not token or token.startswith("sb_"):
            return
        if token == subscriber.token:
            return
        try:
            claims = ch.check_token(token, self.secret, self.clock())
            permissions = await self._permissions(
                subscriber.config.private, claims, ch.parse_topic(subscriber.topic)
            )
        except JoinRefused as exc:
            if not subscriber.closed:
                self.shutdown(subscriber, exc.message)
            return
        if subscriber.closed:  # left while the policies were asked
            return
        self._grant(subscriber, permissions)
        subscriber.claims, subscriber.token = claims, token
        self._schedule_expiry(subscriber)
        if subscriber.bindings_active:
            subscriber.send(ch.subscribed(subscriber.topic))

    def _broadcast(self, subscriber: Subscriber, frame: Frame, size: int) -> None:
        payload = frame.payload
        if size > MAX_PAYLOAD_BYTES:
            reason = "Payload size exceeded"
            self.send_frame(ch.error_reply(frame.topic, frame.ref, frame.join_ref, reason))
            return
        if not isinstance(payload.get("event"), str):
            reason = "broadcast needs a string event"
            self.send_frame(ch.error_reply(frame.topic, frame.ref, frame.join_ref, reason))
            return
        if not subscriber.can_broadcast:  # Realtime drops it (no write policy)
            logger.info("realtime.broadcast.unauthorized conn_id=%s", self.conn_id)
            return
        body = {k: v for k, v in payload.items() if k in ("type", "event", "payload", "meta")}
        body["type"] = "broadcast"
        self.hub.broadcast_to(
            subscriber.topic,
            subscriber,
            body,
            frame.binary_payload,
            frame.from_binary,
            private=subscriber.config.private,
        )
        if subscriber.config.broadcast_ack:
            self.send_frame(ch.reply(frame.topic, frame.ref, frame.join_ref))

    def _presence(self, subscriber: Subscriber, frame: Frame) -> None:
        if not self._count_presence(subscriber):
            logger.info("realtime.presence.rate_limited conn_id=%s", self.conn_id)
            self.shutdown(subscriber, "Client presence rate limit exceeded")
            return
        event = str(frame.payload.get("event", "")).lower()
        if event == "track" and not subscriber.can_track:  # Realtime drops it (no write policy)
            logger.info("realtime.presence.unauthorized conn_id=%s", self.conn_id)
            reason = "Unauthorized: You do not have permissions to write to this Channel topic"
            self.send_frame(ch.error_reply(frame.topic, frame.ref, frame.join_ref, reason))
            return
        if event == "track":
            meta = frame.payload.get("payload", {})
            if not isinstance(meta, dict):
                reason = "Presence track payload must be a map"
                self.send_frame(ch.error_reply(frame.topic, frame.ref, frame.join_ref, reason))
                return
            if not subscriber.presence_enabled:  # tracking enables presence for the channel
                subscriber.presence_enabled = True
                subscriber.send(
                    ch.push(frame.topic, "presence_state", self.hub.presences.state(subscriber.key))
                )
            diff = self.hub.presences.track(
                subscriber.key, subscriber.id, subscriber.presence_key, meta
            )
        elif event == "untrack":
            diff = self.hub.presences.untrack(subscriber.key, subscriber.id)
        else:
            reason = f"unknown presence event {event!r}"
            self.send_frame(ch.error_reply(frame.topic, frame.ref, frame.join_ref, reason))
            return
        self.send_frame(ch.reply(frame.topic, frame.ref, frame.join_ref))
        self.hub.publish_presence(subscriber, diff)
