"""A restart's silent login (CloudService on the in-process devcloud): a restored session is
logged in as the stored user at once (session.py), so a stored session the cloud refuses
must end logged out with nothing left running (service.py ``_became_logged_in``); one restored
while the cloud is down answers that the cloud is unavailable until it can load the account."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from daemon.sync.cloud.errors import CloudUnavailable
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, MakeDevice
from .transports import Outage


async def test_a_refused_stored_session_leaves_the_sync_stopped(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    a = await make_device("a")
    await a.cloud.login("ada@example.com", PASSWORD)
    ws = await a.store.workspaces.create(name="notes")
    await a.cloud.link(workspace_id=ws["id"])
    await a.cloud.stop()
    await a.store.close()
    async with devcloud.ctx.pool.acquire() as conn:  # the cloud ends every session meanwhile
        await conn.execute("DELETE FROM auth.sessions")

    again = await make_device("a")  # the same data dir: its store, links and stored session
    await wait_for(lambda: again.cloud.cloud_status()["auth_required"], message="the refusal")
    status = again.cloud.cloud_status()
    assert status["logged_in"] is False and status["user"]["email"] == "ada@example.com"
    # whatever the restore started while it looked logged in has stopped again
    await wait_for(lambda: not again.cloud.driver.active, message="the sync stopped")
    assert (await again.cloud.sync_status())["state"] == "auth_required"
    assert again.cloud.live.status() == {"connected": False, "subscribed": []}


async def test_a_session_restored_while_the_cloud_is_down_answers_that_it_is_unavailable(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """Its account (organisation) is not loaded yet: calls that need it load it, and answer
    that the cloud is unavailable while they cannot (not an empty list, not no_organization)."""
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    a = await make_device("a")
    await a.cloud.login("ada@example.com", PASSWORD)
    await a.cloud.stop()
    await a.store.close()

    outage = Outage(down=True)
    again = await make_device("a", outage)
    await wait_for(lambda: again.cloud.cloud_status()["logged_in"], message="the restore")
    with pytest.raises(CloudUnavailable) as listed:
        await again.cloud.workspaces()
    assert listed.value.reason == "connect"
    ws = await again.store.workspaces.create(name="notes")
    with pytest.raises(CloudUnavailable):
        await again.cloud.link(workspace_id=ws["id"])

    outage.down = False  # the cloud is back: the account loads when asked
    listed_now = await again.cloud.workspaces()
    assert listed_now["organization"]["name"] == "Acme"
    assert again.cloud.cloud_status()["organization"]["name"] == "Acme"


async def test_a_restart_while_the_cloud_is_down_shows_the_account_last_loaded(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """cloud.status shows the organisation, role and profile last loaded (kept in the local
    store), marked by ``account_as_of`` until the cloud confirms them; a logout forgets them."""
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    a = await make_device("a")
    before = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    await a.cloud.login("ada@example.com", PASSWORD)
    loaded = a.cloud.cloud_status()
    assert loaded["organization"]["name"] == "Acme" and loaded["role"] == "owner"
    assert loaded["profile"]["email"] == "ada@example.com"
    assert loaded["account_as_of"] is None  # current: loaded from the cloud
    await a.cloud.stop()
    await a.store.close()

    outage = Outage(down=True)
    again = await make_device("a", outage)
    await wait_for(lambda: again.cloud.cloud_status()["logged_in"], message="the restore")
    shown = again.cloud.cloud_status()
    assert shown["last_error"] == "connect" and outage.refused > 0
    for key in ("user", "profile", "organization", "role"):
        assert shown[key] == loaded[key], key
    assert isinstance(shown["account_as_of"], str) and shown["account_as_of"] >= before

    outage.down = False  # the cloud is back: the account loads, and is current again
    await again.cloud.workspaces()
    current = again.cloud.cloud_status()
    assert current["organization"] == loaded["organization"]
    assert current["account_as_of"] is None

    await again.cloud.logout()
    gone = again.cloud.cloud_status()
    assert (gone["organization"], gone["profile"], gone["account_as_of"]) == (None, None, None)
    assert await again.store.account.load() is None


class HoldOrganizations(httpx.AsyncBaseTransport):
    """The real transport; while ``hold`` is set, the answer to a read of ``organizations``
    (the last request of an account load) waits for ``release`` (``held``: one waits)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.hold = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.hold and request.url.path.endswith("/rest/v1/organizations"):
            await response.aread()
            self.held.set()
            await self.release.wait()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_account_load_overtaken_by_a_logout_is_dropped(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> None:
    """What a load brings after a logout is no longer the session's: it is neither shown nor
    kept (it would show the organisation of a user who is gone)."""
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    gate = HoldOrganizations()
    a = await make_device("a", gate)
    await a.cloud.login("ada@example.com", PASSWORD)
    gate.hold = True
    listing = asyncio.create_task(a.cloud.workspaces())  # loads the account again... held
    a.cloud._membership = None  # (as after a load that failed: workspaces() loads it anew)
    await asyncio.wait_for(gate.held.wait(), 5_000 * MS)
    await a.cloud.logout()
    gate.release.set()
    await asyncio.gather(listing, return_exceptions=True)
    status = a.cloud.cloud_status()
    assert (status["organization"], status["role"], status["profile"]) == (None, None, None)
    assert await a.store.account.load() is None
