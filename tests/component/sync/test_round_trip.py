"""A device's own changes coming back from the cloud are echoes (real store, real mapping and
merge, no network): pushed through ``cloud_change``, stored as the cloud's merge stores a new
row (``merge_row`` into nothing: the rules the cloud SQL mirrors), pulled back through
``local_change`` and ``merge_pulled``. Nothing visible may change and no UI event may fire:
not ``updated_at`` moving back, not a task's null payload turning into the cloud's ``{}``."""

from __future__ import annotations

from typing import Any

from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.store.sync import OutboxChange
from daemon.sync.adapters import merge_pulled
from daemon.sync.mapping import cloud_change, local_change
from daemon.sync.merge import RowState, merge_row, row_hlc

ORG = "01900000-0000-7000-8000-0000000000ff"
GETTERS = ("workspaces", "conversations", "messages", "tasks")


def stored_by_cloud(change: OutboxChange) -> dict[str, Any]:
    """The pull change for the row the cloud stores when ``change`` creates it."""
    pushed = cloud_change(
        change.table,
        change.row_id,
        change.workspace_id,
        change.fields,
        change.field_hlc,
        hlc=change.hlc,
        origin=change.origin,
        org_id=ORG,
    )
    assert pushed is not None
    merged = merge_row(change.table, None, RowState(pushed["fields"], pushed["field_hlc"])).row
    hlc = row_hlc(merged)
    assert hlc is not None
    row = {**merged.fields, "id": change.row_id, "field_hlc": dict(merged.field_hlc), "hlc": hlc}
    row["origin"] = hlc[21:]  # the device part of the row clock
    for name in ("created_at", "updated_at"):  # timestamptz as PostgreSQL answers it
        row[name] = row[name].replace("Z", "+00:00")
    back = local_change({"table": change.table, "id": change.row_id, "row": row})
    assert back is not None
    return back


def without_key_clocks(row: dict[str, Any]) -> dict[str, Any]:
    """The row with map-key clocks left out (the cloud's merge spells them out per key)."""
    if "field_hlc" not in row:
        return row
    return {**row, "field_hlc": {k: v for k, v in row["field_hlc"].items() if "." not in k}}


async def test_own_changes_pulled_back_change_nothing_and_tell_no_ui(store: Store) -> None:
    ws = await store.workspaces.create(name="w", path="/src/w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    task = await store.tasks.create(workspace_id=ws["id"], kind="build")  # payload null
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path="/src/w")
    # (written after the link: its own entry, so one take holds every row; a message of the
    # link's snapshot would come in a take of its own, store/sync_outbox.py)
    await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    await store.workspaces.update(
        ws["id"], description="d", next_steps=None, shared_memory={"k": 1}
    )
    await store.conversations.update(conv["id"], name="renamed")
    await store.tasks.update(task["id"], status="running", progress=None)

    taken = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert {c.table for c in taken} == set(GETTERS)
    before = {c.row_id: await getattr(store, c.table).get(c.row_id) for c in taken}
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)
    outcome = await store.sync.apply_pull(
        scope=f"workspace:{ws['id']}",
        changes=[stored_by_cloud(c) for c in taken],
        cursor="1",
        merge=merge_pulled,
    )
    assert (outcome.applied, outcome.changed, outcome.skipped) == (len(taken), 0, 0)
    assert [e.topic for e in events] == []
    for change in taken:
        after = await getattr(store, change.table).get(change.row_id)
        assert without_key_clocks(after) == without_key_clocks(before[change.row_id])
