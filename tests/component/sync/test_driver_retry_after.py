"""429 with Retry-After: the driver waits at least that long; a push that keeps failing backs off
while its catch-up pulls succeed. devcloud cannot answer 429 (nor fail only the push), so a tiny
httpx mock transport stands in for the cloud (mock_cloud.py); the store is a real SQLite file."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import orjson

from daemon.store import Store
from daemon.sync.retry import Backoff
from tests.component.sync.mock_cloud import grant, link_workspace, mocked_driver
from tests.helpers import MS, wait_for


class FakeCloud:
    """Answers login, an empty pull, and a push that is rate-limited once."""

    def __init__(self, retry_after: str) -> None:
        self.retry_after = retry_after
        self.pushes: list[float] = []
        self.pushed_rows = 0
        self.pulls: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            return httpx.Response(200, json=grant())
        if path == "/rest/v1/rpc/sync_pull":
            self.pulls.append(time.monotonic())
            return httpx.Response(200, json={"changes": [], "cursor": None, "has_more": False})
        if path == "/rest/v1/rpc/sync_push":
            self.pushes.append(time.monotonic())
            return self.push(request)
        return httpx.Response(404, json={"code": "PGRST000"})

    def push(self, request: httpx.Request) -> httpx.Response:
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


async def test_a_429_retry_after_is_honoured(store: Store, tmp_path: Path) -> None:
    cloud = FakeCloud(retry_after="1")
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


class FailingPushCloud(FakeCloud):
    """Answers login and an empty pull; every push fails with 500."""

    def __init__(self) -> None:
        super().__init__(retry_after="0")

    def push(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"code": "XX000", "message": "internal error"})


async def test_a_failing_push_backs_off_while_the_catch_up_pulls_succeed(
    store: Store, tmp_path: Path
) -> None:
    """Each retry's catch-up pull succeeds; the push's delay still doubles (it used to stay at
    the first delay: a push every few hundred ms, for ever)."""
    cloud = FailingPushCloud()
    base = 40 * MS
    # rand ~1: each delay is (almost) the full base * 2**attempt
    backoff = Backoff(base_s=base, cap_s=100 * base)
    async with mocked_driver(
        store, tmp_path, cloud.handle, backoff=backoff, rand=lambda: 0.99
    ) as driver:
        await link_workspace(store, driver)
        await wait_for(lambda: len(cloud.pushes) >= 5, timeout=10_000 * MS)
    pushes = cloud.pushes[:5]
    for attempt, (before, after) in enumerate(itertools.pairwise(pushes)):
        assert after - before >= 0.99 * base * 2**attempt, (attempt, pushes)
        # each retry began with a pull, which succeeded
        assert any(before < pulled < after for pulled in cloud.pulls), (attempt, cloud.pulls)
