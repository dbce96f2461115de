"""Devices for driver tests: a real Store on a SQLite file in tmp_path and a CloudService on
the in-process devcloud (real HTTP, real PostgreSQL); tokens go to a 0600 file, never the OS
keyring. ``cloud_rows(sql, *args)`` reads the cloud's tables directly (asyncpg)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.config import CloudSettings, Secret, StoreSettings
from daemon.errors import NotFound
from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.sync.cloud.http import Bounds
from daemon.sync.driver import DriverSettings
from daemon.sync.retry import Backoff
from daemon.sync.service import CloudService, store_publisher
from devcloud.server import RunningDevcloud

PASSWORD = "correct horse battery"


@dataclass
class Device:
    """One daemon's store and cloud service; ``events`` records every committed change."""

    store: Store
    cloud: CloudService
    data_dir: Path
    events: list[ChangeEvent] = field(default_factory=list)

    def topics(self, prefix: str = "") -> list[str]:
        return [e.topic for e in self.events if e.topic.startswith(prefix)]


MakeDevice = Callable[..., Awaitable[Device]]


async def stored(get: Callable[[str], Awaitable[Any]], row_id: str) -> bool:
    """Whether a repository's ``get`` (e.g. ``store.workspaces.get``) finds ``row_id``."""
    try:
        await get(row_id)
    except NotFound:
        return False
    return True


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real store of its own (for the tests whose cloud is a mock: mock_cloud.py)."""
    opened = await Store.open(tmp_path / "syncd.db", StoreSettings())
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def make_device(devcloud: RunningDevcloud, tmp_path: Path) -> AsyncIterator[MakeDevice]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            name: str = "a",
            transport: httpx.AsyncBaseTransport | None = None,
            bounds: Mapping[str, Bounds] | None = None,
            **driver: Any,
        ) -> Device:
            """A device; with ``transport`` its cloud requests go through it (e.g. a test's
            gate that holds or refuses them); ``bounds``: its requests' (http.py BOUNDS)."""
            data_dir = tmp_path / name
            http = None
            if transport is not None:
                http = httpx.AsyncClient(transport=transport, timeout=30)
                stack.push_async_callback(http.aclose)
            store = await Store.open(data_dir / "syncd.db", StoreSettings())
            stack.push_async_callback(store.close)
            settings = DriverSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), **driver)
            cloud = CloudService(
                CloudSettings(url=devcloud.url, anon_key=Secret(devcloud.anon_key)),
                store=store,
                data_dir=data_dir,
                publish=store_publisher(store),
                driver_settings=settings,
                http_client=http,
                http_bounds=bounds,
                use_keyring=False,
            )
            device = Device(store, cloud, data_dir)
            store.add_commit_listener(device.events.extend)
            await cloud.start()
            stack.push_async_callback(cloud.stop)
            return device

        yield make


@pytest.fixture
def cloud_rows(devcloud: RunningDevcloud) -> Callable[..., Awaitable[list[Any]]]:
    async def query(sql: str, *args: Any) -> list[Any]:
        async with devcloud.ctx.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    return query
