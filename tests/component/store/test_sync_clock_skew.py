"""store.sync: a change the cloud refused for ``clock_skew`` is filed with the time its row is
sent again, and ``requeue_refused`` queues the row again, whole, once that time has come
(sync_skew.py). Real SQLite; the cloud's answers are written by the test."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from typing import Any

import pytest

from daemon.events import ChangeEvent
from daemon.hlc import (
    MAX_AHEAD_MS,
    SKEW_MARGIN_MS,
    SKEW_RETRY_CAP_MS,
    SKEW_RETRY_FLOOR_MS,
    decode,
)
from daemon.store import Store
from daemon.store.sync import OutboxChange

from .conftest import rows
from .test_sync_outbox import linked_workspace
from .test_sync_rejected_create import push, stored, whole


def ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def refuse(
    store: Store, ws_id: str, skewed: frozenset[str], wait_ms: int = 60_000, other: str = ""
) -> list[OutboxChange]:
    """Take the outbox and complete it as the cloud would answer: ``skewed`` rows refused as
    clock_skew, with the cloud's time ``wait_ms`` before it would take them (as an answer's
    Date tells it); ``other`` refused as invalid; the rest applied."""
    taken = await store.sync.take_outbox(workspace_ids=[ws_id])
    results: list[dict[str, Any]] = []
    for c in taken:
        if c.row_id in skewed:
            cloud = decode(c.hlc).wall_ms - MAX_AHEAD_MS - wait_ms
            results.append(
                {"id": c.row_id, "status": "rejected", "reason": "clock_skew",
                 "detail": "clock ahead", "cloud_time_ms": cloud}
            )  # fmt: skip
        elif c.row_id == other:
            results.append({"id": c.row_id, "status": "rejected", "reason": "invalid"})
        else:
            results.append({"id": c.row_id, "status": "applied"})
    await store.sync.complete_push(taken, results)
    return taken


async def pushed_workspace_and_conversation(store: Store) -> tuple[str, dict[str, Any]]:
    """A linked workspace, pushed, and a new conversation in it (not pushed yet)."""
    ws = await linked_workspace(store)
    await push(store, ws["id"])
    conv = await store.conversations.create(workspace_id=ws["id"], name="chat")
    return str(ws["id"]), conv


async def test_a_skew_refusal_is_filed_with_its_retry_time_and_requeued_whole_once_due(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws_id, conv = await pushed_workspace_and_conversation(store)
    await push(store, ws_id)
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="m1")
    task = await store.tasks.create(workspace_id=ws_id, kind="k")
    await refuse(store, ws_id, frozenset({msg["id"]}), other=task["id"])

    skew, final = sorted((await store.sync.rejected()).items, key=lambda r: r["reason"])
    assert (skew["row_id"], skew["reason"], final["reason"]) == (msg["id"], "clock_skew", "invalid")
    assert final["retry_at"] is None  # refused for good: sent again only at its next edit
    due = ms(skew["retry_at"])
    assert due - ms(skew["created_at"]) == 60_000 + SKEW_MARGIN_MS
    assert await store.sync.take_outbox(workspace_ids=[ws_id]) == []  # nothing held back

    early = await store.sync.requeue_refused(ws_id, due - 1)
    assert (early.rows, early.next_at_ms) == (0, due)
    assert await store.sync.take_outbox(workspace_ids=[ws_id]) == []

    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)
    done = await store.sync.requeue_refused(ws_id, due)
    assert (done.rows, done.next_at_ms) == (1, None)
    [left] = (await store.sync.rejected()).items
    assert left["row_id"] == task["id"]  # the other refusal stays, as it was
    [retried] = [e.data for e in events if e.topic == "sync.rejected"]
    assert retried["row_id"] == msg["id"] and retried["retried_at"] is not None
    [again] = await store.sync.take_outbox(workspace_ids=[ws_id])
    fields, clocks = whole(await stored(store, "messages", msg["id"]))
    assert (again.row_id, again.fields, again.hlc) == (msg["id"], fields, msg["hlc"])
    assert {k: again.field_hlc[k] for k in clocks} == clocks
    # a second look finds nothing more to do
    assert (await store.sync.requeue_refused(ws_id, due + 60_000)).rows == 0

    await push(store, ws_id)  # the cloud takes it now
    assert [r["row_id"] for r in (await store.sync.rejected()).items] == [task["id"]]
    assert rows(raw, "SELECT count(*) FROM outbox")[0][0] == 0


async def test_a_retry_refused_again_is_filed_again_waiting_twice_as_long(
    store: Store,
) -> None:
    ws_id, conv = await pushed_workspace_and_conversation(store)
    await refuse(store, ws_id, frozenset({conv["id"]}), wait_ms=0)
    [first] = (await store.sync.rejected()).items
    assert ms(first["retry_at"]) - ms(first["created_at"]) == SKEW_RETRY_FLOOR_MS

    await store.sync.requeue_refused(ws_id, ms(first["retry_at"]))
    await refuse(store, ws_id, frozenset({conv["id"]}), wait_ms=0)  # the cloud, again
    [second] = (await store.sync.rejected()).items
    assert second["id"] != first["id"]
    assert ms(second["retry_at"]) - ms(second["created_at"]) == 2 * SKEW_RETRY_FLOOR_MS
    assert await store.sync.take_outbox(workspace_ids=[ws_id]) == []


async def test_a_fast_wall_clock_without_the_cloud_s_time_backs_off_up_to_the_cap(
    store: Store,
) -> None:
    """This device's wall clock runs fast, and the cloud's answers carry no Date: by its own
    clock the cloud should take the change, so the clocks tell no wait. Each refusal again
    waits twice as long as the one before, up to SKEW_RETRY_CAP_MS (was: every 5 s)."""
    ws_id, conv = await pushed_workspace_and_conversation(store)
    waits = []
    for _ in range(8):
        [taken] = await store.sync.take_outbox(workspace_ids=[ws_id])
        refused = {"id": taken.row_id, "status": "rejected", "reason": "clock_skew"}  # no Date
        await store.sync.complete_push([taken], [refused])
        [filed] = (await store.sync.rejected()).items
        due = ms(filed["retry_at"])
        waits.append(due - ms(filed["created_at"]))
        assert (await store.sync.requeue_refused(ws_id, due)).rows == 1
    assert waits == [5_000, 10_000, 20_000, 40_000, 80_000, 160_000] + [SKEW_RETRY_CAP_MS] * 2
    # an edit meanwhile rides with the retry, which keeps its backoff
    await store.conversations.update(conv["id"], name="renamed")
    [taken] = await store.sync.take_outbox(workspace_ids=[ws_id])
    refused = {"id": taken.row_id, "status": "rejected", "reason": "clock_skew"}
    await store.sync.complete_push([taken], [refused])
    [filed] = (await store.sync.rejected()).items
    assert ms(filed["retry_at"]) - ms(filed["created_at"]) == SKEW_RETRY_CAP_MS


async def test_a_refused_create_goes_again_before_the_rows_refused_under_it(
    store: Store,
) -> None:
    ws_id, conv = await pushed_workspace_and_conversation(store)
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    # the conversation refused for its clock, its message for the missing conversation
    await refuse(store, ws_id, frozenset({conv["id"]}), other=msg["id"])
    skew = next(r for r in (await store.sync.rejected()).items if r["reason"] == "clock_skew")

    assert (await store.sync.requeue_refused(ws_id, ms(skew["retry_at"]))).rows == 1
    conv_again, child = await store.sync.take_outbox(workspace_ids=[ws_id])
    assert (conv_again.row_id, child.row_id) == (conv["id"], msg["id"])  # in this order
    assert conv_again.fields["created_at"] == conv["created_at"]  # whole: it creates the row
    assert child.rejected_create  # whole too, and settled once the cloud takes it
    await push(store, ws_id)
    assert (await store.sync.rejected()).items == []
    assert await store.sync.take_outbox(workspace_ids=[ws_id]) == []


async def test_many_rows_refused_at_once_are_one_log_line_per_kind(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A link made while the clock is ahead has every row refused, at every retry: one line
    per table and reason (the count and the first ids), not one WARNING per row (was: 40
    lines here, 100,000 for a large workspace every few minutes)."""
    ws_id, conv = await pushed_workspace_and_conversation(store)
    await push(store, ws_id)
    sent = [
        await store.messages.create(conversation_id=conv["id"], role="user", content=f"m{i}")
        for i in range(40)
    ]
    task = await store.tasks.create(workspace_id=ws_id, kind="k")
    caplog.set_level(logging.INFO, logger="daemon.store")
    await refuse(store, ws_id, frozenset(m["id"] for m in sent), other=task["id"])

    lines = [r for r in caplog.records if r.getMessage().startswith("sync.rejected ")]
    assert [(r.levelname, r.getMessage().split(" retry_at=")[0]) for r in lines] == [
        ("WARNING", f"sync.rejected table=messages reason=clock_skew rows=40"
                    f" ids={sent[0]['id']},{sent[1]['id']},{sent[2]['id']},+37"),
        ("WARNING", f"sync.rejected table=tasks reason=invalid id={task['id']}"),
    ]  # fmt: skip
    due = max(ms(r["retry_at"]) for r in (await store.sync.rejected()).items if r["retry_at"])
    caplog.clear()
    assert (await store.sync.requeue_refused(ws_id, due)).rows == 40
    [requeued] = [r for r in caplog.records if r.getMessage().startswith("sync.skew_requeued ")]
    assert requeued.getMessage().startswith("sync.skew_requeued table=messages rows=40 ids=")
