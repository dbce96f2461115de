"""``sync.push`` / ``sync.pull`` (``syncd push``/``pull``) during a retry backoff: the cloud is
tried now, not answered with the last failure's reason until the backoff ends (up to 30 s
after the cloud came back); a server's Retry-After is still honoured (protocol.py
``manual_request``). The cloud is an httpx mock (mock_cloud.py: devcloud cannot fail on cue)
behind a real CloudApi; the store is a real SQLite file. The backoff is about a minute, so a
request the driver makes on its own during a test is a bug."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from daemon.store import Store
from daemon.sync.driver import SyncDriver
from daemon.sync.retry import Backoff
from daemon.sync.status import WorkspaceStatus
from tests.component.sync.mock_cloud import grant, link_workspace, mocked_driver
from tests.helpers import MS, wait_for

WITHIN = 5_000 * MS
#: rand 0.99 of a 60 s backoff: the driver's own retry is ~59 s away
SLOW = Backoff(base_s=60.0, cap_s=60.0)

Outage = Callable[[httpx.Request], httpx.Response]


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def reset(request: httpx.Request) -> httpx.Response:
    """A port that accepts the connection, then resets it (README: unreachable, offline)."""
    raise httpx.ReadError("connection reset by peer", request=request)


def server_error(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500, json={"code": "XX000", "message": "internal error"})


def overloaded(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": "120"}, json={"message": "busy"})


class FlakyCloud:
    """Answers login; sync_pull and sync_push fail as ``outage`` says while ``down``, else
    answer (an empty pull; every pushed change applied)."""

    def __init__(self, outage: Outage) -> None:
        self.outage = outage
        self.down = True
        self.failed = 0  # sync requests refused while down
        self.pushed: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            return httpx.Response(200, json=grant())
        if path.startswith("/rest/v1/rpc/sync_") and self.down:
            self.failed += 1
            return self.outage(request)
        if path == "/rest/v1/rpc/sync_pull":
            return httpx.Response(200, json={"changes": [], "cursor": None, "has_more": False})
        if path == "/rest/v1/rpc/sync_push":
            changes = orjson.loads(request.content)["changes"]
            self.pushed += [c["id"] for c in changes]
            results = [{"id": c["id"], "table": c["table"], "status": "applied"} for c in changes]
            return httpx.Response(200, json=results)
        return httpx.Response(404, json={"code": "PGRST202"})


@contextlib.asynccontextmanager
async def slow_retrying_driver(
    store: Store, tmp_path: Path, cloud: FlakyCloud, on_change: Callable[[], None] = lambda: None
) -> AsyncIterator[tuple[SyncDriver, str]]:
    """A driver logged in as Ada whose backoff is ~59 s, syncing a linked workspace of one
    conversation (two rows to push); it and the workspace id."""
    async with mocked_driver(
        store, tmp_path, cloud.handle,
        backoff=SLOW, rand=lambda: 0.99, on_change=on_change, pull_interval_s=3600.0,
    ) as driver:  # fmt: skip
        yield driver, await link_workspace(store, driver)


async def in_backoff(driver: SyncDriver, ws_id: str, state: str) -> WorkspaceStatus:
    """Wait for the first request to fail and the backoff to begin; the status then (its
    retry far away: nothing but a manual request can reach the cloud during the test)."""
    sync = driver.syncs[ws_id]
    await wait_for(
        lambda: sync.session.snapshot.retry_at is not None, timeout=WITHIN, message="a backoff"
    )
    status = sync.status
    assert status.state == state
    assert status.retry_at is not None and status.retry_at > time.time() + 30
    return status


@pytest.mark.parametrize(
    ("outage", "state", "reason"),
    [
        (server_error, "error", "XX000"),
        (refused, "offline", "connect"),
        (reset, "offline", "reset"),
    ],
    ids=["500", "connection-refused", "connection-reset"],
)
async def test_a_manual_push_after_the_cloud_recovered_pushes_now(
    store: Store, tmp_path: Path, outage: Outage, state: str, reason: str
) -> None:
    cloud = FlakyCloud(outage)
    async with slow_retrying_driver(store, tmp_path, cloud) as (driver, ws_id):
        assert (await in_backoff(driver, ws_id, state)).error == reason
        failed = cloud.failed
        cloud.down = False  # the cloud is back; the driver's own retry is ~59 s away
        # before: answered at once with the old failure's reason, the cloud never asked
        result = await asyncio.wait_for(driver.sync_now("push"), WITHIN)
        assert result["error"] is None and result["applied"] == 2
        assert len(cloud.pushed) == 2 and cloud.failed == failed
        assert (await store.sync.counts())["outbox"] == 0
        status = driver.syncs[ws_id].status
        assert (status.state, status.error, status.retry_at) == ("idle", None, None)


async def test_a_manual_pull_after_the_cloud_recovered_pulls_now(
    store: Store, tmp_path: Path
) -> None:
    cloud = FlakyCloud(server_error)
    async with slow_retrying_driver(store, tmp_path, cloud) as (driver, ws_id):
        await in_backoff(driver, ws_id, "error")
        cloud.down = False
        result = await asyncio.wait_for(driver.sync_now("pull"), WITHIN)
        assert result["error"] is None
        assert driver.syncs[ws_id].session.snapshot.last_pull_at is not None


async def test_a_server_retry_after_is_still_honoured_by_a_manual_push(
    store: Store, tmp_path: Path
) -> None:
    cloud = FlakyCloud(overloaded)
    async with slow_retrying_driver(store, tmp_path, cloud) as (driver, ws_id):
        await in_backoff(driver, ws_id, "error")
        failed = cloud.failed
        cloud.down = False
        for _ in range(3):  # however often the user asks
            result = await asyncio.wait_for(driver.sync_now("push"), WITHIN)
            assert result["error"] == "http_503" and result["applied"] == 0
        assert cloud.failed == failed and cloud.pushed == []  # the cloud was not asked
        assert (await store.sync.counts())["outbox"] == 2
        assert driver.syncs[ws_id].status.state == "error"


@pytest.mark.parametrize(
    ("outage", "reason"),
    [(server_error, "XX000"), (refused, "connect")],
    ids=["500", "connection-refused"],
)
async def test_a_manual_push_while_the_cloud_is_still_down_answers_its_failure(
    store: Store, tmp_path: Path, outage: Outage, reason: str
) -> None:
    """The run's pull fails first, so the push never starts: its caller gets that failure at
    once (was: it waited for a push failure that never came, until the 300 s limit)."""
    cloud = FlakyCloud(outage)
    async with slow_retrying_driver(store, tmp_path, cloud) as (driver, ws_id):
        await in_backoff(driver, ws_id, "offline" if reason == "connect" else "error")
        failed = cloud.failed
        result = await asyncio.wait_for(driver.sync_now("push"), WITHIN)
        assert result["error"] == reason and result["applied"] == 0
        assert cloud.failed == failed + 1  # the cloud was asked again (the run's pull)
        assert cloud.pushed == [] and (await store.sync.counts())["outbox"] == 2


async def test_a_write_during_a_backoff_is_news_for_the_status_at_once(
    store: Store, tmp_path: Path
) -> None:
    """No push is near to publish the status, so the grown outbox is told at once (was: the
    status event waited for the next retry, the UI showing the old outbox count meanwhile)."""
    changes = 0

    def changed() -> None:
        nonlocal changes
        changes += 1

    cloud = FlakyCloud(refused)
    async with slow_retrying_driver(store, tmp_path, cloud, changed) as (driver, ws_id):
        await in_backoff(driver, ws_id, "offline")
        before, failed = changes, cloud.failed
        await store.conversations.create(workspace_id=ws_id, name="offline")
        await wait_for(lambda: changes > before, timeout=WITHIN, message="a status change")
        assert cloud.failed == failed  # not a retry's: the backoff is ~59 s
        assert (await store.sync.counts())["outbox"] == 3
