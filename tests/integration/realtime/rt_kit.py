"""Helpers for the Realtime client tests against a real devcloud (imported by conftest.py and
the tests; a module name no other test directory uses).

``Cloud`` runs devcloud in-process on one database and can ``stop()`` it and ``start()`` a new
one on the same database and port (a server restart). ``Session`` signs a user in through
``/auth/v1`` and hands out access tokens, refreshing them through the refresh-token grant.
``Recorder`` is an ``on_event`` handler that keeps every event.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from daemon.realtime.connection import RealtimeConnection
from daemon.realtime.frames import Event
from daemon.sync.retry import Backoff
from devcloud.context import DevcloudConfig
from devcloud.keys import verify
from devcloud.server import RunningDevcloud, running_devcloud
from tests.helpers import MS

PASSWORD = "correct horse 1"
E = TypeVar("E")


class Cloud:
    """One devcloud that can be stopped and started again on the same database and port."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.port = 0
        self.config_fields: dict[str, Any] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self.running: RunningDevcloud | None = None

    @property
    def dc(self) -> RunningDevcloud:
        assert self.running is not None, "devcloud is not running"
        return self.running

    async def start(self, **config_fields: Any) -> RunningDevcloud:
        self.config_fields = {**self.config_fields, **config_fields}
        config = DevcloudConfig(**{**self.config_fields, "port": self.port})
        self._stack = contextlib.AsyncExitStack()
        self.running = await self._stack.enter_async_context(
            running_devcloud(config, database_url=self.database_url)
        )
        self.port = self.running.port
        return self.running

    async def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack, self.running = self._stack, None, None
            await stack.aclose()

    async def org_id(self, name: str) -> str:
        async with self.dc.ctx.pool.acquire() as conn:
            return str(await conn.fetchval("SELECT id FROM organizations WHERE name = $1", name))

    async def create_workspace(self, org: str, name: str) -> str:
        async with self.dc.ctx.pool.acquire() as conn:
            ws = await conn.fetchval(
                "INSERT INTO workspaces (org_id, name) VALUES ($1, $2) RETURNING id",
                await self.org_id(org),
                name,
            )
        return str(ws)

    async def create_conversation(self, workspace_id: str, name: str) -> str:
        """A row written as the service role would (the pool's owner bypasses RLS)."""
        async with self.dc.ctx.pool.acquire() as conn:
            row = await conn.fetchval(
                "INSERT INTO conversations (workspace_id, name) VALUES ($1, $2) RETURNING id",
                workspace_id,
                name,
            )
        return str(row)


class Session:
    """A signed-in user: ``token()`` is a token provider (refresh-token grant after sign-in);
    ``life(token)`` its remaining life on the device's ``clock`` (``expires_in`` counted from
    when it was asked for), as the daemon's cloud session knows it."""

    def __init__(self, cloud: Cloud, email: str, clock: Callable[[], float] = time.time) -> None:
        self.cloud = cloud
        self.email = email
        self.clock = clock
        self.refresh_token: str | None = None
        self.tokens: list[str] = []
        self.ends: dict[str, float] = {}

    async def token(self) -> str:
        dc = self.cloud.dc
        asked = self.clock()
        if self.refresh_token is None:
            grant, body = "password", {"email": self.email, "password": PASSWORD}
        else:
            grant, body = "refresh_token", {"refresh_token": self.refresh_token}
        async with httpx.AsyncClient(base_url=dc.url, timeout=10) as http:
            response = await http.post(
                f"/auth/v1/token?grant_type={grant}", json=body, headers={"apikey": dc.anon_key}
            )
        response.raise_for_status()
        data = response.json()
        self.ends[data["access_token"]] = asked + float(data["expires_in"])
        self.refresh_token = data["refresh_token"]
        self.tokens.append(data["access_token"])
        return str(data["access_token"])

    def life(self, token: str) -> float | None:
        end = self.ends.get(token)
        return None if end is None else end - self.clock()

    def expiry_of(self, index: int) -> float:
        claims = verify(self.tokens[index], self.cloud.dc.ctx.config.jwt_secret, now=0.0)
        return float(claims["exp"])


class Recorder:
    """Keeps every event; ``fail_on`` makes the handler raise for matching events."""

    def __init__(self, fail_on: Callable[[Event], bool] | None = None) -> None:
        self.events: list[Event] = []
        self.fail_on = fail_on

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if self.fail_on is not None and self.fail_on(event):
            raise RuntimeError("handler failed on purpose")

    def of(self, kind: type[E], topic: str | None = None) -> list[E]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (topic is None or getattr(e, "topic", None) == topic)
        ]


def connection(
    cloud: Cloud,
    session: Session | None,
    recorder: Callable[[Event], Awaitable[None]],
    device_id: str,
    **options: Any,
) -> RealtimeConnection:
    """A RealtimeConnection to ``cloud`` with test-speed reconnects."""
    defaults: dict[str, Any] = {
        "backoff": Backoff(base_s=50 * MS, cap_s=500 * MS),
        "track_interval_s": 100 * MS,
    }
    return RealtimeConnection(
        cloud.dc.url,
        cloud.dc.anon_key,
        token_provider=None if session is None else session.token,
        on_event=recorder,
        device_id=device_id,
        **{**defaults, **options},
    )
