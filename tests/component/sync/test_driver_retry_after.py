"""429 with Retry-After: the driver waits at least that long (devcloud cannot answer 429, so a
tiny httpx mock transport stands in for the cloud; the store is a real SQLite file)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from daemon.config import StoreSettings
from daemon.store import Store
from daemon.sync.cloud import CloudApi, CloudHttp, CloudSession, SecretStore
from daemon.sync.driver import DriverSettings, SyncDriver
from daemon.sync.retry import Backoff
from tests.helpers import MS, wait_for

URL = "http://cloud.test"
USER = str(uuid.uuid4())
ORG = str(uuid.uuid4())


class FakeCloud:
    """Answers login, an empty pull, and a push that is rate-limited once."""

    def __init__(self, retry_after: str) -> None:
        self.retry_after = retry_after
        self.pushes: list[float] = []
        self.pushed_rows = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            return httpx.Response(200, json=_grant())
        if path == "/rest/v1/rpc/sync_pull":
            return httpx.Response(200, json={"changes": [], "cursor": None, "has_more": False})
        if path == "/rest/v1/rpc/sync_push":
            self.pushes.append(time.monotonic())
            if len(self.pushes) == 1:
                return httpx.Response(
                    429,
                    headers={"Retry-After": self.retry_after},
                    json={"code": "over_request_rate_limit", "message": "slow down"},
                )
            changes = orjson.loads(request.content)["changes"]
            self.pushed_rows += len(changes)
            results = [{"id": c["id"], "table": c["table"], "status": "applied"} for c in changes]
            return httpx.Response(200, json=results)
        return httpx.Response(404, json={"code": "PGRST000"})


def _grant() -> dict[str, Any]:
    return {
        "access_token": "access-" + uuid.uuid4().hex,
        "refresh_token": "refresh-" + uuid.uuid4().hex,
        "expires_in": 3600,
        "user": {"id": USER, "email": "ada@example.com"},
    }


async def test_a_429_retry_after_is_honoured(tmp_path: Path) -> None:
    cloud = FakeCloud(retry_after="1")
    store = await Store.open(tmp_path / "syncd.db", StoreSettings())
    client = httpx.AsyncClient(transport=httpx.MockTransport(cloud.handle))
    http = CloudHttp(URL, "anon", client=client)
    session = CloudSession(http, SecretStore(tmp_path, URL, use_keyring=False))
    # Without Retry-After this backoff would retry at once (rand = 0): any wait is the server's.
    settings = DriverSettings(backoff=Backoff(base_s=0.01, cap_s=0.05))

    async def refresh() -> None:
        await session.refresh_access_token(await session.access_token())

    driver = SyncDriver(
        store=store,
        api=CloudApi(session),
        refresh_auth=refresh,
        on_change=lambda: None,
        settings=settings,
        rand=lambda: 0.0,
    )
    try:
        async with session:
            await session.login("ada@example.com", "pw")
            ws = await store.workspaces.create(name="w")
            await store.conversations.create(workspace_id=ws["id"], name="c")
            link = await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
            driver.open()
            await driver.add(link)
            await driver.activate()
            await wait_for(lambda: cloud.pushed_rows == 2, timeout=5_000 * MS)
            waited = cloud.pushes[1] - cloud.pushes[0]
            assert waited >= 0.95, waited
            assert (await store.sync.counts())["outbox"] == 0
            assert driver.syncs[ws["id"]].session.snapshot.error is None
    finally:
        await driver.close()
        await client.aclose()
        await store.close()
