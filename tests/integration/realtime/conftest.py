"""Fixtures for the Realtime client tests against a real devcloud (helpers: rt_kit.py).

No ``__init__.py`` here on purpose: a test package named ``realtime`` would shadow the supabase
``realtime`` library for the rest of the test session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rt_kit import Cloud


@pytest.fixture
async def cloud(fresh_database_url: str) -> AsyncIterator[Cloud]:
    c = Cloud(fresh_database_url)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
