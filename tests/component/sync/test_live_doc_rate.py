"""A burst of document updates against devcloud's Realtime message rate (devcloud/realtime/
rate.py, Supabase's ``max_events_per_second``: 100 by default, each broadcast counted once sent
and once per delivery). The rate is averaged over 1 s here (4 buckets of 0.25 s) instead of
Supabase's minute (12 of 5 s), so that the test is quick; the limit is Supabase's. Both devices
push only when asked: what reaches B came by broadcast."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from devcloud.realtime.rate import MessageRate
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import Device, MakeDevice
from .test_live_devcloud import HOUR, pair
from .test_live_docs import shared_document, update_after

BURST = 200
INTERVAL_S = 0.1  # daemon/sync/live_pacer.py: at most one broadcast per document this often


def count_broadcasts(device: Device) -> list[str]:
    """The events of the broadcasts ``device`` sends from now on."""
    conn = device.cloud.live.connection
    assert conn is not None
    sent: list[str] = []
    original = conn.broadcast

    async def counting(workspace_id: str, event: str, payload: Any) -> bool:
        sent.append(event)
        return await original(workspace_id, event, payload)

    conn.broadcast = counting  # type: ignore[method-assign]
    return sent


async def test_a_burst_of_document_updates_stays_within_the_message_rate(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = devcloud.ctx.extras["realtime"].hub
    hub.rate = MessageRate(devcloud.ctx.config.max_events_per_second, tick_s=0.25, max_buckets=4)

    async def make(name: str, transport: Any = None, **driver: Any) -> Device:
        return await make_device(name, transport, push_delay_s=HOUR, **driver)

    a, b, ws_id, _ = await pair(devcloud, make, tmp_path)
    doc_id = await shared_document(a, b, ws_id, "start ")
    sent = count_broadcasts(a)
    caplog.set_level(logging.INFO, logger="devcloud.realtime.hub")
    loop_started = time.monotonic()
    for i in range(BURST):  # one keystroke each, as an editor sends them
        state = (await a.store.documents.get(doc_id))["state"]
        await a.store.documents.apply_update(doc_id, update_after(state, f"{i % 10}"))
    took = time.monotonic() - loop_started
    expected = (await a.store.documents.get(doc_id))["text"]
    print(f"{BURST} updates in {took:.2f} s: {len(sent)} broadcasts")
    assert len(expected) == len("start ") + BURST

    async def b_text() -> str:
        return str((await b.store.documents.get(doc_id))["text"])

    latest = {"text": ""}

    async def arrived() -> bool:
        latest["text"] = await b_text()
        return latest["text"] == expected

    await wait_for(arrived, timeout=10_000 * MS, message="the whole burst on B")
    closed = [r for r in caplog.records if r.getMessage().startswith("realtime.rate_limited")]
    assert closed == [], "a channel was closed for the project's message rate"
    print(f"then {len(sent)} broadcasts in all")
    assert sent == ["doc.update"] * len(sent)
    # one broadcast when the burst starts, then at most one per interval
    assert len(sent) <= took / INTERVAL_S + 2, f"{len(sent)} broadcasts in {took:.2f} s"
    assert len(sent) < BURST / 4
