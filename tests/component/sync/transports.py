"""httpx transports in front of the real one, for device tests that cut or hold the cloud
(``make_device("a", transport)``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson


class Outage(httpx.AsyncBaseTransport):
    """The real transport, or while ``down`` a refused connection (``refused`` counts them)."""

    def __init__(self, *, down: bool = False) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.down = down
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class PushGate(httpx.AsyncBaseTransport):
    """The real transport; while ``hold`` is set, a ``sync_push`` whose changes ``holds``
    (every one by default) waits for ``release``. ``held`` counts those that waited,
    ``answered`` those of them the cloud has answered."""

    def __init__(self, holds: Callable[[list[dict[str, Any]]], bool] = lambda _: True) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.holds = holds
        self.hold = False
        self.release = asyncio.Event()
        self.held = 0
        self.answered = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        held = False
        if self.hold and request.url.path.endswith("/rpc/sync_push"):
            held = self.holds(orjson.loads(request.content)["changes"])
        if held:
            self.held += 1
            await self.release.wait()
        response = await self.inner.handle_async_request(request)
        if held:
            await response.aread()
            self.answered += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class TokenRefusal(httpx.AsyncBaseTransport):
    """The real transport; while ``refusing``, the data API (``/rest/v1/``) answers 401 as
    PostgREST does for a token it does not take (a gateway, its keys or clock out of step with
    GoTrue's), while GoTrue (``/auth/v1/``) works. ``refused`` counts those answers,
    ``refreshes`` the refresh grants that GoTrue answered."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refusing = False
        self.refused = 0
        self.refreshes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refusing and request.url.path.startswith("/rest/v1/"):
            self.refused += 1
            body = {"code": "PGRST303", "details": None, "hint": None, "message": "JWT expired"}
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return httpx.Response(401, json=body, headers=headers)
        response = await self.inner.handle_async_request(request)
        if request.url.params.get("grant_type") == "refresh_token":
            self.refreshes += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
