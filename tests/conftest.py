"""Fixtures shared by every test layer.

PostgreSQL: one server per test session: ``SYNCD_TEST_DATABASE_URL`` when set, otherwise an
embedded server (pgserver) in a temporary directory. ``fresh_database_url`` makes an empty
database on it for one test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from devcloud.postgres import Postgres, random_database_name, start_embedded, with_database


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    url = os.environ.get("SYNCD_TEST_DATABASE_URL")
    if url:
        yield Postgres(url=url)
        return
    server = start_embedded(Path(tmp_path_factory.mktemp("pg")) / "data")
    try:
        yield server
    finally:
        server.stop()


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
