"""Running devcloud: PostgreSQL (embedded or given), the schema, a pool, and uvicorn on 127.0.0.1.

``async with running_devcloud(config, database_url=...) as dc:`` runs everything in the current
event loop (tests use it in-process); ``dc.url``, ``dc.anon_key``, ``dc.service_role_key`` and
``dc.ctx`` describe it, ``await dc.create_user(...)`` seeds users.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvicorn
from starlette.types import ASGIApp

from devcloud import _seed
from devcloud.app import build_app
from devcloud.context import Devcloud, DevcloudConfig, DevcloudConnection
from devcloud.postgres import start_embedded, with_database
from devcloud.schema import apply_all

logger = logging.getLogger(__name__)

DATABASE_NAME = "devcloud"
STARTUP_TIMEOUT = 30.0  # seconds for uvicorn to start serving
POOL_SIZE = 10


@dataclass
class RunningDevcloud:
    """A devcloud serving at ``url`` (``port`` is the bound port, also when 0 was asked for)."""

    url: str
    port: int
    database_url: str
    ctx: Devcloud

    @property
    def anon_key(self) -> str:
        return self.ctx.config.anon_key

    @property
    def service_role_key(self) -> str:
        return self.ctx.config.service_role_key

    async def create_user(
        self, email: str, password: str, org: str | None = None, role: str = "owner"
    ) -> str:
        """A confirmed user (and with ``org`` the organisation and membership); its id."""
        async with self.ctx.pool.acquire() as conn:
            return await _seed.create_user(conn, email, password, org=org, role=role)


@contextlib.asynccontextmanager
async def running_devcloud(
    config: DevcloudConfig,
    *,
    database_url: str | None = None,
    data_dir: Path | None = None,
) -> AsyncIterator[RunningDevcloud]:
    """Start devcloud; stop it (server, pool, embedded PostgreSQL) when the block ends.

    Without ``database_url`` an embedded PostgreSQL lives in ``data_dir / "pg"`` and devcloud
    uses its database ``devcloud`` (created if missing).
    """
    async with database(database_url, data_dir) as url:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=POOL_SIZE, connection_class=DevcloudConnection
        )
        try:
            async with pool.acquire() as conn:
                await apply_all(conn)
            ctx = Devcloud(config, pool)
            app = build_app(ctx)
            async with serving(app, host=config.host, port=config.port) as port:
                yield RunningDevcloud(f"http://{config.host}:{port}", port, url, ctx)
        finally:
            await pool.close()


@contextlib.asynccontextmanager
async def database(database_url: str | None, data_dir: Path | None) -> AsyncIterator[str]:
    """The URL of devcloud's database: ``database_url``, or the ``devcloud`` database of the
    embedded PostgreSQL in ``data_dir / "pg"`` (started here, stopped at the end; pgserver keeps
    it running while another process still uses it)."""
    if database_url is not None:
        yield database_url
        return
    if data_dir is None:
        raise ValueError("devcloud needs a database URL or a data dir for its embedded PostgreSQL")
    server = await asyncio.to_thread(start_embedded, data_dir / "pg")
    try:
        await ensure_database(server.url, DATABASE_NAME)
        yield with_database(server.url, DATABASE_NAME)
    finally:
        await asyncio.to_thread(server.stop)


async def ensure_database(server_url: str, name: str) -> None:
    """Create database ``name`` on the server unless it exists (safe against a racing creator)."""
    conn = await asyncpg.connect(server_url)
    try:
        if await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
            return
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: whoever owns the process decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, *, host: str, port: int) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on ``host:port`` in this event loop; yields the bound port
    (useful with ``port=0``). No access log (its lines would carry ``?apikey=`` tokens)."""
    sock = _bind(host, port)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        ws_per_message_deflate=False,
    )
    server = _Server(config)
    task = asyncio.create_task(_serve(server, sock), name="devcloud.uvicorn")
    try:
        await _wait_started(server, task)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits the process when the app's startup fails
        raise RuntimeError(f"devcloud's server stopped during startup (exit {exc.code})") from None


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says it is TCP; without it every response waits ~40 ms (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while not server.started:
        if task.done():
            exc = task.exception() if not task.cancelled() else None
            raise RuntimeError(f"devcloud failed to start: {exc!r}") from exc
        if loop.time() > deadline:
            raise TimeoutError("devcloud did not start serving in time")
        await asyncio.sleep(0.01)
