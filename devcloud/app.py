"""The devcloud ASGI app: one base URL serving ``/auth/v1``, ``/rest/v1``, ``/functions/v1`` and
``/realtime/v1``, with CORS answered the way the Supabase gateway answers it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount

from devcloud.auth import auth_of
from devcloud.context import Devcloud
from devcloud.functions import functions_of
from devcloud.realtime import Realtime
from devcloud.rest import routes as rest_routes

logger = logging.getLogger(__name__)

# What browsers may read from our responses (supabase-js reads these).
_EXPOSED_HEADERS = [
    "Content-Range",
    "Content-Location",
    "Preference-Applied",
    "X-Supabase-Api-Version",
    "x-sb-error-code",
    "x-relay-error",
]


def build_app(ctx: Devcloud) -> Starlette:
    """The whole devcloud HTTP/WebSocket surface for one context."""
    realtime = Realtime(ctx)
    routes: list[BaseRoute] = [
        Mount("/auth/v1", routes=auth_of(ctx).routes()),
        Mount("/rest/v1", routes=rest_routes(ctx)),
        Mount("/functions/v1", routes=functions_of(ctx).routes()),
        *realtime.routes(),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await realtime.start()
        try:
            yield
        finally:
            await realtime.stop()
            await functions_of(ctx).aclose()

    cors = Middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=_EXPOSED_HEADERS,
        max_age=3600,
    )
    return Starlette(routes=routes, middleware=[cors], lifespan=lifespan)
