"""One WebSocket connection: read frames, dispatch them concurrently, write replies and events.

Each incoming frame runs as its own task, started where websockets parses it (no queue and no
reader-task wake-up per frame: ``BridgeConnection``), at most ``MAX_IN_FLIGHT`` per connection
(past that the connection stops reading, so TCP pushes back on the client), and its reply is
sent as soon as it is ready. So a client that pipelines requests gets its writes
group-committed together, and replies may come back in another order than the requests:
JSON-RPC matches them by ``id``. The order in which one connection's writes commit is NOT
promised either; a client that needs one write to follow another waits for the first reply.
A batch frame is answered as one array once all its items are done (``Dispatcher.handle_frame``).

Everything outgoing goes through the connection's bounded ``Outbox``; a single writer task drains
it. When a client stops reading, its outbox fills up (``send_queue_size`` frames or
``send_queue_bytes`` bytes) and the connection is closed (1008) — the publisher never waits for
it. ``subscribe`` with ``since`` starts its replay once its reply has
been queued, so the reply comes before the replayed events; likewise one without ``since`` that
has retained events to get first (``hub.py``) sends them, in the same step, right after its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State

from daemon.errors import StoreUnavailable
from ui_bridge.dispatch import Dispatcher
from ui_bridge.hot import HotLoop
from ui_bridge.hub import EventHub, Subscription
from ui_bridge.jsonrpc import ErrorCode, RpcError, encode_notification
from ui_bridge.methods.spec import invalid_params
from ui_bridge.methods.system import MAX_SUBSCRIPTIONS
from ui_bridge.outbox import Outbox
from ui_bridge.topics import TopicFilter
from ui_bridge.wire import take_text_frame, text_frame

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = ["BridgeConnection", "Outbox", "Session", "SessionServices"]

logger = logging.getLogger(__name__)

MAX_BATCH = 256
MAX_IN_FLIGHT = 128  # requests (frames) of one connection being handled at once
CLOSE_TIMEOUT = 1.0
DRAIN_TIMEOUT = 1.0  # a closed connection's requests still running get this long, then cancelled
DIRECT_WRITE_LIMIT = 1 << 16
#: The writer hands the socket at most this much at once (plus one frame): what a client that
#: stopped reading leaves in the transport's buffer, beyond the outbox's own byte bound.
WRITE_BATCH_BYTES = 1 << 20

AfterReply = Callable[[], None]
#: What the request being handled runs once its reply is queued (set per request task).
_after_reply: contextvars.ContextVar[list[AfterReply] | None] = contextvars.ContextVar(
    "after_reply", default=None
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class BridgeConnection(ServerConnection):
    """A server connection that hands each whole text frame straight to its session.

    websockets queues every incoming message for a reader task, which costs one wake-up (a
    loop turn) per frame. ``frame_sink`` (set by the session while it runs) may take a frame
    as it is parsed; a frame it refuses (binary, fragmented, or over the in-flight bound)
    takes websockets' usual path to ``async for message in ws``.

    Before that, ``data_received`` reads the usual request (a whole masked text frame) itself
    (``wire.take_text_frame``) and hands its payload to ``text_sink``, when websockets' parser
    has nothing buffered, the connection is open and no fragmented message is in progress:
    websockets' parser would produce the same frame at several times the cost. Whatever it
    does not take (any other frame, a partial one, one the sink refuses, and all that follows
    in the chunk) goes to websockets as received.
    """

    frame_sink: Callable[[Frame], bool] | None = None
    text_sink: Callable[[bytes], bool] | None = None

    def data_received(self, data: bytes) -> None:
        sink, protocol = self.text_sink, self.protocol
        if (
            sink is not None
            and protocol.state is State.OPEN
            and not protocol.reader.buffer
            and protocol.cur_size is None
        ):
            start, max_size = 0, protocol.max_size
            while (taken := take_text_frame(data, start, max_size)) is not None:
                if not sink(taken[0]):
                    break
                start = taken[1]
            if start == len(data):
                return
            if start:
                data = data[start:]
        super().data_received(data)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        """websockets' opening handshake, except that a peer that never sends a valid upgrade
        request (a port probe, a plain HTTP request, a client that gives up) is one line at
        INFO, not an ERROR with a traceback: it is no daemon error. A failure of our own
        (``process_request`` raising) still propagates, and websockets logs its traceback."""
        try:
            await super().handshake(*args, **kwargs)
        except (InvalidHandshake, ConnectionClosed) as exc:
            if isinstance(exc, ConnectionClosed):
                reason = "the client closed the connection before the handshake ended"
            else:
                reason = str(exc) + (f": {exc.__cause__}" if exc.__cause__ is not None else "")
            peer = self.remote_address
            if isinstance(peer, tuple):
                peer = f"{peer[0]}:{peer[1]}"
            self.logger.info("handshake failed: %s peer=%s", reason, peer)
            # conn_handler then finds the connection not open and drops it, logging nothing

    def process_event(self, event: Event) -> None:
        sink = self.frame_sink
        if sink is not None and isinstance(event, Frame) and sink(event):
            return
        super().process_event(event)


_MESSAGE_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})


@dataclass
class SessionServices:
    """What every session shares (owned by the server)."""

    store: Store
    hub: EventHub
    dispatcher: Dispatcher
    send_queue_size: int
    send_queue_bytes: int
    status: Callable[[], dict[str, Any]]
    describe: Callable[[], dict[str, Any]]
    hot: HotLoop  # kept awake a moment after each reply (see ui_bridge/hot.py)


class Session:
    """The server side of one connection; also the ``CallContext`` handlers receive."""

    def __init__(self, ws: ServerConnection, services: SessionServices) -> None:
        self.id = secrets.token_hex(4)
        self.ws = ws
        #: created on the loop that serves it; cached: ``asyncio.get_running_loop()`` (and so
        #: ``asyncio.create_task``) costs a ``getpid`` system call on every call (CPython 3.11)
        self._loop = asyncio.get_running_loop()
        self.services = services
        self.outbox = Outbox(services.send_queue_size, services.send_queue_bytes, self._overflowed)
        self.subscriptions: dict[str, Subscription] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # replays and drops
        self._requests: set[asyncio.Task[None]] = set()
        self._room: asyncio.Future[None] | None = None  # the reader waits for a request slot
        self._backlog = 0  # messages left to websockets' queue, not yet read by run()
        self._wrote_this_turn = False
        #: the daemon is stopping: new requests are refused (``drain``)
        self.draining = False

    # CallContext

    @property
    def store(self) -> Store:
        return self.services.store

    async def subscribe(self, topics: TopicFilter, since: int | None) -> dict[str, Any]:
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise invalid_params("topics", f"at most {MAX_SUBSCRIPTIONS} subscriptions")
        hub = self.services.hub
        sub = Subscription(secrets.token_hex(8), topics, self.outbox, 0)
        if since is None:
            # held while in a request: in a batch, the other calls' events would otherwise
            # come before the reply that names the subscription
            seq = hub.add_live(sub, hold=_after_reply.get() is not None)
            self.subscriptions[sub.id] = sub
            if not sub.live:  # held: its retained events go first, after the reply
                self._when_replied(lambda: self._send_retained(sub))
        else:
            await hub.add_replaying(sub, since)
            seq = since
            self.subscriptions[sub.id] = sub
            self._when_replied(lambda: self._spawn(self._catch_up(sub), "replay"))
        return {"subscription": sub.id, "seq": seq}

    @staticmethod
    def _when_replied(run: AfterReply) -> None:
        """Run ``run`` once the reply of the request being handled is queued (at once when
        not called from a request: there is no reply to wait for)."""
        hooks = _after_reply.get()
        if hooks is not None:
            hooks.append(run)
        else:
            run()

    def _send_retained(self, sub: Subscription) -> None:
        if not self.services.hub.send_retained(sub):  # too much came meanwhile: replay it
            self._spawn(self._catch_up(sub), "replay")

    def unsubscribe(self, subscription: str) -> bool:
        if self.subscriptions.pop(subscription, None) is None:
            return False
        self.services.hub.remove(subscription)
        return True

    def publish_to_others(self, topic: str, data: dict[str, Any]) -> int:
        return self.services.hub.publish_live(topic, data, skip=self.outbox)

    def daemon_status(self) -> dict[str, Any]:
        return self.services.status()

    def describe(self) -> dict[str, Any]:
        return self.services.describe()

    # connection lifecycle

    async def run(self) -> None:
        """Serve the connection until it closes."""
        writer = self._loop.create_task(self._write_loop(), name=f"bridge-writer-{self.id}")
        ws = self.ws
        if isinstance(ws, BridgeConnection):
            ws.frame_sink = self._take_frame
            ws.text_sink = self._take_text
        try:
            async for message in ws:
                self._backlog = max(0, self._backlog - 1)
                if len(self._requests) >= MAX_IN_FLIGHT:
                    await self._wait_for_request_slot()
                self._start(message)
        except ConnectionClosed:
            pass
        finally:
            if isinstance(ws, BridgeConnection):
                ws.frame_sink = ws.text_sink = None
            await self._cleanup(writer)

    def _take_frame(self, frame: Frame) -> bool:
        """Start a whole text frame's request at once, unless messages wait in websockets'
        queue (they go first) or the in-flight bound is reached (``run`` waits for a slot)."""
        # (bytes() copies nothing: websockets parses frames into bytes)
        if frame.opcode is Opcode.TEXT and frame.fin and self._take_text(bytes(frame.data)):
            return True
        if frame.fin and frame.opcode in _MESSAGE_OPCODES:
            self._backlog += 1
        return False

    def _take_text(self, payload: bytes) -> bool:
        """``_take_frame`` for a whole text frame's payload. A payload that is not UTF-8 is
        refused too: websockets' own path then fails the connection with 1007, as RFC 6455
        (8.1) requires of a text message (only a payload with a non-ASCII byte is checked)."""
        if self._backlog or len(self._requests) >= MAX_IN_FLIGHT:
            return False
        if not payload.isascii() and not _is_utf8(payload):
            return False
        self._start(payload)
        return True

    def _start(self, message: bytes | str) -> None:
        if self.draining:
            self._refuse(message)
            return
        self._requests.add(self._loop.create_task(self._handle(message)))

    def _refuse(self, message: bytes | str) -> None:
        """Answer a request that came while draining with -32010, unless the outgoing queue
        is half full: then stop reading (the connection closes soon; what the client sent
        after is never read, so never run) rather than overflow the queue, which would drop
        the replies of the writes that did run."""
        if self.outbox.is_half_full():
            self.ws.transport.pause_reading()
            return
        reply = self.services.dispatcher.refuse_frame(message, RpcError(ErrorCode.SHUTTING_DOWN))
        if reply is not None:
            self._send_reply(reply)

    async def drain(self, limit_s: float) -> None:
        """Before the daemon closes the connection: refuse every new request (-32010), let
        the requests already running finish and hand their replies to the socket, within
        ``limit_s`` seconds. A client so has an answer for each write the store commits (unless one
        outlasts the timeout) and knows which ones to send again to the next daemon."""
        self.draining = True
        try:
            async with asyncio.timeout(limit_s):
                while self._requests:
                    await asyncio.wait(set(self._requests))
                await self.outbox.wait_until_empty()
        except TimeoutError:
            logger.warning(
                "conn.drain.timeout conn=%s requests=%d queued=%d",
                self.id,
                len(self._requests),
                len(self.outbox.frames),
            )

    async def _handle(self, message: bytes | str) -> None:
        """One frame: dispatch it, send its reply, then run what it asked to follow the reply."""
        try:
            hooks: list[AfterReply] = []
            _after_reply.set(hooks)  # this task's own context
            try:
                reply = await self.services.dispatcher.handle_frame(message, self, self.id)
            except Exception:  # the dispatcher answers every error itself: this is a bug
                logger.exception("request.failed conn=%s", self.id)
                return
            if reply is not None:
                self._send_reply(reply)
            for run in hooks:
                run()
        finally:  # not a done callback: that would cost a loop callback per request
            self._request_done(asyncio.current_task(self._loop))

    def _request_done(self, task: asyncio.Task[Any] | None) -> None:
        self._requests.discard(task)
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    async def _wait_for_request_slot(self) -> None:
        while len(self._requests) >= MAX_IN_FLIGHT:
            self._room = self._loop.create_future()
            await self._room
        self._room = None

    def _send_reply(self, frame: bytes) -> None:
        """Write at once when this is the connection's only request in flight, nothing is
        queued and the socket keeps up; else queue it.

        Saves the writer task's wake-up (one event-loop turn) on the request/reply hot path
        without reordering anything: the outbox is empty and its writer is idle. A pipelining
        client's replies (other requests in flight) always queue up: they finish in bursts (a
        group commit), and the writer sends a burst with one system call, where a direct write
        of its first reply would cost a second one. Only the first reply of a loop turn goes
        out directly.

        Either way the loop then stays awake a moment (``HotLoop``): a client that waits for
        each reply sends its next request a few hundred microseconds later.
        """
        ws = self.ws
        if (
            len(self._requests) <= 1
            and not self._wrote_this_turn
            and self.outbox.is_idle()
            and ws.protocol.state is State.OPEN
            and not ws.protocol.writes
            and ws.transport.get_write_buffer_size() < DIRECT_WRITE_LIMIT
        ):
            ws.transport.write(text_frame(frame))
            self._wrote_this_turn = True
            self._loop.call_soon(self._new_turn)
        else:
            self.outbox.push(frame)
        self.services.hot.touch()

    def _new_turn(self) -> None:
        self._wrote_this_turn = False

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = self._loop.create_task(coro, name=f"bridge-{what}-{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, sub: Subscription) -> None:
        unreadable: StoreUnavailable | None = None
        try:
            complete = await self.services.hub.catch_up(sub)
        except StoreUnavailable as exc:  # the events are there but cannot be read: say so
            logger.error("replay.failed conn=%s sub=%s reason=%s", self.id, sub.id, exc.reason)
            complete, unreadable = False, exc
        except Exception:
            logger.exception("replay.failed conn=%s sub=%s", self.id, sub.id)
            complete = False
        if not complete and sub.active:
            self.unsubscribe(sub.id)
            self.outbox.push(_subscription_error(sub.id, unreadable))

    async def _write_loop(self) -> None:
        ws, outbox = self.ws, self.outbox
        try:
            while True:
                await outbox.wait_for_frames()
                if outbox.closed:
                    return
                # One flow-control check and one write for a run of frames, not one per frame.
                async with ws.send_context():
                    batch = [text_frame(f) for f in outbox.take(MAX_BATCH, WRITE_BATCH_BYTES)]
                    _write_at_once(ws, batch)
                outbox.taken()
        except ConnectionClosed:
            outbox.close()

    async def close(self, code: int, reason: str) -> None:
        """Close the connection; abort it if the client does not take the close frame in time.

        (websockets' own close waits for the write buffer to drain, which never happens with a
        client that stopped reading.)
        """
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code, reason)
        except TimeoutError:
            logger.info("conn.aborted conn=%s", self.id)
            self.ws.transport.abort()

    def _overflowed(self) -> None:
        logger.warning("conn.dropped conn=%s reason=outgoing-queue-full", self.id)
        self._spawn(self.close(1008, "outgoing queue full: client too slow"), "drop")

    async def _cleanup(self, writer: asyncio.Task[None]) -> None:
        """Let the requests still running finish (briefly; their replies go nowhere), then stop
        everything. Writes already handed to the store commit whatever happens here."""
        if self._requests:
            _, late = await asyncio.wait(self._requests, timeout=DRAIN_TIMEOUT)
            for task in late:
                task.cancel()
            if late:
                logger.info("conn.requests.cancelled conn=%s count=%d", self.id, len(late))
                await asyncio.wait(late)
        for sub_id in list(self.subscriptions):
            self.unsubscribe(sub_id)
        self.outbox.close()
        for task in (writer, *self._tasks):
            if not task.done() and task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(writer, *self._tasks, return_exceptions=True)


def _write_at_once(ws: ServerConnection, frames: list[bytes]) -> None:
    """Hand the protocol's pending output, then ``frames`` (serialised text frames: what
    ``send_text`` would add), to the transport as ONE write.

    ``ws.send_data()`` writes each frame on its own, and each write on an idle transport is a
    ``send`` system call (one GIL release and re-acquisition while the store's thread may be
    busy). An end-of-stream marker (empty chunk) never comes while the connection is open; if
    one does, it is handled as ``send_data`` does (half-close, else close).
    """
    chunks = ws.protocol.data_to_send()
    if all(chunks):
        if chunks:
            frames[:0] = chunks
        if frames:
            ws.transport.write(b"".join(frames))
        return
    for chunk in chunks:  # pragma: no cover - defensive, see above
        if chunk:
            ws.transport.write(chunk)
        elif ws.transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                ws.transport.write_eof()
        else:
            ws.transport.close()


def _subscription_error(sub_id: str, unreadable: StoreUnavailable | None = None) -> bytes:
    """The end of a replay: refetch (the events are no longer kept), or, ``unreadable``,
    the store's own failure (-32603, its reason and message)."""
    if unreadable is not None:
        params = {
            "subscription": sub_id,
            "code": int(ErrorCode.INTERNAL_ERROR),
            "reason": unreadable.reason,
            "message": unreadable.message,
        }
    else:
        params = {"subscription": sub_id, "code": int(ErrorCode.NOT_FOUND), "reason": "refetch"}
    return encode_notification("subscription.error", params)
