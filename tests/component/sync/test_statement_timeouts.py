"""A request the cloud gives up on (PostgreSQL's statement timeout, SQLSTATE 57014, answered
500 by PostgREST; Supabase gives the API roles 8 s a statement: a big page or batch on a busy
project) is retried with backoff for half as many rows: asked again as it was, it would time
out again for ever, and the workspace would never sync. Against devcloud, whose sync_pull or
sync_push is made to time out above a size (certain, where a real timeout depends on load)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import asyncpg
import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import wait_for

from .conftest import MakeDevice
from .test_driver_devcloud import linked_device
from .test_pull_page_size import clone, messages_of, push_messages

#: Each function as it is declared, the size of a call, and the call of the real one.
_TIMED: dict[str, tuple[str, str, str, str]] = {
    "sync_pull": (
        'cursor text DEFAULT NULL, "limit" integer DEFAULT 1000, workspace_id uuid DEFAULT NULL',
        "json",
        '"limit"',
        'cursor, "limit", workspace_id',
    ),
    "sync_push": ("changes jsonb", "jsonb", "jsonb_array_length(changes)", "changes"),
}


async def time_out_calls_over(
    database_url: str, function: Literal["sync_pull", "sync_push"], rows: int
) -> None:
    """Make devcloud's ``function`` fail as the statement timeout does for a call of more
    than ``rows`` rows (pages asked for, or changes pushed); smaller calls run as before."""
    params, returns, size, args = _TIMED[function]
    conn = await asyncpg.connect(database_url)
    try:
        definition = await conn.fetchval(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.proname = $1 AND p.pronamespace = 'public'::regnamespace",
            function,
        )
        inner = f"{function}_inner"
        await conn.execute(definition.replace(f"public.{function}(", f"public.{inner}(", 1))
        await conn.execute(f"""
            CREATE OR REPLACE FUNCTION public.{function}({params}) RETURNS {returns}
            LANGUAGE plpgsql AS $$
            BEGIN
                IF {size} > {rows} THEN
                    RAISE EXCEPTION 'canceling statement due to statement timeout'
                        USING ERRCODE = '57014';
                END IF;
                RETURN public.{inner}({args});
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
    caplog.set_level(logging.INFO, logger="daemon.sync.workspace")
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    texts = [f"message {n:03d}" for n in range(120)]
    await push_messages(a, conv["id"], texts)
    await time_out_calls_over(fresh_database_url, "sync_pull", 50)

    b = await clone(make_device, tmp_path, ws["id"], pull_limit=1000, bulk_pull_limit=4000)
    session = b.cloud.driver.syncs[ws["id"]].session

    async def synced() -> bool:
        return sorted(await messages_of(b, conv["id"])) == texts and session.snapshot.error is None

    await wait_for(synced, timeout=30)  # was: never (the same 1000-row page, timing out)
    slow = [r.getMessage() for r in caplog.records if "sync.pull_page_too_slow" in r.msg]
    assert slow and "rows=1000:" in slow[0]  # (then fewer, as often as needed)
    assert session.snapshot.page_cap is not None


async def test_a_push_batch_the_cloud_gave_up_on_is_sent_again_with_fewer_rows(
    devcloud: RunningDevcloud, fresh_database_url: str, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    assert (await a.cloud.sync_now("push"))["error"] is None
    await time_out_calls_over(fresh_database_url, "sync_push", 50)
    texts = [f"offline {n:03d}" for n in range(120)]
    for text in texts:
        await a.store.messages.create(conversation_id=conv["id"], role="user", content=text)
    session = a.cloud.driver.syncs[ws["id"]].session
    first = await a.cloud.sync_now("push")
    assert first["error"] == "57014"  # said in status while it lasts

    async def pushed() -> bool:
        status = await a.cloud.sync_status()
        return status["outbox"] == 0 and status["last_error"] is None

    await wait_for(pushed, timeout=30)  # was: never (the same 120-row batch, timing out)
    async with devcloud.ctx.pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT content FROM public.messages WHERE conversation_id = $1", conv["id"]
        )
    assert sorted(r["content"] for r in stored) == texts  # each once: nothing lost or doubled
    assert session.snapshot.push_cap is not None  # (smaller, growing back as batches succeed)
