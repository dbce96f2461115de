"""A device whose clock runs ahead (its wall clock ran fast, then was set back; the clock never
goes back) against devcloud: the cloud refuses its changes as ``clock_skew``, and each goes
again, whole, once the cloud's clock has caught up (store/sync_skew.py); ``sync.status`` says
the clock is ahead meanwhile. Time is not waited out: the stored clock is set just past the
cloud's allowed lead, by a few seconds."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.hlc import MAX_AHEAD_MS, encode
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, MakeDevice
from .test_driver_devcloud import EMAIL, count, linked_device

CloudRows = Callable[..., Awaitable[list[Any]]]
#: How far past the cloud's allowed lead the stored clock is set: the restart and the first
#: push must happen within it (so the cloud refuses), and the test waits about that long.
PAST_LEAD_MS = 6000


def set_clock_ahead(db: Path, by_ms: int) -> None:
    """Store a clock ``by_ms`` ahead of the wall clock, as a daemon leaves it (stopped)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        [(device_id,)] = conn.execute("SELECT value FROM meta WHERE key = 'device_id'")
        value = encode(round(time.time() * 1000) + by_ms, 0, device_id)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'hlc_last'", (value,))
    finally:
        conn.close()


async def test_a_change_refused_for_clock_skew_reaches_the_cloud_once_its_time_comes(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    tmp_path: Path,
    cloud_rows: CloudRows,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _, conv = await linked_device(devcloud, make_device, tmp_path)
    assert (await a.cloud.sync_now("push"))["error"] is None
    await a.cloud.stop()
    await a.store.close()
    set_clock_ahead(a.data_dir / "syncd.db", MAX_AHEAD_MS + PAST_LEAD_MS)

    again = await make_device("a")  # the same data dir: its store, link and session

    async def idle() -> bool:
        return (await again.cloud.sync_status())["state"] == "idle"

    await wait_for(idle, message="the restored sync at rest")
    ahead = (await again.cloud.sync_status())["clock_ahead"]
    assert ahead is not None and ahead["ahead_ms"] > MAX_AHEAD_MS
    warnings = [r for r in caplog.records if r.getMessage().startswith("sync.clock_ahead ")]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"

    message = await again.store.messages.create(
        conversation_id=conv["id"], role="user", content="written while ahead"
    )

    async def refused_once() -> bool:
        return (await again.cloud.sync_status())["rejected"] == 1

    await wait_for(refused_once, timeout=3000 * MS, message="the refusal")
    [refused] = (await again.cloud.rejected()).items
    assert (refused["row_id"], refused["reason"]) == (message["id"], "clock_skew")
    assert refused["retry_at"] is not None
    assert await count(cloud_rows, "messages", message["id"]) == 0

    # No edit, no request: the sync sends it again once the cloud's clock has caught up.
    await wait_for(
        lambda: count(cloud_rows, "messages", message["id"]),
        timeout=(PAST_LEAD_MS + 8000) * MS,
        message="the refused message in the cloud",
    )
    sql = "SELECT content, hlc FROM public.messages WHERE id = $1"
    [row] = await cloud_rows(sql, message["id"])
    assert (row["content"], row["hlc"]) == ("written while ahead", message["hlc"])

    async def settled() -> bool:
        status = await again.cloud.sync_status()
        return status["rejected"] == 0 and status["outbox"] == 0

    await wait_for(settled, timeout=3000 * MS, message="the refusal settled")
    assert len([r for r in caplog.records if r.getMessage().startswith("sync.clock_ahead ")]) == 1


async def test_cloud_status_and_its_event_show_the_clock_ahead(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """cloud.status says so too, as sync.status does (was: only sync.status showed it)."""
    a, _, _ = await linked_device(devcloud, make_device, tmp_path)
    assert a.cloud.cloud_status()["clock_ahead"] is None
    await a.cloud.stop()
    await a.store.close()
    set_clock_ahead(a.data_dir / "syncd.db", 3 * MAX_AHEAD_MS)

    again = await make_device("a")
    shown = again.cloud.cloud_status()["clock_ahead"]
    assert shown is not None and shown["ahead_ms"] > 2 * MAX_AHEAD_MS
    assert shown["until"] == (await again.cloud.sync_status())["clock_ahead"]["until"]

    def published() -> list[dict[str, Any]]:
        return [e.data for e in again.events if e.topic == "cloud.status"]

    await wait_for(lambda: any(d["clock_ahead"] for d in published()), message="the event")
    [event, *_] = [d for d in published() if d["clock_ahead"]]
    assert event["clock_ahead"]["until"] == shown["until"]


async def test_a_workspace_published_while_the_clock_is_ahead_reaches_the_cloud_later(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    """``syncd link`` of a workspace whose clock the cloud refuses (clock_skew) links it (was:
    the link failed with clock_skew): its rows are refused (for their clocks, or for the
    workspace the cloud does not have yet), filed, and reach the cloud by themselves once the
    cloud's clock has caught up, the workspace first, as any push refused so."""
    await devcloud.create_user(EMAIL, PASSWORD, org="Acme")
    first = await make_device("a")
    await first.cloud.login(EMAIL, PASSWORD)
    folder = tmp_path / "ws-a"
    folder.mkdir()
    ws = await first.store.workspaces.create(name="notes", path=str(folder))
    old = await first.store.conversations.create(workspace_id=ws["id"], name="before")
    await first.cloud.stop()
    await first.store.close()
    set_clock_ahead(first.data_dir / "syncd.db", MAX_AHEAD_MS + PAST_LEAD_MS)

    a = await make_device("a")  # its clock ahead
    await wait_for(lambda: a.cloud.session.status.logged_in, message="the restored login")
    ws = await a.store.workspaces.update(ws["id"], name="ahead")
    conv = await a.store.conversations.create(workspace_id=ws["id"], name="chat")
    message = await a.store.messages.create(conversation_id=conv["id"], role="user", content="m")
    link = await a.cloud.link(workspace_id=ws["id"])
    assert link["workspace_id"] == ws["id"] and link["path"] == str(folder)
    assert json.loads((folder / ".cloud-link.json").read_text())["cloudWorkspaceId"] == ws["id"]

    async def refused() -> dict[str, str | None]:
        return {r["row_id"]: r["retry_at"] for r in (await a.cloud.rejected()).items}

    async def all_refused() -> bool:
        return {ws["id"], old["id"], conv["id"], message["id"]} <= set(await refused())

    await wait_for(all_refused, timeout=3000 * MS, message="the refusals")
    assert (await refused())[ws["id"]] is not None  # (clock_skew: retried at its time)
    assert await count(cloud_rows, "workspaces", ws["id"]) == 0

    # No request: the workspace, then the rows refused under it, go once the time has come.
    async def in_cloud() -> bool:
        rows = (("workspaces", ws), ("conversations", old), ("conversations", conv))
        rows += (("messages", message),)
        return all([await count(cloud_rows, table, row["id"]) for table, row in rows])

    await wait_for(in_cloud, timeout=(PAST_LEAD_MS + 10_000) * MS, message="its rows in the cloud")
    [cloud_ws] = await cloud_rows("SELECT name, hlc FROM public.workspaces WHERE id = $1", ws["id"])
    assert (cloud_ws["name"], cloud_ws["hlc"]) == ("ahead", ws["hlc"])

    async def settled() -> bool:
        status = await a.cloud.sync_status()
        return status["rejected"] == 0 and status["outbox"] == 0

    await wait_for(settled, timeout=5000 * MS, message="every refusal settled")
