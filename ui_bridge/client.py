"""The Python client of the local API (what editors' Python tooling and ``syncd`` CLI use).

::

    client = await connect(data_dir=path)        # reads <data-dir>/daemon.json
    row = await client.call("workspace.create", {"name": "notes"})
    async with await client.subscribe(["message.*"]) as events:
        async for event in events:               # Event(subscription, seq, topic, data)
            ...
    await client.close()

A stream subscribed without ``since`` first gets the latest ``cloud.status`` / ``sync.status``
event its topics match, if any (retained: its seq is at most the one ``subscribe`` answered).
``connect`` raises a ``DaemonUnavailable``: ``DaemonNotRunning``, ``DaemonNotAnswering`` (it runs
but does not complete the handshake in time) or ``TokenRefused`` (the discovery file's token is
not the running daemon's). Calls raise ``RpcError`` (the server's error object) or
``ConnectionLost``. If the connection
drops, the client reconnects (re-reading the discovery file: a restarted daemon has a new port
and token) and resubscribes every stream with ``since`` = the last seq it delivered, so a
stream sees every event once, in order; if the daemon no longer retains them the stream raises
``RefetchRequired``. So does ``subscribe(topics, since=…)`` when ``since`` is no longer retained
(the daemon's -32001 refetch answer): ``RefetchRequired`` is the ``RpcError`` of that answer, so
``except RpcError`` catches it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine, Sequence
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import CloseCode

from daemon.logs import RedactSecrets
from ui_bridge.discovery import (
    COMPACT_ROLE,
    LOCK_FILE,
    DiscoveryInfo,
    discovery_path,
    is_data_dir_locked,
    is_pid_alive,
    lock_owner,
    read_discovery,
)
from ui_bridge.jsonrpc import RpcError
from ui_bridge.streams import (
    Event,
    EventStream,
    RefetchRequired,
    refetch_of,
    subscription_failure,
)

__all__ = [
    "Client",
    "ConnectionLost",
    "DaemonNotAnswering",
    "DaemonNotRunning",
    "DaemonUnavailable",
    "Event",
    "EventStream",
    "RefetchRequired",
    "RpcError",
    "TokenRefused",
    "connect",
]

logger = logging.getLogger(__name__)

MAX_FRAME = 64 << 20
#: How many events (and bytes of their frames) a stream holds for a consumer that does not
#: keep up, before it drops them and catches up from the daemon's changelog (EventStream).
MAX_QUEUE = 16384
MAX_QUEUE_BYTES = 64 << 20


def _ws_logger() -> logging.Logger:
    ws_logger = logging.getLogger("ui_bridge.client.websockets")
    if not any(isinstance(f, RedactSecrets) for f in ws_logger.filters):
        ws_logger.addFilter(RedactSecrets())
    return ws_logger


OnResult = Callable[[Any], None]


class DaemonUnavailable(Exception):
    """The daemon of a data dir cannot be talked to; ``pid`` is its pid when one runs."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class DaemonNotRunning(DaemonUnavailable):
    """No daemon serves this data dir (no discovery file, its pid is dead, or no daemon holds
    the data dir's lock)."""


class DaemonNotAnswering(DaemonUnavailable):
    """A daemon runs (it holds the data dir's lock) but did not complete the handshake in
    time or refused the connection: it may be stopped (SIGSTOP), busy, starting or stopping."""


class TokenRefused(DaemonUnavailable):
    """The running daemon refused the discovery file's token (401): the file was changed, or
    it was written by another start of the daemon."""


class ConnectionLost(Exception):
    """The connection dropped before the answer arrived."""


class Client:
    """One connection to the daemon; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        *,
        reconnect: bool = True,
        connect_timeout: float = 10.0,
        max_queue: int = MAX_QUEUE,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.info: DiscoveryInfo | None = None
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], OnResult | None, OnResult | None]] = {}
        self._streams: dict[str, EventStream] = {}
        self._connected = asyncio.Event()
        self._closing = False
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Requests whose caller was cancelled before the answer: what to do with their result
        # (a subscribe's: unsubscribe it, or it stays on the daemon's 256 for good).
        self._orphans: dict[int, OnResult] = {}
        self._open_streams: set[EventStream] = set()
        # Set once the client will not connect again: close(), or a lost connection without
        # ``reconnect``. Calls waiting for a connection then fail at once.
        self._closed = asyncio.Event()

    async def open(self) -> None:
        """Connect once (raises ``DaemonUnavailable``) and start reading."""
        await self._connect()
        self._reader = asyncio.create_task(self._run(), name="bridge-client-reader")

    async def _connect(self) -> None:
        info = read_discovery(self.data_dir)
        if info is None or not is_pid_alive(info.pid):
            if is_data_dir_locked(self.data_dir):  # starting, or its file was removed
                pid, owner = lock_owner(self.data_dir)
                if owner == COMPACT_ROLE:  # no daemon runs until it is done
                    raise DaemonNotRunning(
                        f"no daemon is running for {self.data_dir}: syncd compact"
                        f" (pid {pid}) is compacting its database; start the daemon once it"
                        " is done"
                    )
                raise DaemonNotAnswering(
                    f"a daemon holds {self.data_dir / LOCK_FILE} but"
                    f" {discovery_path(self.data_dir)} is missing or damaged: it is starting,"
                    " or it writes the file again within seconds; try again",
                    pid=pid,
                )
            raise DaemonNotRunning(f"no daemon is running for {self.data_dir}")
        try:
            self._ws = await ws_connect(
                info.url,
                additional_headers={"Authorization": f"Bearer {info.token}"},
                compression=None,
                max_size=MAX_FRAME,
                open_timeout=self.connect_timeout,
                logger=_ws_logger(),
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            # WebSocketException: also a handshake the daemon dropped (killed meanwhile)
            raise _unavailable(self.data_dir, info, exc) from exc
        self.info = info
        self._connected.set()

    async def call(self, method: str, params: Any = None) -> Any:
        """Call ``method``; returns its result or raises ``RpcError`` / ``ConnectionLost``."""
        return await self._call(method, params, None)

    async def _connection(self) -> ClientConnection:
        """The open connection. While the client reconnects, waits up to ``connect_timeout``
        for it; when none will come (closed, or lost without ``reconnect``), fails at once."""
        if self._closing:
            raise ConnectionLost("the client is closed")
        if not self._connected.is_set() and not self._closed.is_set():
            await _first_set(self._connected, self._closed, within=self.connect_timeout)
        if not self._connected.is_set():
            raise ConnectionLost("the client is closed" if self._closing else NOT_CONNECTED)
        assert self._ws is not None
        return self._ws

    async def _unsubscribe(self, subscription: str) -> None:
        with contextlib.suppress(RpcError, ConnectionLost):
            await self.call("unsubscribe", {"subscription": subscription})

    async def _call(
        self,
        method: str,
        params: Any,
        on_result: OnResult | None,
        on_orphan: OnResult | None = None,
    ) -> Any:
        """``on_result`` runs in the reader on the answer's result, before the next frame;
        ``on_orphan`` does when the caller was cancelled before the answer came."""
        ws = await self._connection()
        req_id = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params is not None:
            request["params"] = params
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (future, on_result, on_orphan)
        try:
            await ws.send(orjson.dumps(request), text=True)
            return await future
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from exc
        finally:
            entry = self._pending.pop(req_id, None)
            if entry is not None and on_orphan is not None:
                if future.cancelled() or not future.done():  # cancelled: its answer may come
                    self._orphans[req_id] = on_orphan
            if future.done() and not future.cancelled():
                future.exception()  # the send failed after the reader failed it: seen here

    async def subscribe(self, topics: Sequence[str], since: int | None = None) -> EventStream:
        """Subscribe; replay from ``since`` when given. Returns the stream of events; raises
        ``RefetchRequired`` when the daemon no longer retains the events after ``since``."""
        stream = EventStream(self, topics, since or 0)
        try:
            await self._start_stream(stream, since)
        except asyncio.CancelledError:
            if stream.subscription:  # answered, but no one will read it
                self._streams.pop(stream.subscription, None)
                self._spawn(self._unsubscribe(stream.subscription), "bridge-unsubscribe")
            raise
        except RpcError as exc:
            refetch = refetch_of(exc)
            if refetch is None:
                raise
            raise refetch from None
        self._open_streams.add(stream)
        return stream

    async def _start_stream(self, stream: EventStream, since: int | None) -> None:
        def registered(result: Any) -> None:
            # Runs in the reader before the next frame, so no event of it is missed.
            stream.subscription = result["subscription"]
            if since is None:  # (retained events, at most this seq, may come first)
                stream.last_seq = result["seq"]
            else:
                stream._delivered = since
            stream._lagging = False
            self._streams[stream.subscription] = stream

        params: dict[str, Any] = {"topics": list(stream.topics)}
        if since is not None:
            params["since"] = since

        def orphaned(result: Any) -> None:
            self._spawn(self._unsubscribe(result["subscription"]), "bridge-unsubscribe")

        await self._call("subscribe", params, registered, orphaned)

    async def _run(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for raw in ws:
                    self._receive(raw)
            except ConnectionClosed:
                pass
            self._connected.clear()
            self._fail_pending(_lost(ws))
            if self._closing or not self.reconnect:
                self._closed.set()
                self._end_streams(_lost(ws))
                return
            await self._reconnect()

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                await self._connect()
            except DaemonUnavailable:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), delay)
                delay = min(delay * 2, 2.0)
                continue
            if self._closing:
                assert self._ws is not None
                await self._ws.close()
                return
            self._streams = {}
            # The reader must run to receive the answers, so resubscribing runs beside it.
            self._spawn(self._resubscribe(), "bridge-resubscribe")
            return

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` beside the reader; close() cancels it."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drop_subscription(self, stream: EventStream) -> None:
        """``stream``'s consumer fell behind: unsubscribe it (its events stop coming; it
        catches up from its ``last_seq`` once drained, see EventStream)."""
        self._streams.pop(stream.subscription, None)
        self._spawn(self._unsubscribe(stream.subscription), "bridge-lag")

    async def _restart(self, stream: EventStream) -> bool:
        """Subscribe ``stream`` again from its ``last_seq``; a refusal ends it (RefetchRequired
        when its events are gone). False when the connection dropped meanwhile: the reader
        reconnects and resubscribes every open stream, or ends them."""
        try:
            await self._start_stream(stream, stream.last_seq)
        except RpcError as exc:
            self._open_streams.discard(stream)
            stream._fail(refetch_of(exc) or exc)
        except ConnectionLost:
            return False
        return True

    async def _catch_up(self, stream: EventStream) -> None:
        """Subscribe a lagging stream again (as a reconnect would)."""
        await self._restart(stream)

    async def _resubscribe(self) -> None:
        for stream in list(self._open_streams):
            if stream.closed:
                continue
            if not await self._restart(stream):
                return
            if stream.closed:  # closed while it was resubscribing: no one reads it
                self._streams.pop(stream.subscription, None)
                await self._unsubscribe(stream.subscription)

    def _receive(self, raw: str | bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            logger.warning("client.bad-frame")
            return
        for item in message if isinstance(message, list) else (message,):
            if isinstance(item, dict):
                self._receive_item(item, len(raw))

    def _receive_item(self, item: dict[str, Any], size: int) -> None:
        method = item.get("method")
        if method == "event":
            params = item["params"]
            stream = self._streams.get(params["subscription"])
            if stream is not None:
                event = Event(
                    params["subscription"],
                    params["seq"],
                    params["topic"],
                    params["data"],
                    bool(params.get("ephemeral", False)),
                )
                stream._receive(event, size)
            return
        if method == "subscription.error":
            params = item["params"]
            stream = self._streams.pop(params["subscription"], None)
            if stream is not None:
                self._open_streams.discard(stream)
                stream._fail(subscription_failure(params))
            return
        req_id = item.get("id")
        entry = self._pending.get(req_id)  # type: ignore[arg-type]
        if entry is None or entry[0].cancelled():
            self._receive_orphan(req_id, item)
            return
        future, on_result, _ = entry
        if future.done():
            return
        if "error" in item:
            error = item["error"]
            future.set_exception(RpcError(error["code"], error["message"], error.get("data")))
        else:
            if on_result is not None:
                on_result(item.get("result"))
            future.set_result(item.get("result"))

    def _receive_orphan(self, req_id: Any, item: dict[str, Any]) -> None:
        """The answer to a call whose caller was cancelled (its task may not have run its
        cleanup yet): what the call made is undone, e.g. a subscribe's subscription."""
        entry = self._pending.pop(req_id, None)
        orphaned = entry[2] if entry is not None else self._orphans.pop(req_id, None)
        if orphaned is not None and "result" in item:
            orphaned(item["result"])

    def _fail_pending(self, exc: BaseException) -> None:
        for future, _, _ in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()
        self._orphans.clear()  # (what they made ended with the connection)

    def _end_streams(self, exc: BaseException) -> None:
        for stream in self._open_streams:
            stream._fail(StopAsyncIteration() if self._closing else exc)
        self._open_streams.clear()
        self._streams.clear()

    async def close(self) -> None:
        """Close the connection; open streams end."""
        self._closing = True
        self._closed.set()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


NOT_CONNECTED: Final = "not connected to the daemon"
LOST: Final = "connection to the daemon lost"


def _lost(ws: ClientConnection) -> ConnectionLost:
    """What the callers of a dropped connection are told: why, when the daemon said it (a
    request over its frame limit is closed with 1009 and the sizes; a stop with 1001)."""
    close = ws.protocol.close_rcvd
    if close is None or close.code == CloseCode.NORMAL_CLOSURE:
        return ConnectionLost(LOST)
    return ConnectionLost(f"{LOST}: the daemon closed it with {close}")


async def _first_set(*events: asyncio.Event, within: float) -> None:
    """Wait until one of ``events`` is set, at most ``within`` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _unavailable(data_dir: Path, info: DiscoveryInfo, exc: Exception) -> DaemonUnavailable:
    """Why the daemon the discovery file names did not let us in (``exc``)."""
    if not is_data_dir_locked(data_dir):  # the file is stale: its pid is another process now
        return DaemonNotRunning(f"no daemon is running for {data_dir}")
    if isinstance(exc, InvalidStatus) and exc.response.status_code == HTTPStatus.UNAUTHORIZED:
        return TokenRefused(
            f"the daemon (pid {info.pid}) refused the token in {discovery_path(data_dir)}: the "
            "file was changed, or it belongs to another start of the daemon",
            pid=info.pid,
        )
    return DaemonNotAnswering(
        f"the daemon (pid {info.pid}) at {info.url} does not answer: {exc}", pid=info.pid
    )


async def connect(
    *,
    data_dir: Path,
    reconnect: bool = True,
    connect_timeout: float = 10.0,
    max_queue: int = MAX_QUEUE,
    max_queue_bytes: int = MAX_QUEUE_BYTES,
) -> Client:
    """Connect to the daemon serving ``data_dir``; raises ``DaemonUnavailable``."""
    client = Client(
        data_dir,
        reconnect=reconnect,
        connect_timeout=connect_timeout,
        max_queue=max_queue,
        max_queue_bytes=max_queue_bytes,
    )
    await client.open()
    return client
