"""The periodic pulls of all linked workspaces fall due together (protocol.next_periodic_pull
with the driver's one ``pull_phase``): an idle daemon with ten linked workspaces woke ~6 times
a second, each workspace on a 30 s timer of its own. A real store, linked workspaces synced
by a SyncDriver against an httpx mock cloud."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson

from daemon.store import Store
from daemon.sync.driver import SyncDriver
from daemon.sync.protocol import SyncState
from tests.component.sync.mock_cloud import ORG, grant, mocked_driver
from tests.helpers import MS

WITHIN = 10_000 * MS
HOUR = 3600.0


def empty_cloud(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/auth/v1/token":
        return httpx.Response(200, json=grant())
    if path == "/rest/v1/rpc/sync_pull":
        return httpx.Response(200, json={"changes": [], "cursor": None, "has_more": False})
    if path == "/rest/v1/rpc/sync_push":
        changes = orjson.loads(request.content)["changes"]
        results = [{"id": c["id"], "table": c["table"], "status": "applied"} for c in changes]
        return httpx.Response(200, json=results)
    return httpx.Response(404, json={"code": "PGRST202"})


async def link_idle(store: Store, driver: SyncDriver, name: str) -> str:
    """A linked workspace, synced (pulled and pushed) until idle: its periodic pull is due."""
    ws = await store.workspaces.create(name=name)
    link = await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    sync = await driver.add(link)
    async with asyncio.timeout(WITHIN):
        result = await driver.sync_now("push")
    assert result["error"] is None and result["applied"] >= 1
    assert sync.session.state is SyncState.IDLE and sync.session.snapshot.pull_due is not None
    return str(ws["id"])


async def test_the_periodic_pulls_of_all_workspaces_fall_due_together(
    store: Store, tmp_path: Path
) -> None:
    """Three workspaces linked and synced one after the other (their pulls end at different
    times) have one and the same periodic pull deadline (the driver's phase plus the
    interval); before, each fell due an interval after its own last pull."""
    async with mocked_driver(store, tmp_path, empty_cloud, pull_interval_s=HOUR) as driver:
        driver.open()
        await driver.activate()
        for name in ("w1", "w2", "w3"):
            await link_idle(store, driver, name)
        deadlines = {s.session.deadline for s in driver.syncs.values()}
        assert len(driver.syncs) == 3 and len(deadlines) == 1
        (deadline,) = deadlines
        assert deadline is not None and time.time() < deadline <= time.time() + HOUR
