"""Fixtures for the cloud SQL tests: a fresh database with the whole cloud schema applied."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from devcloud.context import Devcloud, DevcloudConfig
from devcloud.schema import apply_all

from .kit import Cloud


@pytest.fixture
async def cloud(fresh_database_url: str) -> AsyncIterator[Cloud]:
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=12)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await apply_all(conn)
        yield Cloud(Devcloud(DevcloudConfig(), pool))
    finally:
        await pool.close()
