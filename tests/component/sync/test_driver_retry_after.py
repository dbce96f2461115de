"""429 with Retry-After: the driver waits at least that long. devcloud cannot answer 429, so a
tiny httpx mock transport stands in for the cloud (mock_cloud.py); the store is a real SQLite
file."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from daemon.config import StoreSettings
from daemon.store import Store
from tests.component.sync.mock_cloud import grant, link_workspace, mocked_driver
from tests.helpers import MS, wait_for


class FakeCloud:
    """Answers login, an empty pull, and a push that is rate-limited once."""

    def __init__(self, retry_after: str) -> None:
        self.retry_after = retry_after
        self.pushes: list[float] = []
        self.pushed_rows = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            return httpx.Response(200, json=grant())
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


async def test_a_429_retry_after_is_honoured(tmp_path: Path) -> None:
    cloud = FakeCloud(retry_after="1")
    store = await Store.open(tmp_path / "syncd.db", StoreSettings())
    try:
        # Without Retry-After the driver would retry at once (rand = 0): any wait is the server's.
        async with mocked_driver(store, tmp_path, cloud.handle) as driver:
            ws_id = await link_workspace(store, driver)
            await wait_for(lambda: cloud.pushed_rows == 2, timeout=5_000 * MS)
            waited = cloud.pushes[1] - cloud.pushes[0]
            assert waited >= 0.95, waited

            async def settled() -> bool:  # the cloud counted the rows before it answered
                return (await store.sync.counts())["outbox"] == 0

            await wait_for(settled, timeout=5_000 * MS, message="the pushed rows settled")
            assert driver.syncs[ws_id].session.snapshot.error is None
    finally:
        await store.close()
