"""Fixtures for the end-to-end sync tests (helpers: sync_kit.py).

``lab`` (``sync_kit.SyncLab``) owns every process a test starts:
``await lab.start_cloud(jwt_expiry=None)`` runs a devcloud subprocess on the test's fresh
database, ``await lab.daemon("a")`` a ``syncd run`` subprocess on its own data dir configured
for that cloud, with a connected client. At teardown
everything is stopped, the logs of every process are printed (pytest shows them for a failing
test), and no daemon log may contain a password or refresh token it was given (I8).

No ``__init__.py`` here on purpose: test modules and sync_kit are imported as top-level
modules, as in tests/integration/realtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sync_kit import CloudProcess, SyncLab


@pytest.fixture
async def lab(tmp_path: Path, fresh_database_url: str) -> AsyncIterator[SyncLab]:
    async with SyncLab(tmp_path, fresh_database_url) as the_lab:
        yield the_lab


@pytest.fixture
async def cloud(lab: SyncLab) -> CloudProcess:
    return await lab.start_cloud()
