"""A pull page whose answer is over its size cap (http.py ``BOUNDS``, lowered here) is asked
for again with fewer rows, so rows made big (other apps write through REST too) cannot stop a
workspace's sync for ever; one row over the cap says so in ``last_error`` and is retried with
backoff. Against devcloud: real SQLite stores, real HTTP, real PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from daemon.sync.cloud.http import BOUNDS, Bounds
from devcloud.server import RunningDevcloud
from tests.helpers import wait_for

from .conftest import PASSWORD, Device, MakeDevice
from .test_driver_devcloud import EMAIL, linked_device

#: The cap of B's pull pages: about 20 of the messages below (each ~2 KB of answer).
CAP = 48 << 10
SMALL_BOUNDS = {**BOUNDS, "rest.pull": Bounds(60.0, CAP)}


async def clone(make_device: MakeDevice, tmp_path: Path, ws_id: str, **driver: Any) -> Device:
    b = await make_device("b", bounds=SMALL_BOUNDS, **driver)
    await b.cloud.login(EMAIL, PASSWORD)
    (tmp_path / "ws-b").mkdir()
    await b.cloud.link(cloud_workspace_id=ws_id, path=str(tmp_path / "ws-b"))
    return b


async def push_messages(device: Device, conv_id: str, texts: list[str]) -> None:
    """Write ``texts`` as messages of the conversation on ``device``, then push them."""
    for text in texts:
        await device.store.messages.create(conversation_id=conv_id, role="user", content=text)
    assert (await device.cloud.sync_now("push"))["error"] is None


async def messages_of(device: Device, conv_id: str) -> list[str]:
    page = await device.store.messages.list(conversation_id=conv_id, limit=1000)
    return [m["content"] for m in page.items]


async def test_pages_over_the_size_cap_are_asked_for_with_fewer_rows(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="daemon.sync.workspace")
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    texts = [f"{n:03d}" + "x" * 1500 for n in range(120)]  # ~250 KB in all
    await push_messages(a, conv["id"], texts)

    b = await clone(make_device, tmp_path, ws["id"], pull_limit=1000, bulk_pull_limit=4000)
    result = await b.cloud.sync_now("pull")
    assert result["error"] is None  # was: too_large, for ever (the same page every time)
    assert sorted(await messages_of(b, conv["id"])) == texts
    status = await b.cloud.sync_status()
    assert status["last_error"] is None and status["state"] in ("idle", "pulling")
    shrunk = [r.getMessage() for r in caplog.records if "sync.pull_page_too_large" in r.msg]
    assert shrunk and "rows=1000 " in shrunk[0]  # (then fewer, as often as needed)
    assert b.cloud.driver.syncs[ws["id"]].session.snapshot.page_cap is not None


async def test_one_row_over_the_size_cap_is_named_in_last_error_and_retried(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    before = [f"before {n}" for n in range(5)]
    for text in before:
        await a.store.messages.create(conversation_id=conv["id"], role="user", content=text)
    assert (await a.cloud.sync_now("push"))["error"] is None
    big = await a.store.messages.create(
        conversation_id=conv["id"], role="user", content="y" * (2 * CAP)
    )
    await a.store.messages.create(conversation_id=conv["id"], role="user", content="after")
    assert (await a.cloud.sync_now("push"))["error"] is None

    b = await clone(make_device, tmp_path, ws["id"])
    result = await b.cloud.sync_now("pull")
    assert result["error"] == "row_too_large"
    assert sorted(await messages_of(b, conv["id"])) == before  # up to the big row
    status = await b.cloud.sync_status()
    assert status["state"] == "error"
    error = status["last_error"]
    assert error.startswith("row_too_large:") and ws["id"] in error and "one row" in error
    assert str(CAP) in error
    [item] = status["workspaces"]
    assert item["last_error"] == error and item["retry_at"] is not None

    sync = b.cloud.driver.syncs[ws["id"]]
    await wait_for(lambda: sync.session.snapshot.attempt >= 3, message="retries with backoff")
    assert sync.session.snapshot.page_cap == 1
    assert big["id"] not in [m["id"] for m in (await b.store.messages.list(
        conversation_id=conv["id"], limit=1000
    )).items]  # fmt: skip
