"""store.sync: a push the cloud answers ``superseded`` before this device saw the value that
beat it is kept as a lost entry (sync_outbox.py ``_keep_lost``), which the merge counts as an
unpushed edit until that value arrives: a lost ``manual`` edit (task_goal) records its conflict
then (R5, I9), as an edit that never left does. The entry is never pushed again, not counted,
and dropped once the row no longer holds its values.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from daemon.store import Store

from .conftest import rows
from .test_sync_support import change, clock, iso, merge

SCOPE = "workspace:test"


async def linked(store: Store) -> dict[str, Any]:
    ws = await store.workspaces.create(name="w")
    await store.sync.link(workspace_id=ws["id"], org_id="o", path=None)
    await complete(store, ws["id"], "applied")
    return ws


async def complete(store: Store, ws_id: str, status: str) -> None:
    """Take the outbox and complete every change with ``status``."""
    taken = await store.sync.take_outbox(workspace_ids=[ws_id])
    await store.sync.complete_push(taken, [{"id": c.row_id, "status": status} for c in taken])


async def pull(store: Store, ws_id: str, c: str, **fields: Any) -> Any:
    """A pulled version of the workspace with ``fields`` written at clock ``c`` (an edit
    stamps ``updated_at`` too)."""
    fields["updated_at"] = iso(c)
    remote = {"id": ws_id, **fields, "field_hlc": dict.fromkeys(fields, c), "hlc": c}
    return await store.sync.apply_pull(
        scope=SCOPE, changes=[change("workspaces", {**remote, "origin": "device-b"})],
        cursor=None, merge=merge,
    )  # fmt: skip


def entries(raw: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return rows(raw, "SELECT id < 0, row_id, fields FROM outbox ORDER BY id")


async def test_a_superseded_manual_edit_is_a_conflict_when_the_winner_arrives(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await linked(store)
    mine = await store.workspaces.update(ws["id"], task_goal="goal from here")
    await complete(store, ws["id"], "superseded")  # a newer edit got to the cloud first

    # Kept, lost: not pushed again, not counted, but still an unpushed edit for the merge.
    assert [(lost, row_id) for lost, row_id, _ in entries(raw)] == [(1, ws["id"])]
    assert await store.sync.take_outbox(workspace_ids=[ws["id"]]) == []
    assert (await store.sync.counts())["outbox"] == 0
    assert (await store.sync.conflicts()).items == []

    theirs = clock(60_000)
    outcome = await pull(store, ws["id"], theirs, task_goal="goal from there")
    assert outcome.conflicts == 1
    [conflict] = (await store.sync.conflicts()).items
    assert (conflict["field"], conflict["local_value"], conflict["remote_value"]) == (
        "task_goal", "goal from here", "goal from there",
    )  # fmt: skip
    assert (conflict["local_hlc"], conflict["remote_hlc"]) == (mine["hlc"], theirs)
    assert entries(raw) == []  # the value that beat it arrived: dropped
    assert (await pull(store, ws["id"], theirs, task_goal="goal from there")).conflicts == 0


async def test_no_lost_entry_when_the_winner_arrived_while_the_push_was_out(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await linked(store)
    await store.workspaces.update(ws["id"], task_goal="goal from here")
    taken = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    # While the push is out, the newer value arrives (a realtime hint): the entry is pending.
    assert (await pull(store, ws["id"], clock(60_000), task_goal="there")).conflicts == 1
    await store.sync.complete_push(taken, [{"id": ws["id"], "status": "superseded"}])
    assert entries(raw) == []
    assert len((await store.sync.conflicts()).items) == 1


async def test_a_lost_edit_replaced_by_a_newer_local_edit_is_no_conflict_later(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await linked(store)
    await store.workspaces.update(ws["id"], task_goal="lost")
    await complete(store, ws["id"], "superseded")
    # The value that beat it comes first as an older version (a stale hint): nothing changes.
    assert (await pull(store, ws["id"], clock(-60_000), task_goal="stale")).conflicts == 0
    assert [lost for lost, _, _ in entries(raw)] == [1]
    await store.workspaces.update(ws["id"], task_goal="newer, pushed")
    await complete(store, ws["id"], "applied")
    # A later remote edit: the lost value is no longer the row's, so no unpushed edit lost.
    outcome = await pull(store, ws["id"], clock(60_000), task_goal="later remote")
    assert outcome.conflicts == 0
    assert entries(raw) == []
    assert (await store.workspaces.get(ws["id"]))["task_goal"] == "later remote"


async def test_a_superseded_edit_of_a_last_writer_wins_field_is_no_conflict(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await linked(store)
    await store.workspaces.update(ws["id"], description="mine")
    await complete(store, ws["id"], "superseded")
    outcome = await pull(store, ws["id"], clock(60_000), description="theirs")
    assert outcome.conflicts == 0 and outcome.changed == 1
    assert entries(raw) == []
    # Completing the same push again keeps nothing twice.
    await store.workspaces.update(ws["id"], task_goal="g")
    taken = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    for _ in range(2):
        await store.sync.complete_push(taken, [{"id": ws["id"], "status": "superseded"}])
    assert [lost for lost, _, _ in entries(raw)] == [1]
