"""Local writes clock exactly what they write (real SQLite file): every field a create, update
or delete writes, ``updated_at`` included, gets the write's clock in the row's ``field_hlc`` AND
in its outbox entry, so what a device stores is exactly what it pushes. JSON columns the cloud
keeps NOT NULL never hold null here either. Pulled rows take ``origin`` from their row clock."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
import pytest

from daemon.store import Store
from daemon.store.sync_outbox import entry_clocks

from .conftest import rows
from .linking import create_linked
from .test_sync_support import OTHER, change, clock, merge, remote_workspace

BOOKKEEPING = {"id", "hlc", "field_hlc", "origin"}


def last_outbox(raw: sqlite3.Connection, row_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The row's newest entry: its fields and their clocks (as the push reads them)."""
    [(fields, clocks, hlc)] = rows(
        raw,
        "SELECT fields, field_hlc, hlc FROM outbox WHERE row_id = ? ORDER BY id DESC LIMIT 1",
        row_id,
    )
    values = orjson.loads(fields)
    return values, entry_clocks(values, clocks, hlc)


def clocked_at(row: dict[str, Any], hlc: str) -> set[str]:
    return {name for name, c in row["field_hlc"].items() if c == hlc}


async def created(store: Store, table: str) -> dict[str, Any]:
    # linked: its rows' writes get outbox entries (a workspace's: the link's snapshot)
    ws = await create_linked(store, name="w", path="/src/w")
    if table == "workspaces":
        return ws
    if table == "conversations":
        return await store.conversations.create(workspace_id=ws["id"], name="c")
    return await store.tasks.create(workspace_id=ws["id"], kind="build")


EDITS = {
    "workspaces": {"name": "renamed", "shared_memory": {"k": 1}},
    "conversations": {"name": "renamed", "is_archived": True},
    "tasks": {"status": "running", "priority": 3},
}


@pytest.mark.parametrize("table", ["workspaces", "conversations", "tasks"])
async def test_a_create_clocks_every_column_it_sets_as_its_outbox_entry_does(
    store: Store, raw: sqlite3.Connection, table: str
) -> None:
    row = await created(store, table)
    columns = set(row) - BOOKKEEPING
    assert set(row["field_hlc"]) == columns  # created_at, updated_at, workspace_id... too
    assert set(row["field_hlc"].values()) == {row["hlc"]}
    fields, clocks = last_outbox(raw, row["id"])
    assert set(fields) - {"id"} == columns
    assert {k: v for k, v in clocks.items() if k != "id"} == row["field_hlc"]


@pytest.mark.parametrize("table", ["workspaces", "conversations", "tasks"])
async def test_an_update_clocks_exactly_what_it_writes_updated_at_included(
    store: Store, raw: sqlite3.Connection, table: str
) -> None:
    row = await created(store, table)
    repo = getattr(store, table)
    updated = await repo.update(row["id"], **EDITS[table])
    assert updated["hlc"] > row["hlc"]
    written = {*EDITS[table], "updated_at"}
    # a merge map's keys are clocked one by one (R3): here every key of the new map is new
    maps = {name for name, value in EDITS[table].items() if isinstance(value, dict)}
    clocked = written - maps | {f"{m}.{key}" for m in maps for key in EDITS[table][m]}
    assert clocked_at(updated, updated["hlc"]) == clocked
    assert await repo.get(row["id"]) == updated
    fields, clocks = last_outbox(raw, row["id"])
    assert fields == {name: updated[name] for name in written}
    assert clocks == dict.fromkeys(clocked, updated["hlc"])

    deleted = await repo.delete(row["id"])
    assert clocked_at(deleted, deleted["hlc"]) == {"deleted_at", "updated_at"}
    assert deleted["updated_at"] == deleted["deleted_at"]
    fields, clocks = last_outbox(raw, row["id"])
    assert fields == {"deleted_at": deleted["deleted_at"], "updated_at": deleted["updated_at"]}
    assert clocks == dict.fromkeys(fields, deleted["hlc"])


async def test_coalesced_create_and_edits_push_the_latest_updated_at_under_its_clock(
    store: Store,
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    await store.sync.link(workspace_id=ws["id"], org_id="org-1", path=None)
    edited = await store.conversations.update(conv["id"], name="renamed")
    [_, taken] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert taken.row_id == conv["id"]
    assert taken.fields["updated_at"] == edited["updated_at"]
    assert {k: v for k, v in taken.field_hlc.items() if k != "id"} == edited["field_hlc"]


async def test_json_columns_the_cloud_keeps_not_null_store_empty_values(store: Store) -> None:
    ws = await store.workspaces.create(name="w")
    task = await store.tasks.create(workspace_id=ws["id"], kind="build")
    assert (task["payload"], task["progress"]) == ({}, {})
    task = await store.tasks.update(task["id"], payload={"n": 1}, progress={"step": 1})
    task = await store.tasks.update(task["id"], payload=None, progress=None)
    # (a merge map's removed keys stay as null tombstones: R3, readers treat null as absent)
    assert (task["payload"], task["progress"]) == ({}, {"step": None})
    ws = await store.workspaces.update(ws["id"], next_steps=["a"], shared_memory={"k": 1})
    ws = await store.workspaces.update(
        ws["id"], next_steps=None, shared_memory=None, progress_data=None
    )
    assert (ws["next_steps"], ws["shared_memory"], ws["progress_data"]) == ([], {"k": None}, {})
    assert await store.workspaces.get(ws["id"]) == ws


async def test_a_pulled_row_takes_its_origin_from_its_row_clock(store: Store) -> None:
    older, newer = clock(-2000, device="device-c"), clock(-1000)
    # The cloud names its last pusher as origin; the row's newest write is device-b's.
    remote = {**remote_workspace(older), "origin": "device-c"}
    remote["field_hlc"]["name"], remote["name"] = newer, "from b"
    remote["hlc"] = newer
    await store.sync.apply_pull(
        scope="s", changes=[change("workspaces", remote)], cursor="1", merge=merge
    )
    stored = await store.workspaces.get(remote["id"])
    assert stored["hlc"] == newer and stored["origin"] == OTHER
    # A local edit then makes this device the origin; an older remote write of another field
    # does not change that, whichever side the page came from.
    mine = await store.workspaces.update(remote["id"], description="mine")
    late = {**remote, "status": "paused", "origin": "device-c"}
    late["field_hlc"] = {**remote["field_hlc"], "status": clock(-500, device="device-c")}
    await store.sync.apply_pull(
        scope="s", changes=[change("workspaces", late)], cursor="2", merge=merge
    )
    stored = await store.workspaces.get(remote["id"])
    assert stored["status"] == "paused"
    assert stored["hlc"] == mine["hlc"] and stored["origin"] == store.device_id


async def test_a_map_edit_writes_and_pushes_only_the_keys_it_changes(
    store: Store, raw: sqlite3.Connection
) -> None:
    """Given the new whole map, the store writes the added and changed keys, and the removed
    ones as null (a tombstone), each under the edit's clock; the other keys keep theirs."""
    ws = await create_linked(store, name="w", path="/src/w")
    first = await store.workspaces.update(ws["id"], shared_memory={"a": 1, "b": 2})
    second = await store.workspaces.update(ws["id"], shared_memory={"b": 3, "c": 4})
    assert second["shared_memory"] == {"a": None, "b": 3, "c": 4}
    hlc = second["hlc"]
    assert {k: c for k, c in second["field_hlc"].items() if k.startswith("shared_memory")} == {
        "shared_memory": ws["field_hlc"]["shared_memory"],  # the map's creation, untouched
        "shared_memory.a": hlc,
        "shared_memory.b": hlc,
        "shared_memory.c": hlc,
    }
    fields, clocks = last_outbox(raw, ws["id"])
    assert fields == {
        "shared_memory": {"a": None, "b": 3, "c": 4},
        "updated_at": second["updated_at"],
    }
    assert clocks == dict.fromkeys(
        ["shared_memory.a", "shared_memory.b", "shared_memory.c", "updated_at"], hlc
    )
    # the same visible map again (a removed key given as null or left out) writes nothing
    again = await store.workspaces.update(ws["id"], shared_memory={"a": None, "b": 3, "c": 4})
    assert again["hlc"] == hlc
    assert first["shared_memory"] == {"a": 1, "b": 2}


async def test_map_edits_of_different_keys_coalesce_into_one_push_with_both(
    store: Store,
) -> None:
    ws = await create_linked(store, name="w", path="/src/w")
    task = await store.tasks.create(workspace_id=ws["id"], kind="build")
    one = await store.tasks.update(task["id"], progress={"a": 1})
    two = await store.tasks.update(task["id"], progress={"a": 1, "b": 2})
    taken = [c for c in await store.sync.take_outbox(workspace_ids=[ws["id"]])
             if c.row_id == task["id"]]  # fmt: skip
    assert len(taken) == 1
    assert taken[0].fields["progress"] == {"a": 1, "b": 2}
    assert taken[0].field_hlc["progress.a"] == one["hlc"]
    assert taken[0].field_hlc["progress.b"] == two["hlc"]
    assert taken[0].field_hlc["progress"] == task["hlc"]  # the creation's empty map
