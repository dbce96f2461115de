"""Fixtures for the end-to-end sync tests (helpers: sync_kit.py).

``lab`` owns every process a test starts: ``await lab.start_cloud(jwt_expiry=None)`` runs a
devcloud subprocess on the test's fresh database, ``await lab.daemon("a")`` a ``syncd run``
subprocess on its own data dir configured for that cloud, with a connected client. At teardown
everything is stopped, the logs of every process are printed (pytest shows them for a failing
test), and no daemon log may contain a password or refresh token it was given (I8).

No ``__init__.py`` here on purpose: test modules and sync_kit are imported as top-level
modules, as in tests/integration/realtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sync_kit import CloudProcess, DaemonProcess


class SyncLab:
    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self._cloud: CloudProcess | None = None
        self.daemons: list[DaemonProcess] = []

    @property
    def cloud(self) -> CloudProcess:
        assert self._cloud is not None, "await lab.start_cloud() first"
        return self._cloud

    async def start_cloud(self, *, jwt_expiry: int | None = None) -> CloudProcess:
        assert self._cloud is None, "one cloud per test"
        self._cloud = CloudProcess(
            self.database_url, self.root / "devcloud.log", jwt_expiry=jwt_expiry
        )
        await self._cloud.start()
        return self._cloud

    async def daemon(self, name: str) -> DaemonProcess:
        daemon = DaemonProcess(name, self.root / name, self._cloud)
        self.daemons.append(daemon)
        return await daemon.start()

    async def close(self) -> None:
        for daemon in self.daemons:
            await daemon.close()
        if self._cloud is not None:
            await self._cloud.close()

    def report(self) -> None:
        for daemon in self.daemons:
            print(f"===== daemon {daemon.name} =====\n{daemon.logs()}")
        if self._cloud is not None:
            print(f"===== devcloud =====\n{self._cloud.logs()}")

    def check_no_secret_logged(self) -> None:
        for daemon in self.daemons:
            token = daemon.refresh_token()
            secrets = daemon.secrets | ({token} if token else set())
            text = daemon.log_text()
            for secret in secrets:
                assert secret not in text, f"a password or token leaked into {daemon.name}'s logs"


@pytest.fixture
async def lab(tmp_path: Path, fresh_database_url: str) -> AsyncIterator[SyncLab]:
    the_lab = SyncLab(tmp_path, fresh_database_url)
    try:
        yield the_lab
    finally:
        await the_lab.close()
        the_lab.report()
    the_lab.check_no_secret_logged()


@pytest.fixture
async def cloud(lab: SyncLab) -> CloudProcess:
    return await lab.start_cloud()
