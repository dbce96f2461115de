"""store.sync: a row whose create the cloud rejected is pushed whole until the cloud takes it,
then its rejections are settled and the rows rejected under it go out again (sync_outbox.py).

The cloud does not have such a row: an edit's entry alone (the fields it changed) would make
the cloud create it from its column defaults, a row other devices would then get for good.
"""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.store.sync import OutboxChange

from .conftest import rows
from .test_sync_docs import replayed, text_update
from .test_sync_outbox import linked_workspace

CLOCKS = ("hlc", "field_hlc", "origin")


async def push(
    store: Store, ws_id: str, rejected: frozenset[str] = frozenset(), *, refuse_all: bool = False
) -> list[OutboxChange]:
    """Take the outbox and complete it as the cloud would answer: ``rejected`` rows (or all)
    refused (invalid), the others applied."""
    taken = await store.sync.take_outbox(workspace_ids=[ws_id])
    results = [
        {"id": c.row_id, "status": "rejected", "reason": "invalid", "detail": "a CHECK"}
        if refuse_all or c.row_id in rejected
        else {"id": c.row_id, "status": "applied"}
        for c in taken
    ]
    await store.sync.complete_push(taken, results)
    return taken


def whole(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A stored row's fields and the clock of each, as a whole-row push carries them."""
    fields = {k: v for k, v in row.items() if k not in CLOCKS}
    clocks = dict.fromkeys(fields, row["hlc"])
    clocks.update(row.get("field_hlc") or {})
    return fields, clocks


async def stored(store: Store, table: str, row_id: str) -> dict[str, Any]:
    """The row as the store keeps it (every column, clocks decoded)."""
    repo = {"conversations": store.conversations, "messages": store.messages}[table]
    return await repo.get(row_id)


async def test_an_edit_of_a_row_whose_create_was_rejected_is_pushed_whole(store: Store) -> None:
    ws = await linked_workspace(store)
    await push(store, ws["id"])
    conv = await store.conversations.create(workspace_id=ws["id"], name="bad", type="agent")
    other = await store.conversations.create(workspace_id=ws["id"], name="fine")
    await push(store, ws["id"], rejected=frozenset({conv["id"]}))

    await store.conversations.update(conv["id"], name="mended")
    await store.conversations.update(other["id"], name="renamed")
    mended, renamed = await store.sync.take_outbox(workspace_ids=[ws["id"]])

    assert mended.rejected_create and not renamed.rejected_create
    row = await stored(store, "conversations", conv["id"])
    fields, clocks = whole(row)
    assert (mended.fields, mended.field_hlc, mended.hlc) == (fields, clocks, row["hlc"])
    assert (mended.fields["type"], mended.fields["created_at"]) == ("agent", conv["created_at"])
    # An edit of a row the cloud has goes as it is: the fields it changed.
    assert set(renamed.fields) == {"name", "updated_at"}


async def test_the_cloud_taking_the_row_settles_and_requeues_the_rows_rejected_under_it(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await linked_workspace(store)
    await push(store, ws["id"])
    conv = await store.conversations.create(workspace_id=ws["id"], name="bad", type="agent")
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    await push(store, ws["id"], rejected=frozenset({conv["id"], msg["id"]}))
    assert len((await store.sync.rejected()).items) == 2
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)

    await store.conversations.update(conv["id"], name="mended")
    [taken] = await push(store, ws["id"])  # the message has no edit: only the conversation
    assert taken.row_id == conv["id"] and taken.rejected_create

    # The conversation's rejection is settled (and said so); its message goes out again, whole.
    [left] = (await store.sync.rejected()).items
    assert left["row_id"] == msg["id"]
    settled = [e.data for e in events if e.topic == "sync.rejected"]
    assert [(d["row_id"], d["table"]) for d in settled] == [(conv["id"], "conversations")]
    assert settled[0]["settled_at"] is not None
    entries = rows(raw, "SELECT table_name, row_id, op FROM outbox")
    assert entries == [("messages", msg["id"], "insert")]
    [again] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    fields, clocks = whole(await stored(store, "messages", msg["id"]))
    assert (again.row_id, again.rejected_create, again.fields) == (msg["id"], True, fields)
    assert {k: again.field_hlc[k] for k in clocks} == clocks

    await push(store, ws["id"])
    assert (await store.sync.rejected()).items == []
    assert (await store.sync.counts())["rejected"] == 0
    assert await store.sync.take_outbox(workspace_ids=[ws["id"]]) == []


async def test_a_whole_row_rejected_again_stays_whole_until_the_cloud_takes_it(
    store: Store,
) -> None:
    ws = await linked_workspace(store)
    await push(store, ws["id"])
    task = await store.tasks.create(workspace_id=ws["id"], kind="index", priority=2**40)
    await push(store, ws["id"], rejected=frozenset({task["id"]}))
    await store.tasks.update(task["id"], status="paused")  # not the bad value: refused again
    [first] = await push(store, ws["id"], rejected=frozenset({task["id"]}))
    assert first.rejected_create and first.fields["priority"] == 2**40
    assert len((await store.sync.rejected()).items) == 2

    await store.tasks.update(task["id"], priority=5)
    [mended] = await push(store, ws["id"])
    assert mended.rejected_create
    assert (mended.fields["kind"], mended.fields["status"], mended.fields["priority"]) == (
        "index", "paused", 5,
    )  # fmt: skip
    assert (await store.sync.rejected()).items == []
    # From now on the cloud has the row: an edit goes as it is.
    await store.tasks.update(task["id"], status="queued")
    [later] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert not later.rejected_create and set(later.fields) == {"status", "updated_at"}


async def test_a_rejected_edit_of_a_row_the_cloud_has_changes_nothing_for_the_next(
    store: Store,
) -> None:
    ws = await linked_workspace(store)
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    await push(store, ws["id"])
    await store.conversations.update(conv["id"], name="refused")
    await push(store, ws["id"], rejected=frozenset({conv["id"]}))
    await store.conversations.update(conv["id"], is_archived=True)
    [taken] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert not taken.rejected_create
    assert set(taken.fields) == {"is_archived", "updated_at"}
    await push(store, ws["id"])
    assert len((await store.sync.rejected()).items) == 1  # the refused edit stays on record


async def test_a_deleted_row_the_cloud_never_had_settles_its_rejections_and_its_rows(
    store: Store,
) -> None:
    """Deleted here after its create was rejected, refused again: nothing of it can ever reach
    the cloud (a deleted row takes no edit), so its rejections and those of the rows rejected
    under it are settled (was: they showed in the status for ever, with nothing to do)."""
    ws = await linked_workspace(store)
    await push(store, ws["id"])
    conv = await store.conversations.create(workspace_id=ws["id"], name="bad")
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    kept = await store.conversations.create(workspace_id=ws["id"], name="also bad")
    await push(store, ws["id"], rejected=frozenset({conv["id"], msg["id"], kept["id"]}))
    assert len((await store.sync.rejected()).items) == 3
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)

    await store.conversations.delete(conv["id"])
    [taken] = await push(store, ws["id"], rejected=frozenset({conv["id"]}))
    assert taken.rejected_create and taken.fields["deleted_at"] is not None

    assert [r["row_id"] for r in (await store.sync.rejected()).items] == [kept["id"]]
    assert (await store.sync.counts())["rejected"] == 1
    settled = [
        (e.data["row_id"], e.data["settled_at"]) for e in events if e.topic == "sync.rejected"
    ]
    assert sorted(r for r, _ in settled) == sorted([conv["id"], msg["id"]])
    assert all(at is not None for _, at in settled)
    assert await store.sync.take_outbox(workspace_ids=[ws["id"]]) == []


async def document_with_text(store: Store, ws_id: str, *words: str) -> str:
    """A document of ``ws_id`` whose text is ``words`` (an update each); its id."""
    doc_id = str((await store.documents.open(workspace_id=ws_id, name="notes"))["id"])
    for word in words:
        state = base64.b64decode((await store.documents.get(doc_id))["state"])
        await store.documents.apply_update(doc_id, text_update(word, state))
    return doc_id


async def test_a_document_rejected_under_its_workspace_goes_again_whole_with_its_content(
    store: Store, raw: sqlite3.Connection
) -> None:
    """The workspace's create was refused, so were its document and the document's updates;
    once the cloud takes the workspace, the document goes again (its metadata, whole), and once
    it takes that, the document's whole content as one update (was: neither ever went again,
    every later update was refused for the missing document, and the rejections stayed)."""
    ws = await linked_workspace(store)
    doc_id = await document_with_text(store, ws["id"], "one ", "two")
    first = await push(store, ws["id"], refuse_all=True)
    assert [c.table for c in first] == ["workspaces", "documents", "doc_updates", "doc_updates"]
    assert len((await store.sync.rejected()).items) == 4
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)

    await store.workspaces.update(ws["id"], name="mended")
    [workspace] = await push(store, ws["id"])
    assert workspace.rejected_create
    [document] = await push(store, ws["id"])  # its metadata, whole; then its content
    assert (document.table, document.row_id, document.rejected_create) == (
        "documents", doc_id, True,
    )  # fmt: skip
    assert (document.fields["name"], document.fields["workspace_id"]) == ("notes", ws["id"])
    assert "snapshot" not in document.fields
    assert (await store.sync.rejected()).items == []  # the updates' too: the content carries them
    settled = [e.data["table"] for e in events if e.topic == "sync.rejected"]
    assert sorted(settled) == ["doc_updates", "doc_updates", "documents", "workspaces"]
    [content] = await push(store, ws["id"])
    assert (content.table, content.fields["doc_id"]) == ("doc_updates", doc_id)
    assert replayed(content.fields["data"]) == "one two"
    assert rows(raw, "SELECT count(*) FROM outbox") == [(0,)]

    # From now on the cloud has the document: an update goes as it is.
    state = base64.b64decode((await store.documents.get(doc_id))["state"])
    await store.documents.apply_update(doc_id, text_update(" three", state))
    [later] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert (later.table, later.rejected_create) == ("doc_updates", False)


async def test_a_deleted_workspace_the_cloud_never_had_settles_its_documents_rejections(
    store: Store,
) -> None:
    ws = await linked_workspace(store)
    await document_with_text(store, ws["id"], "lost")
    await push(store, ws["id"], refuse_all=True)
    assert len((await store.sync.rejected()).items) == 3

    await store.workspaces.delete(ws["id"])
    [taken] = await push(store, ws["id"], refuse_all=True)
    assert taken.rejected_create and taken.fields["deleted_at"] is not None
    assert (await store.sync.rejected()).items == []
    assert (await store.sync.counts())["rejected"] == 0
