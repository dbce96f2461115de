"""Numbers the cloud's jsonb holds but the daemon does not keep exactly (daemon/jsonnumbers.py),
pulled from the in-process devcloud: another app writes them with plain SQL. The pull goes on
(a number beyond the double range made the whole page "not JSON", so the workspace never
pulled again), the rest of the change applies, and the field is set aside, never stored
changed (orjson reads 2**64 as the nearest double)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, Device, MakeDevice

WIDE = ('{"n": 18446744073709551616}', '{"n": 1e400}', '{"n": [1, -1e20]}')


async def pushed_tasks(
    devcloud: RunningDevcloud, make_device: MakeDevice, count: int
) -> tuple[Device, dict[str, Any], list[dict[str, Any]]]:
    """Device A (no periodic pull: the test pulls), a linked workspace and ``count`` tasks of
    it (payload ``{"old": i}``), all pushed."""
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    a = await make_device("a", pull_interval_s=3600.0)
    await a.cloud.login("ada@example.com", PASSWORD)
    ws = await a.store.workspaces.create(name="w")
    tasks = [
        await a.store.tasks.create(workspace_id=ws["id"], kind="k", payload={"old": i})
        for i in range(count)
    ]
    await a.cloud.link(workspace_id=ws["id"])
    assert (await a.cloud.sync_now("push"))["error"] is None
    return a, ws, tasks


async def test_a_pulled_number_the_store_cannot_keep_is_set_aside_and_the_pull_goes_on(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    cloud_rows: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, ws, tasks = await pushed_tasks(devcloud, make_device, len(WIDE))
    for task, payload in zip(tasks, WIDE, strict=True):
        await cloud_rows(
            "UPDATE tasks SET payload = $1::jsonb, status = 'running' WHERE id = $2::uuid",
            payload,
            task["id"],
        )
    await cloud_rows(
        "UPDATE workspaces SET shared_memory = '{\"k\": 1e400}'::jsonb, description = 'seen'"
        " WHERE id = $1::uuid",
        ws["id"],
    )

    async def pulled() -> bool:
        """A pull brought the changes (one may not: a pull serves only the transactions older
        than every one still open in the cloud, e.g. Realtime's join check, 0006_sync_pull.sql)."""
        assert (await a.cloud.sync_now("pull"))["error"] is None
        workspace = await a.store.workspaces.get(ws["id"])
        statuses = [(await a.store.tasks.get(task["id"]))["status"] for task in tasks]
        return workspace["description"] == "seen" and statuses == ["running"] * len(tasks)

    with caplog.at_level(logging.WARNING, logger="daemon.store.sync_apply"):
        await wait_for(pulled, timeout=10_000 * MS, message="the changes pulled")
    for i, task in enumerate(tasks):
        stored = await a.store.tasks.get(task["id"])
        assert (stored["status"], stored["payload"]) == ("running", {"old": i})
    workspace = await a.store.workspaces.get(ws["id"])
    assert (workspace["description"], workspace["shared_memory"]) == ("seen", {})
    set_aside = [r.getMessage() for r in caplog.records if "sync.apply.set_aside" in r.message]
    assert all("reason=wide_number" in line for line in set_aside)
    # each change once by the pull, and maybe once more by Realtime (its hint may come first)
    named = {
        tuple(re.findall(r"table=(\w+) id='([^']+)' fields=(\S+)", line)[0]) for line in set_aside
    }
    expected = {("tasks", task["id"], "payload") for task in tasks}
    assert named == expected | {("workspaces", ws["id"], "shared_memory")}
    assert not any("1844674407" in line or "1e400" in line for line in caplog.messages)

    # once the cloud holds a number it can keep, the field arrives like any other
    await cloud_rows(
        "UPDATE tasks SET payload = '{\"n\": 5}'::jsonb WHERE id = $1::uuid", tasks[1]["id"]
    )

    async def kept() -> bool:
        assert (await a.cloud.sync_now("pull"))["error"] is None
        return (await a.store.tasks.get(tasks[1]["id"]))["payload"] == {"n": 5}

    await wait_for(kept, timeout=10_000 * MS, message="the number it can keep pulled")
