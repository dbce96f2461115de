"""Dispatch: one frame in, the reply bytes (or nothing) out.

This is the only place that turns exceptions into JSON-RPC error objects: ``RpcError`` as is,
the daemon's error tree by ``map_error``, anything else as -32603 (logged with its traceback,
never sent to the client).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from daemon.errors import (
    Conflict,
    DamagedRow,
    InvalidInput,
    NotFound,
    RateLimited,
    ShuttingDown,
    StoreUnavailable,
)
from daemon.sync.cloud.errors import AuthRequired, CloudError, CloudRejected, CloudUnavailable
from daemon.sync.local import CloudNotConfigured
from ui_bridge.jsonrpc import (
    ErrorCode,
    ErrorReply,
    Request,
    RpcError,
    encode_error,
    encode_result,
    join_batch,
    parse_frame,
)
from ui_bridge.methods.spec import MethodTable, bind_params

__all__ = ["Dispatcher", "map_error"]

logger = logging.getLogger(__name__)

#: Items of one batch frame handled at once (a batch of writes shares transactions).
BATCH_WINDOW = 64


def map_error(exc: Exception) -> RpcError | None:
    """The JSON-RPC error for a daemon error, ``None`` for an unexpected exception."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, NotFound):
        data = {"entity": exc.entity, "id": exc.id}
        return RpcError(
            ErrorCode.NOT_FOUND, data={**data, "reason": "deleted"} if exc.deleted else data
        )
    if isinstance(exc, Conflict):
        return RpcError(ErrorCode.CONFLICT, data={"field": exc.field, "reason": exc.message})
    if isinstance(exc, DamagedRow):
        data = {"reason": "damaged_row", "table": exc.table, "id": exc.id}
        return RpcError(ErrorCode.INTERNAL_ERROR, str(exc), {**data, "columns": list(exc.columns)})
    if isinstance(exc, StoreUnavailable):
        return RpcError(ErrorCode.INTERNAL_ERROR, exc.message, {"reason": exc.reason})
    if isinstance(exc, InvalidInput):
        return RpcError(ErrorCode.INVALID_PARAMS, data={"field": exc.field, "reason": exc.message})
    if isinstance(exc, ShuttingDown):
        return RpcError(ErrorCode.SHUTTING_DOWN)
    if isinstance(exc, RateLimited):
        wait = round(exc.retry_after_s, 3)
        return RpcError(
            ErrorCode.RATE_LIMITED, data={"operation": exc.operation, "retry_after_s": wait}
        )
    if isinstance(exc, CloudNotConfigured):
        return RpcError(ErrorCode.CLOUD_NOT_CONFIGURED, data={"reason": str(exc)})
    if isinstance(exc, CloudError):
        return _cloud_error(exc)
    return None


#: Refusals of a login: the user must log in (again), with other credentials.
_LOGIN_REFUSALS = frozenset({"invalid_credentials", "email_not_confirmed", "user_banned"})


def _cloud_error(exc: CloudError) -> RpcError:
    """Cloud failures by what the caller can do: log in, wait, or accept the refusal.
    ``data`` carries reason codes only (never a server message or a token)."""
    data: dict[str, Any] = {"reason": exc.reason, "operation": exc.operation}
    if isinstance(exc, AuthRequired) or (
        isinstance(exc, CloudRejected) and exc.reason in _LOGIN_REFUSALS
    ):
        return RpcError(ErrorCode.LOGIN_REQUIRED, data=data)
    if isinstance(exc, CloudUnavailable):
        if exc.retry_after_s is not None:
            data["retry_after_s"] = exc.retry_after_s
        if exc.status == 429 or exc.reason == "over_request_rate_limit":
            return RpcError(ErrorCode.RATE_LIMITED, data=data)
        return RpcError(ErrorCode.INTERNAL_ERROR, "Cloud unavailable", {**data, "retryable": True})
    if isinstance(exc, CloudRejected):
        return RpcError(ErrorCode.REJECTED_BY_POLICY, data=data)
    return RpcError(ErrorCode.INTERNAL_ERROR, "Cloud error", data)


class Dispatcher:
    """Runs the requests of a frame against a method table.

    The items of a batch run concurrently (``BATCH_WINDOW`` at a time, started in order), and
    the batch is answered as one array once they are all done; JSON-RPC lets a server process a
    batch in any order, and the client matches replies by ``id``.
    """

    def __init__(self, table: MethodTable) -> None:
        self.table = table

    def handle_frame(
        self, data: bytes | str, ctx: Any, conn_id: str = "-"
    ) -> Awaitable[bytes | None]:
        """The reply to one frame; ``None`` when nothing must be sent (notifications only).

        Not a coroutine itself: a single request's is ``handle_item``'s (one coroutine less
        on the hot path).
        """
        frame = parse_frame(data)
        if not frame.is_batch:
            return self.handle_item(frame.items[0], ctx, conn_id)
        return self._handle_batch(frame.items, ctx, conn_id)

    def refuse_frame(self, data: bytes | str, error: RpcError) -> bytes | None:
        """The reply to a frame none of whose requests is run: ``error`` for each request
        (parse and validity errors as usual, nothing for notifications)."""
        frame = parse_frame(data)
        answers = (
            item.payload if isinstance(item, ErrorReply) else encode_error(item.id, error)
            for item in frame.items
            if isinstance(item, ErrorReply) or not item.is_notification
        )
        replies = [reply for reply in answers if reply is not None]
        if not frame.is_batch:
            return replies[0] if replies else None
        return join_batch(replies)

    async def _handle_batch(
        self, items: tuple[Request | ErrorReply, ...], ctx: Any, conn_id: str
    ) -> bytes | None:
        replies: list[bytes | None] = []
        for start in range(0, len(items), BATCH_WINDOW):
            window = items[start : start + BATCH_WINDOW]
            replies.extend(
                await asyncio.gather(*(self.handle_item(item, ctx, conn_id) for item in window))
            )
        return join_batch([reply for reply in replies if reply is not None])

    async def handle_item(
        self, item: Request | ErrorReply, ctx: Any, conn_id: str = "-"
    ) -> bytes | None:
        """The reply to one request; ``None`` for a notification."""
        if isinstance(item, ErrorReply):
            return item.payload
        try:
            result = await self.call(item, ctx)
        except Exception as exc:
            error = map_error(exc)
            if error is None:
                logger.error("rpc.failed conn=%s method=%s", conn_id, item.method, exc_info=exc)
                error = RpcError(ErrorCode.INTERNAL_ERROR)
            return None if item.is_notification else encode_error(item.id, error)
        if item.is_notification:
            return None
        try:
            return encode_result(item.id, result)
        except TypeError as exc:
            logger.error("rpc.unencodable conn=%s method=%s", conn_id, item.method, exc_info=exc)
            return encode_error(item.id, RpcError(ErrorCode.INTERNAL_ERROR))

    def call(self, request: Request, ctx: Any) -> Awaitable[Any]:
        """Look the method up, validate its params, start it (raises at once if the method is
        unknown or its params invalid)."""
        method = self.table.get(request.method)
        if method is None:
            raise RpcError(ErrorCode.METHOD_NOT_FOUND, data={"method": request.method[:100]})
        params = bind_params(method, request.params)
        return method.handler(ctx, params)
