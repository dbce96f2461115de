"""A Phoenix channels client speaking vsn 1.0.0 JSON (sans-I/O: no asyncio, no sockets, no clock).

Theory of operation
-------------------
``PhoenixClient`` keeps the state of one socket and its channels; an adapter owns the socket.
Inputs are method calls; outputs are drained:

    inputs   connection_opened(now), connection_lost(now, reason), receive_text(text, now),
             tick(now), join(topic, payload, now), leave(topic, now), push(topic, event, payload),
             set_access_token(token)
    outputs  data_to_send() -> [text frame], events_received() -> [Event], next_deadline()

The adapter sends every frame of ``data_to_send()`` after each input, hands the events on, and
calls ``tick(now)`` no later than ``next_deadline()``. ``now`` is any monotonic clock in seconds.

Socket. After ``connection_opened`` the client heartbeats on topic ``phoenix`` every
``heartbeat_interval_s``; a heartbeat still unanswered when the next one is due means the peer is
gone: the client reports ``ConnectionLost("heartbeat timeout")`` and behaves as if
``connection_lost`` had been called, so the adapter only closes the socket and reconnects. The
adapter waits ``reconnect_delay(rand)`` between attempts (full jitter, 1 s doubling to a 30 s cap,
``rand`` uniform in [0, 1) from the caller); a heartbeat reply or an accepted join resets it. The
client never gives up: there is no attempt limit.

Channels. ``join`` stores the topic's join payload; the stored payload is sent on every (re)join,
so filters, presence key and the current ``access_token`` survive reconnects. Each join gets a new
``ref`` that is also its ``join_ref``. Server frames carry no ``join_ref`` in V1, so a ``phx_close``
or ``phx_error`` is matched by its ``ref`` (Phoenix sets it to the closed channel's join ref): one
for an older join (Phoenix closes the previous channel when a topic is joined again) is ignored.

Channel states and what moves them (``TRANSITIONS``; unlisted cells ignore the input)::

    CLOSED  --join-->  JOINING  --ok reply-->  JOINED
    JOINING --error reply / timeout / phx_close / phx_error-->  WAITING  (rejoin after a delay)
    JOINED  --phx_close / phx_error / "unmatched topic"-->  WAITING     (rejoin after a delay)
    WAITING --delay passed / socket opened-->  JOINING
    any     --socket lost-->  WAITING (rejoined as soon as the socket opens); LEAVING --> CLOSED
    any     --leave-->  LEAVING  --reply / phx_close / timeout-->  CLOSED (forgotten)

A channel is never left CLOSED by the server: only ``leave`` ends it. Rejoin delays are 1, 2, 5,
then 10 s (30 s after a rate-limit refusal, or a close for the project's message rate). A
``system`` error is reported as ``ChannelError`` without a state change; when the server
also closes the channel (token expiry does), the ``phx_close`` that follows moves it to
WAITING. ``set_access_token`` pushes ``access_token`` to every joined channel and rewrites
every stored payload, so rejoins carry the fresh token.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from daemon.backoff import Backoff
from daemon.errors import InvalidInput
from daemon.realtime import frames as fr
from daemon.realtime.frames import (
    ChannelClosed,
    ChannelError,
    ChannelJoined,
    ConnectionLost,
    ConnectionOpened,
    Event,
    Frame,
    FrameError,
    InvalidFrame,
    PostgresSubscribed,
    PresenceDiff,
    PresenceState,
    Reply,
)
from daemon.realtime.states import TRANSITIONS, ChannelState, Input, rejoin_delay

__all__ = ["TRANSITIONS", "ChannelState", "Input", "PhoenixClient"]

TOPIC_PREFIX: Final = "realtime:"
PHOENIX_TOPIC: Final = "phoenix"
SUBSCRIBED_TO_POSTGRES: Final = "Subscribed to PostgreSQL"
# Timeouts (seconds)
HEARTBEAT_INTERVAL_S: Final = 25.0
JOIN_TIMEOUT_S: Final = 10.0
LEAVE_TIMEOUT_S: Final = 10.0
RECONNECT_BACKOFF: Final = Backoff(base_s=1.0, cap_s=30.0)
_CLIENT_ONLY_EVENTS: Final = frozenset(
    {"phx_join", "phx_leave", "phx_reply", "phx_close", "phx_error", "heartbeat", "access_token"}
)


@dataclass
class _Channel:
    topic: str
    payload: dict[str, Any]  # the stored join payload (with the current access_token)
    state: ChannelState = ChannelState.CLOSED
    join_ref: str | None = None
    leave_ref: str | None = None
    deadline: float | None = None  # join/leave timeout, or when to rejoin (WAITING)
    failures: int = 0  # consecutive failed joins, for the rejoin delay
    joined_with: str | None = None  # the access_token the last phx_join carried
    last_error: str | None = None


class PhoenixClient:
    """The client side of one Phoenix socket and its channels (see the module docstring)."""

    def __init__(
        self,
        *,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        join_timeout_s: float = JOIN_TIMEOUT_S,
        leave_timeout_s: float = LEAVE_TIMEOUT_S,
        backoff: Backoff = RECONNECT_BACKOFF,
    ) -> None:
        if min(heartbeat_interval_s, join_timeout_s, leave_timeout_s) <= 0:
            raise ValueError("heartbeat interval and timeouts must be positive")
        self.heartbeat_interval_s = heartbeat_interval_s
        self.join_timeout_s = join_timeout_s
        self.leave_timeout_s = leave_timeout_s
        self.backoff = backoff
        self._channels: dict[str, _Channel] = {}
        self._open = False
        self._last_ref = 0
        self._heartbeat_at: float | None = None
        self._heartbeat_ref: str | None = None
        self._access_token: str | None = None
        self._reconnect_attempt = 0
        self._out: list[str] = []
        self._events: list[Event] = []

    # Queries -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def topics(self) -> list[str]:
        """Every topic the client is joining, joined to, or will rejoin."""
        return list(self._channels)

    def channel_state(self, topic: str) -> ChannelState:
        channel = self._channels.get(topic)
        return ChannelState.CLOSED if channel is None else channel.state

    def join_payload(self, topic: str) -> Mapping[str, Any] | None:
        """The payload the next join of ``topic`` will carry (None: no such channel)."""
        channel = self._channels.get(topic)
        return None if channel is None else copy.deepcopy(channel.payload)

    def next_deadline(self) -> float | None:
        """When ``tick`` must be called next (None: nothing is scheduled)."""
        if not self._open:
            return None
        times = [c.deadline for c in self._channels.values() if c.deadline is not None]
        if self._heartbeat_at is not None:
            times.append(self._heartbeat_at)
        return min(times, default=None)

    # Outputs -------------------------------------------------------------------------------

    @property
    def has_data_to_send(self) -> bool:
        """Frames are waiting for ``data_to_send``."""
        return bool(self._out)

    def data_to_send(self) -> list[str]:
        """Text frames to write to the socket, in order; the buffer is emptied."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[Event]:
        """Events since the last call, in order; the buffer is emptied."""
        events, self._events = self._events, []
        return events

    # Socket inputs -------------------------------------------------------------------------

    def connection_opened(self, now: float) -> None:
        """The socket is open: start heartbeating and (re)join every channel."""
        if self._open:
            self.connection_lost(now, "reopened")
        self._open = True
        self._heartbeat_at = now + self.heartbeat_interval_s
        self._heartbeat_ref = None
        self._events.append(ConnectionOpened())
        for channel in list(self._channels.values()):
            if self._move(channel, Input.SOCKET_OPENED) is ChannelState.JOINING:
                self._send_join(channel, now)

    def connection_lost(self, now: float, reason: str = "connection closed") -> None:
        """The socket is gone (or never opened). Idempotent; reports ConnectionLost once."""
        if not self._open:
            return
        self._open = False
        self._heartbeat_at = self._heartbeat_ref = None
        self._out.clear()  # frames meant for the dead socket must not reach the next one
        for channel in list(self._channels.values()):
            if self._move(channel, Input.SOCKET_LOST) is ChannelState.CLOSED:
                self._forget(channel, "left")
            else:
                channel.deadline = None  # rejoined as soon as the socket opens again
        self._events.append(ConnectionLost(reason))

    def reconnect_delay(self, rand: float) -> float:
        """Seconds to wait before the next connect attempt; ``rand`` is uniform in [0, 1)."""
        delay = self.backoff.delay(self._reconnect_attempt, rand)
        self._reconnect_attempt += 1
        return delay

    def tick(self, now: float) -> None:
        """Run what is due at ``now``: heartbeat (or its timeout), join/leave timeouts, rejoins."""
        if not self._open:
            return
        if self._heartbeat_at is not None and now >= self._heartbeat_at:
            if self._heartbeat_ref is not None:
                self.connection_lost(now, "heartbeat timeout")
                return
            self._heartbeat_ref = self._send(Frame(PHOENIX_TOPIC, "heartbeat", {}))
            self._heartbeat_at = now + self.heartbeat_interval_s
        for channel in list(self._channels.values()):
            if channel.deadline is not None and now >= channel.deadline:
                self._on_deadline(channel, now)

    def _on_deadline(self, channel: _Channel, now: float) -> None:
        channel.deadline = None
        if channel.state is ChannelState.JOINING:
            self._fail(
                channel, Input.JOIN_TIMEOUT, now, ChannelError(channel.topic, "join timed out")
            )
        elif channel.state is ChannelState.LEAVING:
            self._move(channel, Input.LEAVE_DONE)
            self._forget(channel, "left")
        elif self._move(channel, Input.REJOIN_DUE) is ChannelState.JOINING:
            self._send_join(channel, now)

    # Channel inputs ------------------------------------------------------------------------

    def join(self, topic: str, payload: Mapping[str, Any], now: float) -> None:
        """Join ``topic`` with ``payload`` now, or as soon as the socket opens.

        Joining a topic again replaces its stored payload and rejoins it. Raises InvalidInput
        (and changes nothing) for a topic outside ``realtime:`` or a payload that is not JSON.
        """
        _check_topic(topic)
        fr.check_payload("payload", payload)
        stored = copy.deepcopy(dict(payload))  # later changes by the caller must not leak in
        if self._access_token is not None:
            stored["access_token"] = self._access_token
        channel = self._channels.get(topic)
        if channel is None or channel.state is ChannelState.LEAVING:
            channel = self._channels[topic] = _Channel(topic, stored)
        channel.payload = stored
        channel.failures = 0
        if self._open:
            self._move(channel, Input.JOIN)
            self._send_join(channel, now)
        else:
            self._move(channel, Input.JOIN_OFFLINE)
            channel.deadline = None

    def leave(self, topic: str, now: float) -> None:
        """Leave ``topic``; reports ChannelClosed(rejoining=False) once the server confirms (or
        at once when offline). Leaving an unknown topic does nothing."""
        channel = self._channels.get(topic)
        if channel is None or channel.state is ChannelState.LEAVING:
            return
        if not self._open or channel.join_ref is None:
            self._move(channel, Input.FORGET)  # the server has no channel to leave
            self._forget(channel, "left")
            return
        self._move(channel, Input.LEAVE)
        channel.leave_ref = self._send(Frame(topic, "phx_leave", {}, join_ref=channel.join_ref))
        channel.deadline = now + self.leave_timeout_s

    def push(self, topic: str, event: str, payload: Mapping[str, Any]) -> str | None:
        """Send ``event`` on a joined channel; returns its ref, or None when ``topic`` is not
        joined right now (nothing is queued: the caller decides what to resend after a join).

        Raises InvalidInput (and changes nothing) for a reserved event or a non-JSON payload.
        """
        if not isinstance(event, str) or not event or event in _CLIENT_ONLY_EVENTS:
            raise InvalidInput("event", f"{event!r} cannot be pushed by the application")
        fr.check_payload("payload", payload)
        channel = self._channels.get(topic)
        if not self._open or channel is None or channel.state is not ChannelState.JOINED:
            return None
        return self._send(Frame(topic, event, dict(payload), join_ref=channel.join_ref))

    def set_access_token(self, token: str) -> None:
        """Use ``token`` from now on: pushed to joined channels, stored for every rejoin."""
        if not isinstance(token, str) or not token.strip():
            raise InvalidInput("access_token", "must be a non-empty string")
        if token == self._access_token:
            return
        self._access_token = token
        for channel in self._channels.values():
            channel.payload = {**channel.payload, "access_token": token}
            if self._open and channel.state is ChannelState.JOINED:
                self._send_token(channel)

    # Frames from the server ----------------------------------------------------------------

    def receive_text(self, text: str | bytes, now: float) -> None:
        """Handle one frame from the server. Bad frames are reported as InvalidFrame."""
        if not self._open:
            return
        try:
            frame = fr.decode_frame(text)
            if frame.topic == PHOENIX_TOPIC:
                self._on_phoenix(frame)
            elif (channel := self._channels.get(frame.topic)) is not None:
                self._on_channel_frame(channel, frame, now)
        except FrameError as exc:
            self._events.append(InvalidFrame(str(exc)))

    def _on_phoenix(self, frame: Frame) -> None:
        if (
            frame.event == "phx_reply"
            and frame.ref is not None
            and frame.ref == self._heartbeat_ref
        ):
            self._heartbeat_ref = None
            self._reconnect_attempt = 0  # the server answers: this connection works

    def _on_channel_frame(self, channel: _Channel, frame: Frame, now: float) -> None:
        topic, event, payload = frame.topic, frame.event, frame.payload
        if event == "phx_reply":
            self._on_reply(channel, frame, now)
        elif event in ("phx_close", "phx_error"):
            self._on_server_end(channel, frame, now)
        elif event == "system":
            self._on_system(channel, payload)
        elif event == "postgres_changes":
            self._events.append(fr.postgres_change(topic, payload))
        elif event == "presence_state":
            self._events.append(PresenceState(topic, fr.presence_metas(payload)))
        elif event == "presence_diff":
            joins = fr.presence_metas(payload.get("joins", {}))
            leaves = fr.presence_metas(payload.get("leaves", {}))
            self._events.append(PresenceDiff(topic, joins, leaves))
        elif event == "broadcast":
            self._events.append(fr.broadcast(topic, payload))

    def _on_reply(self, channel: _Channel, frame: Frame, now: float) -> None:
        status = frame.payload.get("status")
        response = frame.payload.get("response")
        response = response if isinstance(response, dict) else {}
        if frame.ref is not None and frame.ref == channel.join_ref:
            if channel.state is ChannelState.JOINING:  # else: the reply of a timed-out join
                self._on_join_reply(channel, status == "ok", response, now)
            return
        if frame.ref is not None and frame.ref == channel.leave_ref:
            if self._move(channel, Input.LEAVE_DONE) is ChannelState.CLOSED:
                self._forget(channel, "left")
            return
        reason = fr.reason_of(response, "")
        if (
            status == "error"
            and reason == "unmatched topic"
            and channel.state is ChannelState.JOINED
        ):
            self._fail(channel, Input.UNMATCHED, now, ChannelError(channel.topic, reason))
        self._events.append(Reply(frame.topic, frame.ref, str(status), response))

    def _on_join_reply(
        self, channel: _Channel, ok: bool, response: Mapping[str, Any], now: float
    ) -> None:
        if not ok:
            reason = fr.reason_of(response, "join refused")
            self._fail(channel, Input.JOIN_ERROR, now, ChannelError(channel.topic, reason))
            return
        self._move(channel, Input.JOIN_OK)
        channel.deadline, channel.failures, channel.last_error = None, 0, None
        self._reconnect_attempt = 0
        raw = response.get("postgres_changes")
        bindings = tuple(b for b in raw if isinstance(b, dict)) if isinstance(raw, list) else ()
        self._events.append(ChannelJoined(channel.topic, bindings))
        if self._access_token is not None and channel.joined_with != self._access_token:
            self._send_token(channel)  # the token changed while the join was in flight

    def _on_server_end(self, channel: _Channel, frame: Frame, now: float) -> None:
        if frame.ref is not None and frame.ref != channel.join_ref:
            return  # it ends an older join of this topic
        crashed = frame.event == "phx_error"
        before = channel.state
        after = self._move(channel, Input.SERVER_ERROR if crashed else Input.SERVER_CLOSE)
        if after is ChannelState.CLOSED:
            self._forget(channel, "left")
        elif after is ChannelState.WAITING and before is not ChannelState.WAITING:
            default = "channel crashed" if crashed else "closed by server"
            reason = fr.reason_of(frame.payload, channel.last_error or default)
            event: Event = (
                ChannelError(channel.topic, reason)
                if crashed
                else ChannelClosed(channel.topic, reason, rejoining=True)
            )
            self._schedule_rejoin(channel, now, reason)
            self._events.append(event)

    def _on_system(self, channel: _Channel, payload: Mapping[str, Any]) -> None:
        status, message = payload.get("status"), payload.get("message")
        if not isinstance(message, str):
            raise FrameError("system: message must be a string")
        if status == "error":
            channel.last_error = message
            self._events.append(ChannelError(channel.topic, message))
        elif payload.get("extension") == "postgres_changes" and message == SUBSCRIBED_TO_POSTGRES:
            self._events.append(PostgresSubscribed(channel.topic))

    # Helpers -------------------------------------------------------------------------------

    def _move(self, channel: _Channel, what: Input) -> ChannelState:
        channel.state = TRANSITIONS.get((channel.state, what), channel.state)
        return channel.state

    def _fail(self, channel: _Channel, what: Input, now: float, event: ChannelError) -> None:
        if self._move(channel, what) is ChannelState.WAITING:
            self._schedule_rejoin(channel, now, event.reason)
            self._events.append(event)

    def _schedule_rejoin(self, channel: _Channel, now: float, reason: str) -> None:
        channel.deadline = now + rejoin_delay(channel.failures, reason)
        channel.failures += 1

    def _forget(self, channel: _Channel, reason: str) -> None:
        """Drop a channel that reached CLOSED."""
        if self._channels.get(channel.topic) is channel:
            del self._channels[channel.topic]
        self._events.append(ChannelClosed(channel.topic, reason, rejoining=False))

    def _send_join(self, channel: _Channel, now: float) -> None:
        ref = self._next_ref()
        channel.join_ref, channel.leave_ref = ref, None
        channel.joined_with = channel.payload.get("access_token")
        channel.deadline = now + self.join_timeout_s
        self._out.append(
            fr.encode_frame(Frame(channel.topic, "phx_join", channel.payload, ref, ref))
        )

    def _send_token(self, channel: _Channel) -> None:
        payload = {"access_token": self._access_token}
        self._send(Frame(channel.topic, "access_token", payload, join_ref=channel.join_ref))

    def _send(self, frame: Frame) -> str:
        ref = self._next_ref()
        frame = Frame(frame.topic, frame.event, frame.payload, ref, frame.join_ref)
        self._out.append(fr.encode_frame(frame))
        return ref

    def _next_ref(self) -> str:
        self._last_ref += 1
        return str(self._last_ref)


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not topic.startswith(TOPIC_PREFIX):
        raise InvalidInput("topic", f"a channel topic starts with {TOPIC_PREFIX!r}")
    if not topic[len(TOPIC_PREFIX) :].strip():
        raise InvalidInput("topic", "a channel topic needs a name after the prefix")
