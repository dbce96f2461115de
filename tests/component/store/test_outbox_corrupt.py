"""An outbox entry this device cannot read is set aside as rejected (``local_corrupt``) and never
holds back the entries behind it (sync_corrupt.py), on a real SQLite file damaged on purpose."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from daemon.events import ChangeEvent
from daemon.store import Store

from .conftest import rows
from .linking import create_linked, take_all


async def _three_messages(store: Store) -> tuple[str, list[str]]:
    ws = await create_linked(store, name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    sent = [
        await store.messages.create(conversation_id=conv["id"], role="user", content=f"m{i}")
        for i in range(3)
    ]
    return ws["id"], [m["id"] for m in sent]


def _entry_of(raw: sqlite3.Connection, row_id: str) -> int:
    return int(rows(raw, "SELECT id FROM outbox WHERE row_id = ?", row_id)[0][0])


@pytest.mark.parametrize(
    ("column", "text", "problem"),
    [
        ("fields", "{bad", "its fields is not valid JSON"),
        ("fields", "[1, 2]", "its fields is not a JSON object"),
        ("field_hlc", "{bad", "its field_hlc is not valid JSON"),
    ],
)
async def test_an_unreadable_entry_is_rejected_and_the_rest_is_taken(
    store: Store,
    raw: sqlite3.Connection,
    caplog: pytest.LogCaptureFixture,
    column: str,
    text: str,
    problem: str,
) -> None:
    ws, sent = await _three_messages(store)
    bad = _entry_of(raw, sent[0])
    if column == "field_hlc":  # a message's entry is one-clock: give it clocks of its own
        raw.execute("UPDATE outbox SET field_hlc = ? WHERE id = ?", (text, bad))
    else:
        raw.execute(f"UPDATE outbox SET {column} = ? WHERE id = ?", (text, bad))
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)

    with caplog.at_level(logging.WARNING):
        taken = await take_all(store, ws)

    assert [c.row_id for c in taken if c.table == "messages"] == sent[1:]
    assert rows(raw, "SELECT count(*) FROM outbox WHERE id = ?", bad) == [(0,)]
    [rejected] = (await store.sync.rejected()).items
    assert (rejected["table"], rejected["row_id"], rejected["reason"]) == (
        "messages", sent[0], "local_corrupt",
    )  # fmt: skip
    assert rejected["detail"].startswith(f"outbox entry {bad}: {problem}")
    assert rejected["change"]["stored"][column] == text  # kept as it was: nothing lost
    assert [e.data["row_id"] for e in events if e.topic == "sync.rejected"] == [sent[0]]
    [logged] = [r for r in caplog.records if "sync.outbox_corrupt" in r.getMessage()]
    assert f"entry={bad}" in logged.getMessage() and text not in logged.getMessage()
    assert (await store.sync.counts())["rejected"] == 1


async def test_an_unreadable_snapshot_range_is_rejected_and_the_rest_is_taken(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    await store.messages.create(conversation_id=conv["id"], role="user", content="before")
    await store.sync.link(workspace_id=ws["id"], org_id="org", path=None)
    after = await store.messages.create(conversation_id=conv["id"], role="user", content="after")
    # a snapshot range has the empty row id (sync_sql.py SNAPSHOT_ROW)
    raw.execute("UPDATE outbox SET fields = '{\"at\": 0}' WHERE row_id = ''")
    assert rows(raw, "SELECT count(*) FROM outbox WHERE row_id = ''") == [(1,)]

    taken = await take_all(store, ws["id"])

    assert [c.row_id for c in taken] == [ws["id"], conv["id"], after["id"]]
    [rejected] = (await store.sync.rejected()).items
    assert rejected["reason"] == "local_corrupt"
    assert "is not a snapshot range's state" in rejected["detail"]
