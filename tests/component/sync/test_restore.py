"""A restart's silent login (CloudService on the in-process devcloud): a restored session is
logged in as the stored user at once (session.py), so a stored session the cloud refuses
must end logged out with nothing left running (service.py ``_became_logged_in``)."""

from __future__ import annotations

from pathlib import Path

from devcloud.server import RunningDevcloud
from tests.helpers import wait_for

from .conftest import PASSWORD, MakeDevice


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
