"""Fixtures for the cloud adapter against a real devcloud (in-process, on a fresh database).

``start_devcloud(**config_fields)`` starts a devcloud (``port`` may name the port of one that
was stopped, to bring "the same cloud" back); ``open_session(dc, data_dir, **kwargs)`` gives a
running CloudSession on it whose refresh token lives in ``data_dir`` (the file backend: tests
never touch the OS keyring of the machine they run on). ``leaks`` collects every log record at
DEBUG and, at teardown, fails the test if a token or password it was told about appears in a
record above DEBUG, or in any record of the daemon's own loggers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.sync.cloud.http import CloudHttp
from daemon.sync.cloud.secrets import SecretStore
from daemon.sync.cloud.session import CloudSession
from devcloud.context import DevcloudConfig
from devcloud.server import RunningDevcloud

StartDevcloud = Callable[..., Awaitable[RunningDevcloud]]
OpenSession = Callable[..., Awaitable[CloudSession]]


class LeakWatch(logging.Handler):
    """Records everything; ``secret(value)`` names a value that must never be logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.secrets: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def secret(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v)

    def check(self) -> None:
        for record in self.records:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += " " + repr(record.exc_info[1])
            strict = record.levelno > logging.DEBUG or record.name.startswith("daemon.")
            for value in self.secrets:
                assert not (strict and value in text), f"a secret leaked into {record.name} log"

    def messages(self, prefix: str) -> list[str]:
        return [r.getMessage() for r in self.records if r.getMessage().startswith(prefix)]


@pytest.fixture
def leaks() -> Iterator[LeakWatch]:
    watch = LeakWatch()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        root.setLevel(old_level)
    watch.check()


@pytest.fixture
def start_devcloud(devcloud_factory: StartDevcloud) -> StartDevcloud:
    """The shared ``devcloud_factory`` of tests/conftest.py, under this folder's older name."""
    return devcloud_factory


@pytest.fixture
async def open_session() -> AsyncIterator[OpenSession]:
    async with contextlib.AsyncExitStack() as stack:

        async def open_(
            dc: RunningDevcloud | str, data_dir: Path, anon_key: str | None = None, **kwargs: Any
        ) -> CloudSession:
            url = dc if isinstance(dc, str) else dc.url
            key = anon_key or (DevcloudConfig().anon_key if isinstance(dc, str) else dc.anon_key)
            http = await stack.enter_async_context(CloudHttp(url, key))
            secrets = SecretStore(data_dir, url, use_keyring=False)
            return await stack.enter_async_context(CloudSession(http, secrets, **kwargs))

        yield open_
