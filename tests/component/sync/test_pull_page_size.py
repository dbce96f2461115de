"""A pull page whose answer is over its size cap (http.py ``BOUNDS``, lowered here) is asked
for again with fewer rows, so rows made big (other apps write through REST too) cannot stop a
workspace's sync for ever; one row over the cap says so in ``last_error`` and is retried with
backoff. Against devcloud: real SQLite stores, real HTTP, real PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import asyncpg
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
    for text in texts:
        await a.store.messages.create(conversation_id=conv["id"], role="user", content=text)
    assert (await a.cloud.sync_now("push"))["error"] is None

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


async def time_out_pages_over(database_url: str, rows: int) -> None:
    """Make devcloud's ``sync_pull`` fail as PostgreSQL's statement timeout does (SQLSTATE
    57014, which PostgREST answers 500) for a page of more than ``rows`` rows: what a big
    workspace on a busy Supabase project gets (8 s a statement), made certain."""
    conn = await asyncpg.connect(database_url)
    try:
        definition = await conn.fetchval(
            "SELECT pg_get_functiondef('public.sync_pull(text, integer, uuid)'::regprocedure)"
        )
        await conn.execute(definition.replace("public.sync_pull(", "public.sync_pull_inner(", 1))
        await conn.execute(f"""
            CREATE OR REPLACE FUNCTION public.sync_pull(
                cursor text DEFAULT NULL, "limit" integer DEFAULT 1000,
                workspace_id uuid DEFAULT NULL
            ) RETURNS json LANGUAGE plpgsql AS $$
            BEGIN
                IF "limit" > {rows} THEN
                    RAISE EXCEPTION 'canceling statement due to statement timeout'
                        USING ERRCODE = '57014';
                END IF;
                RETURN public.sync_pull_inner(cursor, "limit", workspace_id);
            END $$""")
    finally:
        await conn.close()


async def test_a_page_the_cloud_gave_up_on_is_asked_for_again_with_fewer_rows(
    devcloud: RunningDevcloud,
    fresh_database_url: str,
    make_device: MakeDevice,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A statement timeout on a pull page (57014) used to be retried with the same page size,
    timing out again for ever: the workspace never synced. Now each retry asks for half as
    many rows, until the pages fit."""
    caplog.set_level(logging.INFO, logger="daemon.sync.workspace")
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    texts = [f"message {n:03d}" for n in range(120)]
    for text in texts:
        await a.store.messages.create(conversation_id=conv["id"], role="user", content=text)
    assert (await a.cloud.sync_now("push"))["error"] is None
    await time_out_pages_over(fresh_database_url, 50)

    b = await clone(make_device, tmp_path, ws["id"], pull_limit=1000, bulk_pull_limit=4000)
    session = b.cloud.driver.syncs[ws["id"]].session

    async def synced() -> bool:
        return sorted(await messages_of(b, conv["id"])) == texts and session.snapshot.error is None

    await wait_for(synced, timeout=30)
    slow = [r.getMessage() for r in caplog.records if "sync.pull_page_too_slow" in r.msg]
    assert slow and "rows=1000:" in slow[0]  # (then fewer, as often as needed)
    assert session.snapshot.page_cap is not None
