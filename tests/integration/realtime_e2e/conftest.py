"""Fixtures for the end-to-end realtime tests (helpers: rt_e2e_kit.py): ``lab`` owns every
process a test starts; at teardown it stops them, prints their logs (pytest shows them for a
failing test) and checks that no daemon logged a password or refresh token it was given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rt_e2e_kit import Lab


@pytest.fixture
async def lab(tmp_path: Path, fresh_database_url: str) -> AsyncIterator[Lab]:
    async with Lab(tmp_path, fresh_database_url) as the_lab:
        yield the_lab
