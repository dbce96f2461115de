"""A row with a JSON column that cannot be read (damaged on purpose in a real SQLite file) hides
neither the healthy rows nor itself: lists and get show it with the column null and named in
``damaged``; a write that would use the damaged value refuses with DamagedRow; an update that
overwrites it repairs the row (codec.py ``decode_shown``, base.py ``live_row``)."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from daemon.errors import DamagedRow
from daemon.store import Store

from .conftest import rows


async def _three(store: Store) -> list[str]:
    ids = [(await store.workspaces.create(name=f"w{i}"))["id"] for i in range(3)]
    for i, id in enumerate(ids):
        await store.workspaces.update(id, shared_memory={"k": i})
    return ids


async def test_a_list_shows_the_healthy_rows_and_marks_the_damaged_one(
    store: Store, raw: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await _three(store)
    raw.execute("UPDATE workspaces SET shared_memory = '{bad' WHERE id = ?", (ids[1],))

    with caplog.at_level(logging.WARNING):
        listed = (await store.workspaces.list()).items
        again = (await store.workspaces.list()).items
        got = await store.workspaces.get(ids[1])

    assert [w["id"] for w in listed] == ids
    assert [w["shared_memory"] for w in listed] == [{"k": 0}, None, {"k": 2}]
    assert [w.get("damaged") for w in listed] == [None, ["shared_memory"], None]
    assert listed[1]["name"] == "w1"  # its readable columns as stored
    assert again == listed
    assert got == listed[1]
    warnings = [r.getMessage() for r in caplog.records if "store.damaged_row" in r.getMessage()]
    assert warnings == [f"store.damaged_row table=workspaces id={ids[1]} columns=shared_memory"]


async def test_an_update_of_other_fields_refuses_and_changes_nothing(
    store: Store, raw: sqlite3.Connection
) -> None:
    ids = await _three(store)
    raw.execute("UPDATE workspaces SET next_steps = '[1,' WHERE id = ?", (ids[0],))
    before = rows(raw, "SELECT * FROM workspaces WHERE id = ?", ids[0])

    with pytest.raises(DamagedRow) as caught:
        await store.workspaces.update(ids[0], name="renamed")

    assert (caught.value.table, caught.value.id, caught.value.columns) == (
        "workspaces", ids[0], ("next_steps",),
    )  # fmt: skip
    assert rows(raw, "SELECT * FROM workspaces WHERE id = ?", ids[0]) == before


@pytest.mark.parametrize(
    ("column", "value"),
    [("shared_memory", {"fresh": 1}), ("shared_memory", {}), ("next_steps", ["step"])],
)
async def test_an_update_that_overwrites_the_damaged_column_repairs_the_row(
    store: Store, raw: sqlite3.Connection, column: str, value: object
) -> None:
    ids = await _three(store)
    raw.execute(f"UPDATE workspaces SET {column} = '{{bad' WHERE id = ?", (ids[2],))

    updated = await store.workspaces.update(ids[2], **{column: value, "name": "fixed"})

    assert updated[column] == value and updated["name"] == "fixed"
    assert "damaged" not in updated
    got = await store.workspaces.get(ids[2])
    assert "damaged" not in got and got[column] == value


async def test_damaged_clocks_cannot_be_repaired_by_an_update(
    store: Store, raw: sqlite3.Connection
) -> None:
    ids = await _three(store)
    raw.execute("UPDATE workspaces SET field_hlc = 'nope' WHERE id = ?", (ids[0],))

    assert (await store.workspaces.get(ids[0]))["damaged"] == ["field_hlc"]
    with pytest.raises(DamagedRow):
        await store.workspaces.update(ids[0], shared_memory={"k": 9})
    assert (await store.workspaces.get(ids[1]))["shared_memory"] == {"k": 1}
