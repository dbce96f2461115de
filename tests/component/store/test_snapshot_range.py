"""A link's messages as one snapshot range entry (store/sync_outbox.py, "Snapshot ranges"), on
a real SQLite file: taken from the messages table in batches of their own, in the place of
the messages' entries, moved on by complete_push, resumed after a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.config import StoreSettings
from daemon.errors import InvalidInput
from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.store.sync_types import OutboxChange, resume_point

from .conftest import rows
from .linking import ORG, take_all

APPLIED = {"status": "applied"}


async def history(store: Store) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """A workspace whose conversations hold 3, 0 and 2 messages (and a tool message, which
    never leaves), then linked; its conversations and the ids of the messages a push sends,
    in range order (conversations by id, then messages by id)."""
    ws = await store.workspaces.create(name="w")
    convs = [
        await store.conversations.create(workspace_id=ws["id"], name=f"c{i}") for i in range(3)
    ]
    sent: list[str] = []
    for conv, n in zip(convs, (3, 0, 2), strict=True):
        for i in range(n):
            msg = await store.messages.create(
                conversation_id=conv["id"], role="user", content=f"{conv['name']}-{i}"
            )
            sent.append(msg["id"])
    await store.messages.create(conversation_id=convs[2]["id"], role="tool", content="local")
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    return ws, convs, sent


def range_entry(raw: sqlite3.Connection, workspace_id: str) -> dict[str, Any] | None:
    found = rows(
        raw, "SELECT fields FROM outbox WHERE workspace_id = ? AND row_id = ''", workspace_id
    )
    return None if not found else dict(orjson.loads(found[0][0]))


async def take(
    store: Store,
    ws: dict[str, Any],
    after: tuple[int, tuple[int, str] | None] = (0, None),
    **kw: Any,
) -> list[OutboxChange]:
    return await store.sync.take_outbox(
        workspace_ids=[ws["id"]], after=after[0], within=after[1], **kw
    )


async def push_parents(store: Store, ws: dict[str, Any]) -> None:
    """Take and settle the first batch: the workspace and its conversations, before the range."""
    parents = await take(store, ws)
    assert {c.table for c in parents} == {"workspaces", "conversations"}
    await store.sync.complete_push(parents, [APPLIED] * len(parents))


async def test_the_messages_are_one_entry_taken_in_batches_of_their_own(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws, convs, sent = await history(store)
    task = await store.tasks.create(workspace_id=ws["id"], kind="build")  # after the link
    # ws, 3 conversations, the range (2 of the conversations), the task
    assert rows(raw, "SELECT count(*) FROM outbox")[0][0] == 6
    state = range_entry(raw, ws["id"])
    assert state == {
        "conversations": sorted([convs[0]["id"], convs[2]["id"]]),
        "at": 0,
        "after": "",
        "left": 5,
    }
    assert (await store.sync.counts())["outbox"] == 5 + 5  # the range counts its messages

    first = await take(store, ws)
    assert [c.table for c in first] == ["workspaces"] + ["conversations"] * 3
    batches = []
    point = resume_point(first)
    while batch := await take(store, ws, point, limit=2):
        batches.append(batch)
        point = resume_point(batch)
    ranges, rest = batches[:-1], batches[-1]
    assert [[c.row_id for c in b] for b in ranges] == [sent[0:2], sent[2:4], sent[4:5]]
    assert [c.snapshot is not None and c.snapshot.last for b in ranges for c in b] == [
        False, False, False, False, True,
    ]  # fmt: skip
    assert all(c.one_clock and c.outbox_ids == () for b in ranges for c in b)
    assert [c.row_id for c in rest] == [task["id"]]  # what came after the link: after it all
    message = ranges[0][0]
    stored = await store.messages.get(message.row_id)
    assert message.fields == {k: v for k, v in stored.items() if k not in ("hlc", "origin")}
    assert message.field_hlc == dict.fromkeys(message.fields, stored["hlc"])
    assert message.hlc == stored["hlc"] and message.origin == stored["origin"]


async def test_a_batch_ends_before_the_range_and_the_byte_limit_holds_inside_it(
    store: Store,
) -> None:
    ws, _, sent = await history(store)
    parents = await take(store, ws)
    assert {c.table for c in parents} == {"workspaces", "conversations"}
    one = await take(store, ws, resume_point(parents), max_bytes=1)  # at least one change
    two = await take(store, ws, resume_point(one), max_bytes=1)
    assert [c.row_id for c in one + two] == sent[:2]


async def test_complete_push_moves_the_range_and_deletes_it_with_its_last_row(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws, convs, sent = await history(store)
    await push_parents(store, ws)
    first = await take(store, ws, limit=2)
    second = await take(store, ws, resume_point(first), limit=2)
    await store.sync.complete_push(first, [APPLIED] * 2)
    assert range_entry(raw, ws["id"]) == {
        "conversations": sorted([convs[0]["id"], convs[2]["id"]]),
        "at": 0,
        "after": sent[1],
        "left": 3,
    }
    assert (await store.sync.counts())["outbox"] == 3
    # A repeated completion finds them settled: nothing moves.
    await store.sync.complete_push(first, [APPLIED] * 2)
    assert (range_entry(raw, ws["id"]) or {})["left"] == 3
    # A new run (nothing in flight) begins where the range was settled.
    assert [c.row_id for c in await take(store, ws, limit=2)] == sent[2:4]
    await store.sync.complete_push(second, [APPLIED] * 2)
    last = await take(store, ws)
    assert [c.row_id for c in last] == sent[4:]
    await store.sync.complete_push(last, [APPLIED])
    assert range_entry(raw, ws["id"]) is None
    assert (await store.sync.counts())["outbox"] == 0
    assert await take(store, ws) == []


async def test_a_reopened_store_goes_on_where_the_range_was_settled(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings())
    try:
        ws, _, sent = await history(store)
        await push_parents(store, ws)
        first = await take(store, ws, limit=3)
        await take(store, ws, resume_point(first), limit=3)  # in flight when the crash comes
        await store.sync.complete_push(first, [APPLIED] * 3)
    finally:
        await store.close()
    store = await Store.open(db_path, StoreSettings())
    try:
        assert [c.row_id for c in await take_all(store, ws["id"])] == sent[3:]
        assert (await store.sync.counts())["outbox"] == 2
    finally:
        await store.close()


async def test_messages_written_after_the_link(store: Store) -> None:
    ws, convs, sent = await history(store)
    late_conv = await store.conversations.create(workspace_id=ws["id"], name="late")
    late_msg = await store.messages.create(
        conversation_id=late_conv["id"], role="user", content="in a new conversation"
    )
    old_conv_msg = await store.messages.create(
        conversation_id=convs[0]["id"], role="user", content="in an old one"
    )
    taken = await take_all(store, ws["id"])
    in_range = [c.row_id for c in taken if c.snapshot is not None]
    entries = [c.row_id for c in taken if c.snapshot is None]
    # A message of a conversation made after the link is not in the range: it never goes
    # before its conversation, whose entry comes after the range.
    assert late_msg["id"] not in in_range
    assert entries.index(late_conv["id"]) < entries.index(late_msg["id"])
    # One of an old conversation may be (pushed twice: applied once, I2), and has its entry.
    assert set(in_range) - {old_conv_msg["id"]} == set(sent)
    assert old_conv_msg["id"] in entries


async def test_a_rejected_row_of_the_range_is_filed_once(store: Store) -> None:
    ws, _, sent = await history(store)
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)
    await push_parents(store, ws)
    batch = await take(store, ws, limit=2)
    results = [APPLIED, {"id": sent[1], "status": "rejected", "reason": "forbidden"}]
    outcome = await store.sync.complete_push(batch, results)
    assert (outcome.applied, outcome.rejected) == (1, 1)
    await store.sync.complete_push(batch, results)  # repeated: nothing filed twice
    [rejection] = (await store.sync.rejected()).items
    assert (rejection["row_id"], rejection["reason"]) == (sent[1], "forbidden")
    assert rejection["change"]["fields"]["content"] == "c0-1"
    assert [e.topic for e in events] == ["sync.rejected"]
    assert [c.row_id for c in await take_all(store, ws["id"])] == sent[2:]  # not blocked


async def test_unlink_drops_the_range_and_a_new_link_makes_a_new_one(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws, _, sent = await history(store)
    await push_parents(store, ws)
    half = await take(store, ws, limit=2)
    await store.sync.unlink(ws["id"])
    assert range_entry(raw, ws["id"]) is None
    await store.sync.complete_push(half, [APPLIED] * 2)  # answered after the unlink: no-op
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    assert (range_entry(raw, ws["id"]) or {})["left"] == len(sent)
    taken = await take_all(store, ws["id"])
    assert [c.row_id for c in taken if c.table == "messages"] == sent


async def test_a_workspace_without_messages_gets_no_range(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    await store.messages.create(conversation_id=conv["id"], role="system", content="local")
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    assert range_entry(raw, ws["id"]) is None
    assert (await store.sync.counts())["outbox"] == 2


@pytest.mark.parametrize(
    "within", [(-1, "x"), (0,), [0, "x"], (0, 1), ("0", "x"), (True, "x")], ids=repr
)
async def test_a_bad_within_is_refused(store: Store, within: Any) -> None:
    ws = await store.workspaces.create(name="w")
    with pytest.raises(InvalidInput) as raised:
        await store.sync.take_outbox(workspace_ids=[ws["id"]], after=1, within=within)
    assert raised.value.field == "within"
    with pytest.raises(InvalidInput):  # (within a range: after names it)
        await store.sync.take_outbox(workspace_ids=[ws["id"]], after=0, within=(0, "x"))
