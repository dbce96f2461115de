"""A SyncDriver whose cloud is an httpx mock transport, for what devcloud cannot do on cue
(answer 429, fail one page, show when each request arrives). The store stays a real one.

``mocked_driver(store, tmp_path, handle, **settings)``  logged in as Ada (``grant()``), with a
fast backoff and ``rand = 0`` (no jitter: retries at once unless the server says otherwise;
``backoff``, ``rand`` and ``on_change`` may be given instead); yields the driver, closed at exit.
``link_workspace(store, driver)``  a workspace of one conversation (two rows to push), linked
and synced by the driver; its id.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from daemon.store import Store
from daemon.sync.cloud import CloudApi, CloudHttp, CloudSession, SecretStore
from daemon.sync.driver import DriverSettings, SyncDriver
from daemon.sync.retry import Backoff

URL = "http://cloud.test"
USER = str(uuid.uuid4())
ORG = str(uuid.uuid4())

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
FAST = Backoff(base_s=0.01, cap_s=0.05)


def grant() -> dict[str, Any]:
    """The body of a successful ``/auth/v1/token``."""
    return {
        "access_token": "access-" + uuid.uuid4().hex,
        "refresh_token": "refresh-" + uuid.uuid4().hex,
        "expires_in": 3600,
        "user": {"id": USER, "email": "ada@example.com"},
    }


@contextlib.asynccontextmanager
async def mocked_driver(
    store: Store,
    tmp_path: Path,
    handle: Handler,
    *,
    backoff: Backoff = FAST,
    rand: Callable[[], float] = lambda: 0.0,
    on_change: Callable[[], None] = lambda: None,
    **settings: Any,
) -> AsyncIterator[SyncDriver]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    session = CloudSession(
        CloudHttp(URL, "anon", client=client), SecretStore(tmp_path, URL, use_keyring=False)
    )

    async def refresh() -> None:
        await session.refresh_access_token(await session.access_token())

    driver = SyncDriver(
        store=store,
        api=CloudApi(session),
        refresh_auth=refresh,
        on_change=on_change,
        settings=DriverSettings(backoff=backoff, **settings),
        rand=rand,
    )
    try:
        async with session:
            await session.login("ada@example.com", "pw")
            yield driver
    finally:
        await driver.close()
        await client.aclose()


async def link_workspace(store: Store, driver: SyncDriver) -> str:
    """A workspace of one conversation (two rows to push), linked and synced by ``driver``."""
    ws = await store.workspaces.create(name="w")
    await store.conversations.create(workspace_id=ws["id"], name="c")
    link = await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    driver.open()
    await driver.add(link)
    await driver.activate()
    return str(ws["id"])
