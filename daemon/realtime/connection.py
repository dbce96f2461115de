"""The daemon's Realtime connection: one WebSocket per cloud, driving ``PhoenixClient``.

``async with RealtimeConnection(url, apikey, token_provider=…, on_event=…, device_id=…) as rt:``
runs four tasks in a TaskGroup until the block ends:

- sessions: connect, run one socket until it is lost, report it, wait the client's
  ``reconnect_delay`` (full jitter, capped at 30 s) and connect again, forever. A request of
  the daemon's own that reached the cloud meanwhile (``cloud_reachable``) ends that wait: the
  cloud is back, and waiting out the backoff would leave the workspaces without live changes
  for up to 30 s after their sync recovered. Once per outage: only a socket that opens arms it
  again, so a realtime server that stays down is still asked no more often than the backoff
  says (plus one);
- ticker: calls ``tick`` at the client's next deadline (heartbeats, join timeouts, rejoins) and
  releases coalesced presence tracks;
- tokens: asks ``token_provider`` for the access token before every connect and again before the
  current one expires (tokens.refresh_delay), and at once when a channel fails for a token reason;
  ``set_access_token`` pushes it to every joined channel and into every stored join payload;
- dispatch: hands each event to ``on_event`` from a bounded queue. A handler that raises is
  logged with its traceback and the next event is still delivered; a slow handler slows the
  socket's reader down (backpressure) rather than losing events.

The handler receives the events of ``daemon.realtime.frames`` in order. Every ``ChannelJoined``
and ``PostgresSubscribed`` calls for a catch-up pull: realtime is a hint, the pull is the truth.
Only frames are sent under ``_send_lock``; events are queued under ``_pump_lock``, which API
methods never take, so a handler may call ``track``/``broadcast``/``join_workspace`` safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from daemon.backoff import Backoff
from daemon.errors import InvalidInput
from daemon.realtime import channels
from daemon.realtime.frames import (
    BroadcastReceived,
    ChannelClosed,
    ChannelError,
    ChannelJoined,
    ConnectionLost,
    ConnectionOpened,
    Event,
    InvalidFrame,
    PostgresChange,
    PresenceDiff,
    PresenceState,
    check_payload,
)
from daemon.realtime.phoenix import (
    HEARTBEAT_INTERVAL_S,
    JOIN_TIMEOUT_S,
    RECONNECT_BACKOFF,
    ChannelState,
    PhoenixClient,
)
from daemon.realtime.presence import TRACK_INTERVAL_S, Member, PresenceRoster, TrackCoalescer
from daemon.realtime.tokens import EXPIRED_RECHECK_S, refresh_delay, refresh_delay_in, ws_url

__all__ = [
    "EventHandler",
    "RealtimeConnection",
    "TokenLife",
    "TokenProvider",
    "TokenUnavailable",
]

logger = logging.getLogger(__name__)

TokenProvider = Callable[[], Awaitable[str]]
#: Seconds a token the provider gave is still good for, on this device's clock; None when its
#: issuer does not know (then its ``exp`` claim is read: tokens.py).
TokenLife = Callable[[str], float | None]
EventHandler = Callable[[Event], Awaitable[None] | None]

# Timeouts
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
TOKEN_TIMEOUT_S = 30.0
# Limits
EVENT_QUEUE_SIZE = 1024
#: The largest frame the socket takes. websockets' default (1 MiB) is below what Realtime
#: sends: a channel's presence state lists every member (up to 16 KiB each from syncd, any
#: size from other clients) and a broadcast may carry up to 3 MB on Supabase's paid plans. A
#: frame over the limit closes the socket (1009), and the same frame after every rejoin would
#: keep the workspace from live changes for good. Bounded, as every answer of the cloud is
#: (sync/cloud/http.py); the same as uvicorn's default, devcloud's server.
MAX_FRAME_BYTES = 16 << 20
_TOKEN_WORDS = ("token", "jwt")
#: Events whose frames move no deadline of the client (the ticker need not re-plan).
_DEADLINE_NEUTRAL = (PostgresChange, BroadcastReceived)
_conn_ids = itertools.count(1)


class RealtimeConnection:
    """The Realtime client of one cloud (see the module docstring)."""

    def __init__(
        self,
        url: str,
        apikey: str,
        *,
        token_provider: TokenProvider | None,
        on_event: EventHandler,
        device_id: str,
        token_life: TokenLife | None = None,
        # Timeouts
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        join_timeout_s: float = JOIN_TIMEOUT_S,
        backoff: Backoff = RECONNECT_BACKOFF,
        track_interval_s: float = TRACK_INTERVAL_S,
        # Limits
        queue_size: int = EVENT_QUEUE_SIZE,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not device_id.strip():
            raise InvalidInput("device_id", "must be a non-empty string")
        self._url = ws_url(url, apikey)
        self._token_provider = token_provider
        self._token_life = token_life
        self._clock = clock
        self._on_event = on_event
        self.device_id = device_id
        self.conn_id = f"rtc{next(_conn_ids)}"
        self._rand = rand
        self._client = PhoenixClient(
            heartbeat_interval_s=heartbeat_interval_s,
            join_timeout_s=join_timeout_s,
            backoff=backoff,
        )
        self._tracks: TrackCoalescer[str] = TrackCoalescer(track_interval_s)
        self._rosters: dict[str, PresenceRoster] = {}
        self._queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._pump_lock = asyncio.Lock()
        self._wake = asyncio.Event()  # the ticker recomputes its deadline
        self._socket_lost = asyncio.Event()
        self._reconnect_now = asyncio.Event()  # ends the wait between two connect attempts
        self._wake_armed = True  # cloud_reachable may end that wait (once per outage)
        self._token_event = asyncio.Event()  # a new token, or a refresh is wanted now
        self._refresh_now = False
        self._planned: float | None = None  # the deadline the ticker sleeps until
        self._token: str | None = None
        self._token_failure: str | None = None  # the last failure's reason, while failing
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # Lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> RealtimeConnection:
        if self._stack is not None:
            raise RuntimeError("a RealtimeConnection can be entered once")
        self._stack = contextlib.AsyncExitStack()
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        for name, work in (
            ("sessions", self._run_sessions),
            ("ticker", self._run_ticker),
            ("tokens", self._run_tokens),
            ("dispatch", self._run_dispatch),
        ):
            self._tasks.append(group.create_task(work(), name=f"{self.conn_id}.{name}"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        assert self._stack is not None
        # The block's own exception propagates as it is, not wrapped in an ExceptionGroup.
        await self._stack.__aexit__(None, None, None)

    def cloud_reachable(self) -> None:
        """A request to this cloud just succeeded: a reconnect waiting out its backoff goes
        now (once per outage; see the module docstring). Nothing happens while connected."""
        if self._ws is None and self._wake_armed:
            self._wake_armed = False
            self._reconnect_now.set()

    # Queries ---------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._client.is_open

    def channel_state(self, workspace_id: str) -> ChannelState:
        return self._client.channel_state(channels.workspace_topic(workspace_id))

    def members(self, workspace_id: str, now: float | None = None) -> list[Member]:
        """Who is online in the workspace (``now``: Unix seconds, for idleness)."""
        roster = self._rosters.get(channels.workspace_topic(workspace_id))
        return [] if roster is None else roster.members(time.time() if now is None else now)

    # Commands --------------------------------------------------------------------------------

    async def join_workspace(self, workspace_id: str) -> str:
        """Join (or rejoin) the workspace's channel; returns its topic. Raises InvalidInput."""
        topic = channels.workspace_topic(workspace_id)
        payload = channels.workspace_join_payload(workspace_id, self.device_id)
        self._client.join(topic, payload, _loop_time())
        await self._after_command()
        return topic

    async def leave_workspace(self, workspace_id: str) -> None:
        self._client.leave(channels.workspace_topic(workspace_id), _loop_time())
        await self._after_command()

    async def track(self, workspace_id: str, payload: Mapping[str, Any]) -> None:
        """Publish this device's presence in the workspace (see presence.track_payload).

        Coalesced: at most one track per ``track_interval_s`` and 4 per 30 s (Realtime closes
        a channel at the 6th presence message of a 30 s window; presence.TrackCoalescer); the
        latest value wins, and it is tracked again after every rejoin.
        """
        topic = channels.workspace_topic(workspace_id)
        check_payload("payload", payload)
        due = self._tracks.offer(topic, dict(payload), _loop_time())
        if due is not None:
            self._push_track(topic, due)
        await self._after_command()

    async def broadcast(self, workspace_id: str, event: str, payload: Mapping[str, Any]) -> bool:
        """Send a broadcast to the workspace's other devices; False when not joined right now."""
        if not isinstance(event, str) or not event:
            raise InvalidInput("event", "must be a non-empty string")
        check_payload("payload", payload)
        body = {"type": "broadcast", "event": event, "payload": dict(payload)}
        ref = self._client.push(channels.workspace_topic(workspace_id), "broadcast", body)
        await self._send_pending()
        return ref is not None

    async def _after_command(self) -> None:
        await self._send_pending()
        self._wake.set()  # deadlines may have moved and events may wait to be handed on

    def _push_track(self, topic: str, payload: Mapping[str, Any]) -> None:
        body = {"event": "track", "payload": dict(payload)}
        if self._client.push(topic, "presence", body) is None:
            self._tracks.unsent(topic)  # not joined yet: it goes out with the join

    # Sessions --------------------------------------------------------------------------------

    async def _run_sessions(self) -> None:
        while True:
            try:
                reason = await self._session()
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                reason = f"{type(exc).__name__}: {exc}"
                logger.info("realtime.connect.failed conn_id=%s reason=%s", self.conn_id, reason)
            except TokenUnavailable as exc:
                reason = str(exc)
                self._token_failed("realtime.connect.failed", exc)
            except InvalidURI:
                reason = "invalid URL"
                logger.error("realtime.connect.failed conn_id=%s: invalid URL", self.conn_id)
            except Exception:  # supervisor boundary: never stop reconnecting
                reason = "internal error"
                logger.exception("realtime.session.crashed conn_id=%s", self.conn_id)
            self._client.connection_lost(_loop_time(), reason)
            await self._pump()
            delay = self._client.reconnect_delay(self._rand())
            logger.debug("realtime.reconnect conn_id=%s in=%.2fs", self.conn_id, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconnect_now.wait(), delay)
            self._reconnect_now.clear()

    async def _session(self) -> str:
        """Run one socket until it is lost; returns why it ended."""
        await self._refresh_token()
        async with connect(
            self._url,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            open_timeout=OPEN_TIMEOUT_S,
            close_timeout=CLOSE_TIMEOUT_S,
            user_agent_header="syncd-realtime",
        ) as ws:
            self._ws = ws
            self._socket_lost.clear()
            self._wake_armed = True  # the next outage may be cut short again
            try:
                self._client.connection_opened(_loop_time())
                await self._pump()
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._read(ws), name=f"{self.conn_id}.reader")
                    await self._socket_lost.wait()
                    await ws.close()  # ends the reader if the ticker saw the loss first
            finally:
                self._ws = None
        return f"closed (code {ws.close_code}, {ws.close_reason or 'no reason'})"

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._client.receive_text(message, _loop_time())
                await self._pump()
        except ConnectionClosed:
            pass
        finally:
            self._socket_lost.set()

    # Ticker ----------------------------------------------------------------------------------

    async def _run_ticker(self) -> None:
        while True:
            try:
                await self._tick_once()
            except Exception:  # supervisor boundary: the timers must keep running
                logger.exception("realtime.ticker.failed conn_id=%s", self.conn_id)
                await asyncio.sleep(1.0)

    async def _tick_once(self) -> None:
        self._wake.clear()
        self._planned = self._next_deadline()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(self._planned):
                await self._wake.wait()
        self._planned = None
        now = _loop_time()
        self._client.tick(now)
        for topic, payload in self._tracks.take_due(now):
            self._push_track(topic, payload)
        await self._pump()

    def _next_deadline(self) -> float | None:
        times = [self._client.next_deadline(), self._tracks.next_due()]
        return min((t for t in times if t is not None), default=None)

    def _poke(self) -> None:
        """Wake the ticker if something is now due earlier than it planned."""
        deadline = self._next_deadline()
        if deadline is not None and (self._planned is None or deadline < self._planned):
            self._wake.set()

    # Tokens ----------------------------------------------------------------------------------

    async def _run_tokens(self) -> None:
        if self._token_provider is None:
            return  # the server uses the apikey: nothing ever needs refreshing
        failed = False
        while True:
            self._token_event.clear()
            if not self._refresh_now:
                token = self._token
                delay = EXPIRED_RECHECK_S if failed or token is None else self._plan(token)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._token_event.wait()
                if self._token_event.is_set() and not self._refresh_now:
                    failed = False  # a session fetched a new token: plan from that one
                    continue
            self._refresh_now = False
            try:
                await self._refresh_token()
                failed = False
            except TokenUnavailable as exc:  # keep the old token; ask again soon
                self._token_failed("realtime.token.failed", exc)
                failed = True

    def _plan(self, token: str) -> float:
        """Seconds until ``token`` should be replaced: by its life as its issuer knows it on
        this device's clock, else by its ``exp`` (the cloud's clock; tokens.py)."""
        life = None if self._token_life is None else self._token_life(token)
        return refresh_delay(token, self._clock()) if life is None else refresh_delay_in(life)

    def _token_failed(self, event: str, exc: TokenUnavailable) -> None:
        """Log a token failure: a WARNING the first time in a row (its traceback only at
        DEBUG), then DEBUG while the same failure repeats. Offline, the provider fails on every
        reconnect (every few seconds, for hours): one line says so, not one per attempt."""
        repeated = str(exc) == self._token_failure
        self._token_failure = str(exc)
        level = logging.DEBUG if repeated else logging.WARNING
        logger.log(
            level,
            "%s conn_id=%s reason=%s%s",
            event,
            self.conn_id,
            exc,
            " (repeated)" if repeated else "",
            exc_info=exc.__cause__ is not None and logger.isEnabledFor(logging.DEBUG),
        )

    async def _refresh_token(self) -> None:
        """Ask the provider for the current token and hand it to the client (and the server).

        Raises TokenUnavailable when the provider fails, times out or returns no token.
        """
        if self._token_provider is None:
            return
        try:
            async with asyncio.timeout(TOKEN_TIMEOUT_S):
                token = await self._token_provider()
            self._client.set_access_token(token)
        except InvalidInput:
            raise TokenUnavailable("the token provider returned no token") from None
        except Exception as exc:  # a foreign callable: translated once, here
            raise TokenUnavailable(f"the token provider failed ({type(exc).__name__})") from exc
        self._token = token
        if self._token_failure is not None:
            logger.info("realtime.token.recovered conn_id=%s", self.conn_id)
            self._token_failure = None
        self._token_event.set()
        await self._send_pending()

    # Output ----------------------------------------------------------------------------------

    async def _send_pending(self) -> None:
        async with self._send_lock:
            frames = self._client.data_to_send()
            ws = self._ws
            if ws is None:
                return
            try:
                for frame in frames:
                    await ws.send(frame)
            except ConnectionClosed:
                self._socket_lost.set()

    async def _pump(self) -> None:
        """Send what the client has to send, and queue its events for the handler, in order."""
        async with self._pump_lock:
            events = self._client.events_received()
            for event in events:
                self._observe(event)
            sending = self._client.has_data_to_send
            if sending:
                await self._send_pending()
            # e.g. an opened socket or a failed join set a new deadline; a data frame (a
            # change, a broadcast) moves none, and re-planning for each one cost ~4 % of the
            # daemon's CPU while its own push was echoed back row by row.
            if sending or not events or not all(isinstance(e, _DEADLINE_NEUTRAL) for e in events):
                self._poke()
            for event in events:
                await self._queue.put(event)

    def _observe(self, event: Event) -> None:
        """The adapter's own reactions to an event, before the handler sees it."""
        match event:
            case ConnectionOpened():
                logger.info("realtime.connected conn_id=%s", self.conn_id)
            case ConnectionLost(reason=reason):
                logger.info("realtime.disconnected conn_id=%s reason=%s", self.conn_id, reason)
                self._rosters.clear()  # who is online is unknown until the next presence_state
                self._socket_lost.set()
            case ChannelJoined(topic=topic):
                logger.info("realtime.channel.joined conn_id=%s topic=%s", self.conn_id, topic)
                self._tracks.resend(topic)  # the server forgot our presence with the old join
            case PresenceState(topic=topic, state=state):
                self._rosters.setdefault(topic, PresenceRoster()).apply_state(state)
            case PresenceDiff(topic=topic, joins=joins, leaves=leaves):
                self._rosters.setdefault(topic, PresenceRoster()).apply_diff(joins, leaves)
            case ChannelClosed(topic=topic, reason=reason, rejoining=rejoining):
                logger.info(
                    "realtime.channel.closed conn_id=%s topic=%s reason=%s rejoining=%s",
                    self.conn_id,
                    topic,
                    reason,
                    rejoining,
                )
                if not rejoining:
                    self._rosters.pop(topic, None)
                    self._tracks.discard(topic)
                self._check_token_reason(reason)
            case ChannelError(topic=topic, reason=reason):
                logger.warning(
                    "realtime.channel.error conn_id=%s topic=%s reason=%s",
                    self.conn_id,
                    topic,
                    reason,
                )
                self._check_token_reason(reason)
            case InvalidFrame(reason=reason):
                logger.warning("realtime.frame.invalid conn_id=%s reason=%s", self.conn_id, reason)

    def _check_token_reason(self, reason: str) -> None:
        if any(word in reason.lower() for word in _TOKEN_WORDS):
            self._refresh_now = True
            self._token_event.set()

    # Dispatch --------------------------------------------------------------------------------

    async def _run_dispatch(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                result = self._on_event(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a failing handler never stops the next events
                logger.exception(
                    "realtime.handler.failed conn_id=%s event=%s",
                    self.conn_id,
                    type(event).__name__,
                )


class TokenUnavailable(Exception):
    """The token provider could not give an access token (the message names no token)."""


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
