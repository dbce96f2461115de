"""While the cloud cannot be reached, the linked workspaces share one backoff (protocol.py
``CloudReach``): one request at a time probes the cloud, the others wait for it, and the log
says once per outage that the cloud is unreachable (the failed attempts at DEBUG). Offline,
10 linked workspaces each retried and logged on their own: ~40 failed connections and 85 log
lines a minute. Recovery is at once for all once a probe (or anything else) gets an answer.

Against the in-process devcloud; the device's HTTP client goes through ``Outage``, which
refuses every request as a down cloud does (a connection error) while ``down`` is set. The
workspaces pull every 100 ms here (30 s in the daemon), so they would each try the cloud
again and again during the outage if nothing held them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, MakeDevice
from .transports import Outage

WORKSPACES = 4
PROBES = 6
LOGGER = "daemon.sync.workspace"


def lines(caplog: pytest.LogCaptureFixture, prefix: str, level: int | None = None) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == LOGGER
        and r.getMessage().startswith(prefix)
        and (level is None or r.levelno == level)
    )


async def test_workspaces_offline_share_one_probe_and_one_warning(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    caplog: pytest.LogCaptureFixture,
    cloud_rows: Callable[..., Awaitable[list[Any]]],
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    gate = Outage()
    a = await make_device("a", gate, pull_interval_s=100 * MS)
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    await a.cloud.login("ada@example.com", PASSWORD)
    ids = []
    for n in range(WORKSPACES):
        ws = (await a.store.workspaces.create(name=f"w{n}"))["id"]
        await a.cloud.link(workspace_id=ws)
        ids.append(ws)
    syncs = [a.cloud.driver.syncs[ws] for ws in ids]

    def idle() -> bool:
        return all(s.status.state == "idle" and s.status.pending == 0 for s in syncs)

    await wait_for(idle, message="every workspace linked and idle")

    # The cloud goes away; a write in one workspace meets it first.
    gate.down = True
    conv = await a.store.conversations.create(workspace_id=ids[0], name="during the outage")
    await wait_for(
        lambda: lines(caplog, "sync.cloud_probe") >= PROBES,
        message=f"{PROBES} probes of the cloud",
    )
    # Only probes went out after each workspace's first failure (a request under way when
    # the outage began, at most two each: a pull and a push), however often the periodic
    # pulls fell due meanwhile.
    assert gate.refused <= 2 * WORKSPACES + lines(caplog, "sync.cloud_probe")
    assert lines(caplog, "sync.cloud_unreachable", logging.WARNING) == 1
    for noisy in ("sync.pull_failed", "sync.push_failed", "sync.retry"):
        assert lines(caplog, noisy) == lines(caplog, noisy, logging.DEBUG)
    assert a.cloud.driver.syncs[ids[0]].status.state == "offline"

    # Back: the write is pushed and every workspace syncs again, the recovery said once.
    gate.down = False

    async def pushed() -> bool:
        rows = await cloud_rows("select id from conversations where id = $1", conv["id"])
        return len(rows) == 1

    await wait_for(pushed, message="the write made during the outage pushed")
    await wait_for(idle, message="every workspace idle again")
    assert lines(caplog, "sync.cloud_reachable", logging.INFO) == 1
    assert lines(caplog, "sync.cloud_unreachable") == 1


async def test_a_workspace_whose_requests_wait_for_the_probe_says_it_is_offline(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> None:
    """A workspace that sent nothing since another one met the outage is offline too (was:
    idle, with its write waiting for the probe: CI49)."""
    gate = Outage()
    a = await make_device("a", gate, pull_interval_s=3600.0)
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    await a.cloud.login("ada@example.com", PASSWORD)
    ids = [(await a.store.workspaces.create(name=f"w{n}"))["id"] for n in range(3)]
    for ws in ids:
        await a.cloud.link(workspace_id=ws)
    syncs = [a.cloud.driver.syncs[ws] for ws in ids]
    await wait_for(
        lambda: all(s.status.state == "idle" and s.status.pending == 0 for s in syncs),
        message="every workspace linked and idle",
    )
    gate.down = True
    # as when the request of a workspace not shown here meets the outage first
    assert a.cloud.driver.reach.unreachable(asyncio.get_running_loop().time(), "other", "connect")
    assert [s.status.state for s in syncs] == ["offline"] * len(syncs)
