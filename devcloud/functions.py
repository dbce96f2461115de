"""``/functions/v1/<name>``: edge functions as pluggable Python handlers.

A handler is ``async (FunctionCall) -> Response``; register more with
``functions_of(ctx).register(name, handler)``. Like Supabase's relay with ``verify_jwt``, every
call needs a valid JWT (the anon key, the service-role key or a user's access token).

Built in:
- ``agent-chat``: ``{agentSlug, conversationId, userMessage, messageHistory}`` →
  ``{content, messageId, agentName}``.
- ``ai-proxy``: OpenAI chat completions; ``"stream": true`` answers with an SSE stream of
  ``chat.completion.chunk`` objects ending ``data: [DONE]``.
Both answer from the deterministic local model (``_local_model``) unless the config names an
OpenAI-compatible ``ai_upstream``, which then gets the request (streams are passed through).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from devcloud import _local_model as model
from devcloud.context import Devcloud, bearer_token
from devcloud.keys import InvalidToken, verify

logger = logging.getLogger(__name__)

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Generous: a local model on a slow machine may take long to start answering.
UPSTREAM_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@dataclass(frozen=True)
class FunctionCall:
    """One invocation: the function's name, the verified JWT claims and the raw request."""

    name: str
    claims: dict[str, Any]
    request: Request
    ctx: Devcloud


FunctionHandler = Callable[[FunctionCall], Awaitable[Response]]


class FunctionError(Exception):
    """Bad input to a function: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Functions:
    """The function registry of one devcloud (built-ins registered)."""

    def __init__(self, ctx: Devcloud) -> None:
        self.ctx = ctx
        self.handlers: dict[str, FunctionHandler] = {
            "agent-chat": self.agent_chat,
            "ai-proxy": self.ai_proxy,
        }
        self._http: httpx.AsyncClient | None = None

    def register(self, name: str, handler: FunctionHandler) -> None:
        self.handlers[name] = handler

    def routes(self) -> list[BaseRoute]:
        """Routes relative to the ``/functions/v1`` mount (sub-paths go to the same function)."""
        return [
            Route("/{name}", self.dispatch, methods=_METHODS),
            Route("/{name}/{rest:path}", self.dispatch, methods=_METHODS),
        ]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def dispatch(self, request: Request) -> Response:
        token = bearer_token(request.headers)
        if not token:
            return JSONResponse({"code": 401, "message": "Missing authorization header"}, 401)
        try:
            claims = verify(token, self.ctx.config.jwt_secret)
        except InvalidToken:
            return JSONResponse({"code": 401, "message": "Invalid JWT"}, 401)
        name = request.path_params["name"]
        handler = self.handlers.get(name)
        if handler is None:
            body = {"code": "NOT_FOUND", "message": "Requested function was not found"}
            return JSONResponse(body, 404)
        try:
            return await handler(FunctionCall(name, claims, request, self.ctx))
        except FunctionError as exc:
            return JSONResponse({"error": exc.message}, exc.status)
        except Exception:  # the function boundary, like an edge runtime: 500, keep serving
            logger.exception("functions.failed name=%s", name)
            return JSONResponse({"error": "function failed"}, 500)

    # Built-in functions

    async def agent_chat(self, call: FunctionCall) -> Response:
        body = await _json_object(call.request)
        slug, text = body.get("agentSlug"), body.get("userMessage")
        if not isinstance(slug, str) or not slug:
            raise FunctionError(400, "agentSlug must be a non-empty string")
        if not isinstance(text, str) or not text:
            raise FunctionError(400, "userMessage must be a non-empty string")
        history = body.get("messageHistory") or []
        try:
            past = model.check_messages(history) if history else []
        except model.BadChatRequest as exc:
            raise FunctionError(400, str(exc).replace("messages", "messageHistory")) from exc
        name, prompt = await self._agent(call.claims, slug)
        messages = ([{"role": "system", "content": prompt}] if prompt else []) + past
        messages.append({"role": "user", "content": text})
        content = await self._complete(messages)
        return JSONResponse({"content": content, "messageId": uuid7(), "agentName": name})

    async def ai_proxy(self, call: FunctionCall) -> Response:
        body = await _json_object(call.request)
        try:
            messages = model.check_messages(body.get("messages"))
        except model.BadChatRequest as exc:
            raise FunctionError(400, str(exc)) from exc
        if self.ctx.config.ai_upstream:
            return await self._forward(body)
        reply = model.reply_to(messages)
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created, name = int(time.time()), str(body.get("model") or model.LOCAL_MODEL)
        if body.get("stream") is True:
            events = model.stream_events(
                completion_id=completion_id, created=created, model=name, reply=reply
            )
            return StreamingResponse(
                _iterate(events), media_type="text/event-stream", headers=_SSE_HEADERS
            )
        answer = model.completion_json(
            completion_id=completion_id,
            created=created,
            model=name,
            reply=reply,
            token_usage=model.usage(messages, reply),
        )
        return JSONResponse(answer)

    # Helpers

    async def _agent(self, claims: dict[str, Any], slug: str) -> tuple[str, str | None]:
        """(name, system prompt) of the agent the caller can see, else the slug and no prompt."""
        try:
            async with self.ctx.transaction_as(claims) as conn:
                row = await conn.fetchrow(
                    "SELECT name, system_prompt FROM public.cloud_agents WHERE slug = $1"
                    " ORDER BY created_at LIMIT 1",
                    slug,
                )
        except (asyncpg.UndefinedTableError, InvalidToken):
            row = None
        if row is None:
            return slug, None
        return str(row["name"]), row["system_prompt"]

    async def _complete(self, messages: list[dict[str, str]]) -> str:
        if not self.ctx.config.ai_upstream:
            return model.reply_to(messages)
        response = await self._upstream_send({"model": "default", "messages": messages}, False)
        try:
            data = json.loads(await response.aread())
            return str(data["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise FunctionError(502, "AI upstream answered without a completion") from exc
        finally:
            await response.aclose()

    async def _forward(self, body: dict[str, Any]) -> Response:
        response = await self._upstream_send(body, body.get("stream") is True)
        headers = {"Content-Type": response.headers.get("content-type", "application/json")}
        if body.get("stream") is True:
            return StreamingResponse(
                response.aiter_raw(),
                status_code=response.status_code,
                headers={**headers, **_SSE_HEADERS},
                background=BackgroundTask(response.aclose),
            )
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return Response(content, response.status_code, headers)

    async def _upstream_send(self, body: dict[str, Any], stream: bool) -> httpx.Response:
        upstream = str(self.ctx.config.ai_upstream).rstrip("/")
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT)
        request = self._http.build_request("POST", f"{upstream}/chat/completions", json=body)
        try:
            return await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning("functions.upstream_failed %s: %s", upstream, type(exc).__name__)
            raise FunctionError(502, f"AI upstream unreachable: {type(exc).__name__}") from exc


def functions_of(ctx: Devcloud) -> Functions:
    """The (one) function registry of a devcloud context, created on first use."""
    service = ctx.extras.get("functions")
    if not isinstance(service, Functions):
        service = ctx.extras["functions"] = Functions(ctx)
    return service


def uuid7() -> str:
    """A time-ordered UUIDv7 (RFC 9562), as the project mints ids."""
    ms = time.time_ns() // 1_000_000
    value = (ms & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10)) & (2**80 - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise FunctionError(400, "the request body must be JSON") from exc
    if not isinstance(body, dict):
        raise FunctionError(400, "the request body must be a JSON object")
    return body


async def _iterate(items: Any) -> AsyncIterator[str]:
    for item in items:
        yield item
