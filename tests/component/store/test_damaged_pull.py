"""A pulled change of a row damaged here (a JSON column that cannot be read) repairs it from the
cloud instead of failing the page for ever: the damaged columns' clocks lose to every clock
(sync_apply.py ``_load``), so the remote values take their place; the rest merges as usual."""

from __future__ import annotations

import sqlite3

from daemon.store import Store

from .conftest import rows
from .test_sync_apply import apply
from .test_sync_support import change, clock, remote_workspace


async def test_a_damaged_column_is_repaired_by_the_pulled_row(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = remote_workspace(clock(-1000), name="shared", shared_memory={"a": 1}, next_steps=["x"])
    await apply(store, change("workspaces", ws))
    raw.execute("UPDATE workspaces SET shared_memory = '{bad' WHERE id = ?", (ws["id"],))
    newer = remote_workspace(clock(), id=ws["id"], name="renamed", shared_memory={"a": 2})

    outcome = await apply(store, change("workspaces", newer), cursor="2:1")

    assert outcome.changed == 1
    row = await store.workspaces.get(ws["id"])
    assert "damaged" not in row
    assert (row["name"], row["shared_memory"]) == ("renamed", {"a": 2})
    assert await store.sync.cursor("workspace:test") == "2:1"


async def test_an_older_pulled_row_still_repairs_the_damaged_column_only(
    store: Store, raw: sqlite3.Connection
) -> None:
    old = clock(-5000)
    ws = remote_workspace(old, name="v1", shared_memory={"a": 1})
    await apply(store, change("workspaces", ws))
    await store.workspaces.update(ws["id"], name="local edit")
    raw.execute("UPDATE workspaces SET shared_memory = 'nope' WHERE id = ?", (ws["id"],))

    await apply(store, change("workspaces", ws), cursor="3:1")  # the cloud's copy, older

    row = await store.workspaces.get(ws["id"])
    assert (row["name"], row["shared_memory"]) == ("local edit", {"a": 1})
    assert "damaged" not in row


async def test_damaged_clocks_take_the_pulled_row_whole(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = remote_workspace(clock(-1000), name="v1", task_goal="g")
    await apply(store, change("workspaces", ws))
    raw.execute("UPDATE workspaces SET field_hlc = '{' WHERE id = ?", (ws["id"],))
    again = remote_workspace(clock(-2000), id=ws["id"], name="cloud copy", task_goal="g2")

    await apply(store, change("workspaces", again), cursor="4:1")

    row = await store.workspaces.get(ws["id"])
    assert (row["name"], row["task_goal"]) == ("cloud copy", "g2") and "damaged" not in row
    [(clocks,)] = rows(raw, "SELECT field_hlc FROM workspaces WHERE id = ?", ws["id"])
    assert clocks.startswith("{") and "name" in clocks
