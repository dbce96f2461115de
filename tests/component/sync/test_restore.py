"""A restart's silent login (CloudService on the in-process devcloud): a restored session is
logged in as the stored user at once (session.py), so a stored session the cloud refuses
must end logged out with nothing left running (service.py ``_became_logged_in``); one restored
while the cloud is down answers that the cloud is unavailable until it can load the account."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.sync.cloud.errors import CloudUnavailable
from devcloud.server import RunningDevcloud
from tests.helpers import wait_for

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
