"""JSON nested deeper than the store can write, pulled from the in-process devcloud: any member
of the organisation may write it through REST (PostgreSQL's jsonb and PostgREST take it). The
pull goes on and the field is set aside, as a number the store cannot keep is
(test_pull_wide_numbers.py). Was: from 255 levels the page failed to be stored
(``local_error``), from about 1020 it was "not JSON" (``not_json``), and either way the
workspace never pulled again, for every member, retrying for ever."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import MakeDevice
from .test_pull_wide_numbers import pushed_tasks


def nested(depth: int) -> str:
    return '{"k": ' + "[" * depth + "]" * depth + "}"


async def test_a_pulled_value_nested_too_deep_is_set_aside_and_the_pull_goes_on(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    cloud_rows: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, ws, (task,) = await pushed_tasks(devcloud, make_device, 1)
    await cloud_rows(
        "UPDATE tasks SET payload = $1::jsonb, status = 'running' WHERE id = $2::uuid",
        nested(300),  # within what orjson reads, beyond what it writes
        task["id"],
    )
    await cloud_rows(
        "UPDATE workspaces SET shared_memory = $1::jsonb, description = 'seen' WHERE id = $2::uuid",
        nested(3000),  # beyond what orjson reads
        ws["id"],
    )

    async def pulled() -> bool:
        assert (await a.cloud.sync_now("pull"))["error"] is None
        workspace = await a.store.workspaces.get(ws["id"])
        return (
            workspace["description"] == "seen"
            and (await a.store.tasks.get(task["id"]))["status"] == "running"
        )

    with caplog.at_level(logging.WARNING, logger="daemon.store.sync_apply"):
        await wait_for(pulled, timeout=10_000 * MS, message="the changes pulled")
    assert (await a.store.tasks.get(task["id"]))["payload"] == {"old": 0}
    assert (await a.store.workspaces.get(ws["id"]))["shared_memory"] == {}
    set_aside = [r.getMessage() for r in caplog.records if "sync.apply.set_aside" in r.message]
    assert any("table=tasks" in line and "reason=too_deep" in line for line in set_aside)
    assert any("table=workspaces" in line and "reason=too_deep" in line for line in set_aside)

    # once the cloud holds a value it can keep, the field arrives like any other
    await cloud_rows(
        "UPDATE tasks SET payload = '{\"n\": 5}'::jsonb WHERE id = $1::uuid", task["id"]
    )

    async def kept() -> bool:
        assert (await a.cloud.sync_now("pull"))["error"] is None
        return (await a.store.tasks.get(task["id"]))["payload"] == {"n": 5}

    await wait_for(kept, timeout=10_000 * MS, message="the value it can keep pulled")
