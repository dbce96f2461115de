"""A push of many batches takes the next batch while the current one is in flight (take_outbox
after the batch's last entry), has at most PUSH_IN_FLIGHT requests in flight, settles a batch
only once the cloud answered it, and after a failed request sends the same entries again (the
cloud dedupes): every row reaches the cloud, no answered batch is sent twice except the one
in flight beside the failed one (dropped with it: its entries stay and are sent again). An
httpx mock transport stands in for the cloud (mock_cloud.py: to fail one request on cue); the
store is a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson

from daemon.config import StoreSettings
from daemon.store import Store
from daemon.sync.workspace import PUSH_IN_FLIGHT
from tests.component.sync.mock_cloud import ORG, grant, mocked_driver
from tests.helpers import MS, wait_for


class PushCloud:
    """Answers every ``sync_push`` change ``applied``; the ``fail_at``-th push fails (503)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.pushes: list[list[str]] = []  # the row ids of each push request, in order
        self.failed: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            return httpx.Response(200, json=grant())
        if path == "/rest/v1/rpc/sync_pull":
            return httpx.Response(200, json={"changes": [], "cursor": None, "has_more": False})
        if path != "/rest/v1/rpc/sync_push":
            return httpx.Response(404, json={"code": "PGRST000"})
        changes = orjson.loads(request.content)["changes"]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # a network round trip: let the daemon run meanwhile
            self.pushes.append([c["id"] for c in changes])
            if len(self.pushes) == self.fail_at:
                self.failed = self.pushes[-1]
                return httpx.Response(503, json={"code": "unavailable", "message": "later"})
            answers = [{"id": c["id"], "table": c["table"], "status": "applied"} for c in changes]
            return httpx.Response(200, json=answers)
        finally:
            self.in_flight -= 1


async def test_batches_are_prepared_ahead_and_a_failed_one_is_sent_again(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "syncd.db", StoreSettings())
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    sent = [
        await store.messages.create(conversation_id=conv["id"], role="user", content=f"m{i}")
        for i in range(230)
    ]
    expected = {ws["id"], conv["id"], *(m["id"] for m in sent)}
    cloud = PushCloud(fail_at=2)
    takes: list[int] = []
    take = store.sync.take_outbox

    async def recorded_take(**kwargs: Any) -> Any:
        takes.append(kwargs.get("after", 0))
        return await take(**kwargs)

    store.sync.take_outbox = recorded_take  # type: ignore[method-assign]
    try:
        async with mocked_driver(store, tmp_path, cloud.handle, push_limit=50) as driver:
            link = await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
            driver.open()
            await driver.add(link)
            await driver.activate()

            async def drained() -> bool:
                return (await store.sync.counts())["outbox"] == 0

            await wait_for(drained, timeout=10_000 * MS, message="the outbox to drain")
            answered = [ids for ids in cloud.pushes if ids is not cloud.failed]
            flat = [i for ids in answered for i in ids]
            assert set(flat) == expected
            # each row answered once, but those of the push sent beside the failed one
            beside = set(cloud.pushes[cloud.pushes.index(cloud.failed) + 1])
            twice = {i for i in flat if flat.count(i) > 1}
            assert twice <= beside and all(flat.count(i) <= 2 for i in flat)
            assert cloud.failed and cloud.pushes.count(cloud.failed) == 2  # sent again, as it was
            assert all(len(ids) <= 50 for ids in cloud.pushes)
            assert cloud.max_in_flight <= PUSH_IN_FLIGHT
            # Taken ahead: most takes started after a batch in flight; from the start only at
            # the beginning, after the failure, and for the final (empty) take.
            assert sum(after > 0 for after in takes) >= len(answered) - 2
            assert takes.count(0) <= 4
    finally:
        await store.close()
