"""Fixtures shared by every test layer.

PostgreSQL: one server per test session: ``SYNCD_TEST_DATABASE_URL`` when set, otherwise an
embedded server (pgserver) in a temporary directory. ``fresh_database_url`` makes an empty
database on it for one test.

devcloud: ``devcloud`` runs devcloud in-process on a fresh database and yields a RunningDevcloud
(``url``, ``port``, ``anon_key``, ``service_role_key``, ``ctx``, ``await create_user(email,
password, org=None, role="owner") -> user_id``). ``devcloud_factory(**config_fields)`` starts one
with custom DevcloudConfig fields (e.g. ``jwt_expiry=2``); every devcloud it starts shares the
test's database and stops at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devcloud.context import DevcloudConfig
from devcloud.postgres import Postgres, random_database_name, start_embedded, with_database
from devcloud.server import RunningDevcloud, running_devcloud


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Postgres]:
    url = os.environ.get("SYNCD_TEST_DATABASE_URL")
    if url:
        yield Postgres(url=url)
        return
    # Not under pytest's basetemp: concurrent pytest runs prune each other's old basetemps.
    root = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
    server = start_embedded(root / "data")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def fresh_database_url(pg_server: Postgres) -> AsyncIterator[str]:
    """An empty database for this test, dropped afterwards."""
    name = random_database_name()
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(pg_server.url, name)
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


DevcloudFactory = Callable[..., Awaitable[RunningDevcloud]]


@pytest.fixture
async def devcloud_factory(fresh_database_url: str) -> AsyncIterator[DevcloudFactory]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(**config_fields: Any) -> RunningDevcloud:
            config = DevcloudConfig(**{"port": 0, **config_fields})
            return await stack.enter_async_context(
                running_devcloud(config, database_url=fresh_database_url)
            )

        yield start


@pytest.fixture
async def devcloud(devcloud_factory: DevcloudFactory) -> RunningDevcloud:
    return await devcloud_factory()
