"""A cloud that answers ``has_more: true`` with a cursor that does not move on (audit G2 F11)
fails the pull as ``unexpected_shape``, with the normal backoff: it used to make the daemon
pull ~200 times a second for ever, and ``sync.pull`` never answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from daemon.store import Store
from daemon.sync.retry import Backoff
from tests.component.sync.mock_cloud import grant, link_workspace, mocked_driver
from tests.helpers import MS

WITHIN = 5_000 * MS
#: ~59 s (rand 0.99): the driver's own retry does not come during a test
SLOW = Backoff(base_s=60.0, cap_s=60.0)


class StuckCloud:
    """Every sync_pull answers the cursor "7:1" and that there is more after it."""

    def __init__(self) -> None:
        self.pulls = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            return httpx.Response(200, json=grant())
        if path == "/rest/v1/rpc/sync_pull":
            self.pulls += 1
            return httpx.Response(200, json={"cursor": "7:1", "has_more": True, "changes": []})
        return httpx.Response(404, json={"code": "PGRST202"})


@pytest.mark.timeout(30)  # without the check the mock cloud's loop never yields: no wait_for
async def test_a_page_whose_cursor_does_not_move_fails_the_pull(
    store: Store, tmp_path: Path
) -> None:
    cloud = StuckCloud()
    async with mocked_driver(
        store, tmp_path, cloud.handle, backoff=SLOW, rand=lambda: 0.99, pull_interval_s=3600.0
    ) as driver:
        ws_id = await link_workspace(store, driver)
        result = await asyncio.wait_for(driver.sync_now("pull"), WITHIN)  # was: never answered
        assert result["error"] == "unexpected_shape"
        status = driver.syncs[ws_id].status
        assert (status.state, status.error) == ("error", "unexpected_shape")
        assert status.retry_at is not None  # the backoff runs
        assert cloud.pulls <= 6  # a page that moved on, the one that did not; no loop
