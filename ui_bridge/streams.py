"""The event streams of the Python client (``ui_bridge.client``, which exports them): one
``EventStream`` per subscription, its ``Event``s, and ``RefetchRequired``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ui_bridge.jsonrpc import ErrorCode, RpcError

if TYPE_CHECKING:
    from ui_bridge.client import Client

__all__ = ["Event", "EventStream", "RefetchRequired", "refetch_of", "subscription_failure"]


class RefetchRequired(RpcError):
    """The daemon no longer retains the events after the stream's seq: refetch state, then
    subscribe again. The daemon's answer -32001 with ``data.reason`` "refetch"."""

    def __init__(self, message: str, data: dict[str, Any]) -> None:
        super().__init__(ErrorCode.NOT_FOUND, message, {**data, "reason": "refetch"})


def subscription_failure(params: dict[str, Any]) -> RpcError:
    """What a ``subscription.error`` notification ends its stream with: RefetchRequired, or
    (e.g. reason ``damaged``: the daemon could not read its changelog) the RpcError it says."""
    if params.get("reason", "refetch") == "refetch":
        return RefetchRequired("the daemon no longer retains these events", params)
    code = params.get("code")
    message = params.get("message")
    return RpcError(
        code if type(code) is int else ErrorCode.INTERNAL_ERROR,
        message if isinstance(message, str) else None,
        params,
    )


def refetch_of(exc: RpcError) -> RefetchRequired | None:
    """``exc`` as RefetchRequired when it is the daemon's refetch answer, else None."""
    data = exc.data
    if exc.code != ErrorCode.NOT_FOUND or not isinstance(data, dict):
        return None
    return RefetchRequired(exc.message, data) if data.get("reason") == "refetch" else None


@dataclass(frozen=True, slots=True)
class Event:
    """One event. ``ephemeral`` events (presence, broadcast) are live-only: never stored or
    replayed, and their ``seq`` is the subscription's last durable seq, not a new one."""

    subscription: str
    seq: int
    topic: str
    data: dict[str, Any]
    ephemeral: bool = False


class EventStream:
    """An async iterator of ``Event``s of one subscription, surviving reconnects.

    ``last_seq`` is where a resubscription replays from: the seq ``subscribe`` answered, or
    the last event's if later. Retained events come before that seq (``ui_bridge.client``), so
    duplicates are dropped by ``_delivered``, the last seq delivered, instead.

    Events wait in a queue bounded by the client's ``max_queue`` events and ``max_queue_bytes``
    (their frames' size). A consumer that falls that far behind is not buffered without end:
    the stream unsubscribes and, once its queue is drained, subscribes again from
    ``last_seq``, so it still sees every durable event once, in order (``RefetchRequired`` if
    the daemon no longer retains them); live-only (ephemeral) events of that spell are lost."""

    def __init__(self, client: Client, topics: Sequence[str], seq: int) -> None:
        self.topics = tuple(topics)
        self.last_seq = seq
        self._delivered = seq
        self.subscription = ""
        self._client = client
        self._queue: asyncio.Queue[tuple[Event, int] | BaseException] = asyncio.Queue()
        self._queued_bytes = 0
        self._lagging = False  # events were dropped: catch up from last_seq once drained
        self.closed = False

    def _receive(self, event: Event, size: int) -> None:
        if self._lagging:
            return
        client = self._client
        if self._queue.qsize() >= client.max_queue or self._queued_bytes >= client.max_queue_bytes:
            self._lagging = True
            client._drop_subscription(self)
            return
        if event.ephemeral:  # outside the seq order: never a duplicate to drop
            self._put(event, size)
        elif event.seq > self._delivered:
            self._delivered = event.seq
            self.last_seq = max(self.last_seq, event.seq)
            self._put(event, size)

    def _put(self, event: Event, size: int) -> None:
        self._queued_bytes += size
        self._queue.put_nowait((event, size))

    def _fail(self, exc: BaseException) -> None:
        self._queue.put_nowait(exc)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        if self._lagging and self._queue.empty():
            await self._client._catch_up(self)
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self.closed = True
            raise StopAsyncIteration if isinstance(item, StopAsyncIteration) else item
        event, size = item
        self._queued_bytes -= size
        return event

    async def close(self) -> None:
        """Unsubscribe (best effort) and end the iteration. Never waits for a connection: a
        subscription ends with the connection that made it."""
        if self.closed:
            return
        self.closed = True
        client = self._client
        client._streams.pop(self.subscription, None)
        client._open_streams.discard(self)
        self._queue.put_nowait(StopAsyncIteration())
        if client._connected.is_set():
            await client._unsubscribe(self.subscription)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
