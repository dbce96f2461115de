"""``cloud.workspaces`` lists every workspace of the organisation, however few rows the cloud
answers per read (PostgREST's ``db-max-rows``: devcloud's ``max_rows``, 1000 on Supabase).
It used to read them with one request: past the cap, the rest were missing from the list."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devcloud.server import RunningDevcloud
from tests.conftest import DevcloudFactory

from .conftest import PASSWORD, MakeDevice
from .transports import Outage

CAP = 5


@pytest.fixture
async def devcloud(devcloud_factory: DevcloudFactory) -> RunningDevcloud:
    """This module's devcloud answers at most CAP rows per read."""
    return await devcloud_factory(max_rows=CAP)


class Recording(Outage):
    """The real transport; ``reads`` keeps the query of every read of the workspaces."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/rest/v1/workspaces"):
            self.reads.append(request.url.query.decode())
        return await super().handle_async_request(request)


async def test_every_workspace_is_listed_oldest_first_past_the_cloud_row_cap(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    user_id = await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # ids in another order than creation: the list is oldest first, as before
    made = [(str(uuid.uuid4()), start + timedelta(seconds=i)) for i in range(12)]
    async with devcloud.ctx.pool.acquire() as conn:
        org_id = await conn.fetchval(
            "SELECT org_id FROM public.org_memberships WHERE user_id = $1", uuid.UUID(user_id)
        )
        await conn.executemany(
            "INSERT INTO public.workspaces (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)",
            [(uuid.UUID(ws), org_id, f"ws {i}", at) for i, (ws, at) in enumerate(made)],
        )
        await conn.execute(  # a deleted one is not listed
            "INSERT INTO public.workspaces (id, org_id, deleted_at) VALUES ($1, $2, now())",
            uuid.uuid4(),
            org_id,
        )
    recording = Recording()
    device = await make_device("a", recording)
    await device.cloud.login("ada@example.com", PASSWORD)

    listed = await device.cloud.workspaces()

    assert listed["organization"]["name"] == "Acme"
    assert [(w["id"], w["name"]) for w in listed["items"]] == [
        (ws, f"ws {i}") for i, (ws, _) in enumerate(made)
    ]
    assert {w["org_id"] for w in listed["items"]} == {str(org_id)}
    assert len(recording.reads) == 3  # 5 + 5 + 2: the page holding all that is left is the last
