"""A lone edit of a manual field (task_goal, R5 of daemon/sync/merge.py) whose push the cloud
answers ``superseded`` (another device's newer edit got there first) is a conflict (I9), also
when that newer value reaches this device only after the answer.

Against the in-process devcloud (real HTTP, real PostgreSQL). B's HTTP client goes through
``Gate``, which holds B's pushes until A's newer edit is in the cloud. B's realtime is off, so
A's edit reaches B by a pull after B's push was answered: the order a realtime hint slower than
the push's answer gives (before, the answer dropped B's entry, the pull then saw no unpushed
edit, and B's edit was replaced without a conflict).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, Device, MakeDevice
from .transports import PushGate

EMAIL = "tove@example.com"
HOUR = 3600.0
WITHIN = 20_000 * MS


@pytest.fixture
async def devices(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> AsyncIterator[tuple[Device, Device, PushGate, str]]:
    """A (publisher) and B (a clone, through a PushGate holding its task_goal pushes,
    realtime off), one workspace."""
    await devcloud.create_user(EMAIL, PASSWORD, org="Acme")
    a = await make_device("a", pull_interval_s=HOUR)
    gate = PushGate(lambda changes: any("task_goal" in c["fields"] for c in changes))
    b = await make_device("b", gate, pull_interval_s=HOUR)
    for device in (a, b):
        await device.cloud.login(EMAIL, PASSWORD)
    ws = await a.store.workspaces.create(name="notes")
    await a.store.workspaces.update(ws["id"], task_goal="the first goal")
    await a.cloud.link(workspace_id=ws["id"])
    await a.cloud.sync_now("push")
    (tmp_path / "ws-b").mkdir()
    await b.cloud.link(cloud_workspace_id=ws["id"], path=str(tmp_path / "ws-b"))
    await b.cloud.sync_now("pull")
    await b.cloud.live.deactivate()  # A's edits reach B by pulls only
    try:
        yield a, b, gate, ws["id"]
    finally:
        gate.release.set()  # a held request must not outlive the test


async def test_a_manual_edit_superseded_at_push_is_a_conflict_when_the_winner_arrives(
    devices: tuple[Device, Device, PushGate, str],
) -> None:
    a, b, gate, ws_id = devices
    assert (await b.store.workspaces.get(ws_id))["task_goal"] == "the first goal"
    gate.hold = True
    await b.store.workspaces.update(ws_id, task_goal="goal from b")  # pushed at once: held
    await wait_for(lambda: gate.held == 1, timeout=WITHIN, message="B's push held")
    await a.store.workspaces.update(ws_id, task_goal="goal from a")  # newer, in the cloud first
    await a.cloud.sync_now("push")
    gate.release.set()
    await wait_for(lambda: gate.answered == 1, timeout=WITHIN, message="B's push answered")

    async def settled() -> bool:
        return (await b.cloud.sync_status())["outbox"] == 0

    await wait_for(settled, timeout=WITHIN, message="B's push settled")
    assert (await b.store.sync.conflicts()).items == []  # B has not seen A's edit yet
    await b.cloud.sync_now("pull")

    row = await b.store.workspaces.get(ws_id)
    assert row["task_goal"] == "goal from a"  # the stored value follows LWW (R5)
    [conflict] = (await b.store.sync.conflicts()).items
    assert (conflict["field"], conflict["local_value"], conflict["remote_value"]) == (
        "task_goal", "goal from b", "goal from a",
    )  # fmt: skip
    assert conflict["remote_hlc"] == row["field_hlc"]["task_goal"] > conflict["local_hlc"]
    assert [e.data["id"] for e in b.events if e.topic == "sync.conflict"] == [conflict["id"]]
    assert (await b.cloud.sync_status())["outbox"] == 0
    # Settled as anywhere else: the local choice wins on both devices.
    await b.store.sync.settle_conflict(conflict["id"], "local")
    await b.cloud.sync_now("push")
    await a.cloud.sync_now("pull")
    assert (await a.store.workspaces.get(ws_id))["task_goal"] == "goal from b"
    assert (await b.store.sync.conflicts()).items == []
