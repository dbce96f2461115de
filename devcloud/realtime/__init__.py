"""devcloud's Realtime server: Phoenix channels at ``/realtime/v1/websocket`` (vsn 1.0.0 and
2.0.0), broadcast, presence and postgres_changes, plus the REST broadcast endpoints.

``Realtime(ctx).routes()`` goes into the Starlette app; ``await start()`` installs change capture
and starts listening; ``await stop()`` closes every socket and stops the feed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from devcloud.context import Devcloud, bearer_token
from devcloud.keys import InvalidToken
from devcloud.realtime import channel as ch
from devcloud.realtime.authorization import Permissions, authorize
from devcloud.realtime.cdc import ChangeFeed
from devcloud.realtime.channel import JoinRefused
from devcloud.realtime.hub import Hub
from devcloud.realtime.presence import Presences
from devcloud.realtime.rate import MessageRate
from devcloud.realtime.serializer import FrameError, decode_binary, decode_text, parse_vsn
from devcloud.realtime.session import (
    CLOSE_GOING_AWAY,
    MAX_CHANNELS,
    MAX_QUEUE,
    CloseSocket,
    Connection,
)

__all__ = ["Realtime"]

logger = logging.getLogger(__name__)

IDLE_TIMEOUT = 60.0  # Phoenix closes a socket that sent nothing (not even a heartbeat) this long
WRITER_GRACE = 5.0  # seconds a closing socket's writer may take to flush its close frame
_conn_ids = itertools.count(1)


class Realtime:
    """The Realtime service of one devcloud."""

    def __init__(
        self,
        ctx: Devcloud,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_queue: int = MAX_QUEUE,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        self.ctx = ctx
        self.idle_timeout = idle_timeout
        self.max_queue = max_queue
        self.max_channels = max_channels
        rate = MessageRate(ctx.config.max_events_per_second)
        self.hub = Hub(Presences(ref_prefix=secrets.token_urlsafe(6)), rate)
        self.feed = ChangeFeed(ctx, self.hub.subscribers)
        self.connections: set[Connection] = set()
        ctx.extras["realtime"] = self

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/realtime/v1/websocket", self._websocket),
            Route("/realtime/v1/api/broadcast", self._rest_broadcast, methods=["POST"]),
            Route(
                "/realtime/v1/api/broadcast/{subtopic}/events/{event}",
                self._rest_broadcast_one,
                methods=["POST"],
            ),
        ]

    async def start(self) -> None:
        await self.feed.start()

    async def _authorize(self, claims: Mapping[str, Any], subtopic: str) -> Permissions:
        return await authorize(self.ctx, claims, subtopic)

    async def stop(self) -> None:
        for connection in list(self.connections):
            connection.drop("server shutting down", code=CLOSE_GOING_AWAY)
        await self.feed.stop()

    # WebSocket -------------------------------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        apikey = websocket.headers.get("x-api-key") or websocket.query_params.get("apikey")
        try:
            vsn = parse_vsn(websocket.query_params.get("vsn"))
            self._check_apikey(apikey)
        except (InvalidToken, FrameError) as exc:
            await self._refuse(websocket, str(exc))
            return
        assert apikey is not None
        conn = Connection(
            self.hub,
            self.feed,
            secret=self.ctx.config.jwt_secret,
            vsn=vsn,
            apikey=apikey,
            conn_id=f"rt{next(_conn_ids)}",
            max_queue=self.max_queue,
            authorizer=self._authorize,
            max_channels=self.max_channels,
        )
        await websocket.accept()
        await self._serve(websocket, conn)

    async def _serve(self, websocket: WebSocket, conn: Connection) -> None:
        self.connections.add(conn)
        logger.info("realtime.socket.open conn_id=%s vsn=%s", conn.conn_id, conn.vsn.value)
        reader = asyncio.create_task(self._read(websocket, conn), name=f"{conn.conn_id}-reader")
        writer = asyncio.create_task(self._write(websocket, conn), name=f"{conn.conn_id}-writer")
        conn.on_drop = reader.cancel  # a dropped socket stops reading at once
        try:
            await asyncio.wait({reader})
        finally:
            reader.cancel()
            conn.close()  # leave every channel: the others get presence leaves now
            self.connections.discard(conn)
            conn.drop("socket closed", log=False)
            # A client that does not read may keep the writer blocked in send: give up on it.
            await asyncio.wait({writer}, timeout=WRITER_GRACE)
            writer.cancel()
            logger.info("realtime.socket.closed conn_id=%s", conn.conn_id)

    def _check_apikey(self, apikey: str | None) -> None:
        if not apikey:
            raise InvalidToken("API key is missing")
        try:
            ch.check_token(apikey, self.ctx.config.jwt_secret, time.time())
        except JoinRefused as exc:
            raise InvalidToken(exc.message) from exc

    async def _refuse(self, websocket: WebSocket, message: str) -> None:
        logger.info("realtime.socket.refused: %s", message)
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(JSONResponse({"error": message}, status_code=401))
        else:
            await websocket.close(code=1008, reason=message[:120])

    async def _read(self, websocket: WebSocket, conn: Connection) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    message = await websocket.receive()
            except TimeoutError:
                conn.drop("idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                return
            await self._handle(conn, message)
            # receive() does not yield while frames are buffered; let the writers run so that a
            # burst from one client does not overflow the queues of clients that keep up.
            await asyncio.sleep(0)

    async def _handle(self, conn: Connection, message: MutableMapping[str, Any]) -> None:
        text, data = message.get("text"), message.get("bytes")
        try:
            if text is not None:
                frame = decode_text(conn.vsn, text)
                size = len(text)
            elif data is not None:
                frame = decode_binary(data)
                size = len(data)
            else:
                return
        except FrameError as exc:
            logger.info("realtime.frame.invalid conn_id=%s: %s", conn.conn_id, exc)
            return
        await conn.receive(frame, size)

    async def _write(self, websocket: WebSocket, conn: Connection) -> None:
        try:
            while True:
                item = await conn.queue.get()
                if isinstance(item, CloseSocket):
                    await websocket.close(code=item.code, reason=item.reason)
                    return
                if isinstance(item, bytes):
                    await websocket.send_bytes(item)
                else:
                    await websocket.send_text(item)
        except (WebSocketDisconnect, RuntimeError, OSError):
            conn.dropped = True  # the peer is gone; the reader sees the disconnect

    # REST broadcast --------------------------------------------------------------------------

    async def _rest_broadcast(self, request: Request) -> Response:
        claims = self._check_rest_auth(request)
        if isinstance(claims, Response):
            return claims
        try:
            body = json.loads(await request.body())
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages must be a list")
            sends = [
                (str(item["topic"]), str(item["event"]), item.get("payload", {}))
                + (item.get("private") in (True, "true"),)
                for item in messages
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": f"invalid broadcast request: {exc}"}, status_code=400)
        for subtopic, event, payload, private in sends:
            await self._send_rest(claims, subtopic, event, payload, private)
        return Response(status_code=202)

    async def _rest_broadcast_one(self, request: Request) -> Response:
        claims = self._check_rest_auth(request)
        if isinstance(claims, Response):
            return claims
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        params = request.path_params
        private = request.query_params.get("private") == "true"
        await self._send_rest(claims, params["subtopic"], params["event"], payload, private)
        return Response(status_code=202)

    def _check_rest_auth(self, request: Request) -> dict[str, Any] | Response:
        """The caller's claims, or the 401 answer."""
        token = bearer_token(request.headers) or request.headers.get("apikey")
        try:
            self._check_apikey(token)
        except InvalidToken as exc:
            return JSONResponse({"error": exc.reason}, status_code=401)
        assert token is not None
        return ch.check_token(token, self.ctx.config.jwt_secret, time.time())

    async def _send_rest(
        self, claims: dict[str, Any], subtopic: str, event: str, payload: Any, private: bool
    ) -> None:
        """Broadcast to the public channel, or to the private one when the caller's write
        policy allows it (the service role may always); refused ones are dropped (202 all the
        same, as Realtime answers)."""
        if private and not (await self._authorize(claims, subtopic)).write_broadcast:
            logger.info("realtime.rest_broadcast.unauthorized topic=%s", subtopic)
            return
        body = {"type": "broadcast", "event": event, "payload": payload}
        self.hub.broadcast_to(ch.TOPIC_PREFIX + subtopic, None, body, None, False, private=private)
