"""A deleted workspace freezes its conversations, messages, tasks and documents without writing
them: local writes into it are refused, lists leave its rows out, and pulled rows are still
applied."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from daemon.errors import InvalidInput
from daemon.store import Store, doc_ops
from daemon.store.ids import uuid7

from .conftest import rows
from .linking import create_linked
from .test_documents import Editor
from .test_sync_support import (
    change,
    clock,
    iso,
    merge,
    remote_conversation,
    remote_message,
    remote_task,
    remote_workspace,
)

Write = Callable[[], Awaitable[Any]]


async def apply(store: Store, *changes: dict[str, Any], cursor: str) -> Any:
    """Apply a pulled page as the sync driver does."""
    return await store.sync.apply_pull(
        scope="workspace:test", changes=list(changes), cursor=cursor, merge=merge
    )


def writes(store: Store, conv_id: str, task_id: str) -> list[tuple[str, str, Write]]:
    """(name, the field the refusal names, the call) of every write into the workspace."""
    return [
        (
            "message.send",
            "conversation_id",
            lambda: store.messages.create(conversation_id=conv_id, role="user", content="x"),
        ),
        (
            "message.send with id",
            "conversation_id",
            lambda: store.messages.create(
                conversation_id=conv_id, role="user", content="x", id=uuid7()
            ),
        ),
        ("conversation.update", "id", lambda: store.conversations.update(conv_id, name="n")),
        ("conversation.delete", "id", lambda: store.conversations.delete(conv_id)),
        ("task.update", "id", lambda: store.tasks.update(task_id, priority=5)),
        ("task.update progress", "id", lambda: store.tasks.update(task_id, progress={"a": 1})),
        ("task.cancel", "id", lambda: store.tasks.cancel(task_id)),
        ("task.delete", "id", lambda: store.tasks.delete(task_id)),
    ]


def counts(raw: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """How many rows, outbox and changelog entries there are (a refused write adds none)."""
    return rows(
        raw,
        "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM outbox),"
        " (SELECT count(*) FROM changelog)",
    )


async def assert_frozen(
    store: Store, raw: sqlite3.Connection, ws_id: str, conv_id: str, task_id: str
) -> None:
    before = counts(raw)
    conv, task = await store.conversations.get(conv_id), await store.tasks.get(task_id)
    for name, field, call in writes(store, conv_id, task_id):
        with pytest.raises(InvalidInput) as info:
            await call()
        assert info.value.field == field, name
        assert f"deleted workspace {ws_id!r}" in info.value.message, name
    assert counts(raw) == before  # no cascade, no refused write: nothing written
    assert await store.conversations.get(conv_id) == conv
    assert await store.tasks.get(task_id) == task
    for page in (
        await store.conversations.list(workspace_id=ws_id),
        await store.tasks.list(workspace_id=ws_id),
        await store.tasks.list(workspace_id=ws_id, status="queued"),
    ):
        assert (page.items, page.next_cursor) == ([], None)  # as for an unknown workspace
    assert (await store.conversations.list(workspace_id=uuid7())).items == []


async def test_local_delete_freezes_the_workspace_rows_without_writing_them(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await create_linked(store, name="gone")
    kept = await create_linked(store, name="kept")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    task = await store.tasks.create(workspace_id=ws["id"], kind="k")
    other_conv = await store.conversations.create(workspace_id=kept["id"], name="c")
    other_task = await store.tasks.create(workspace_id=kept["id"], kind="k")
    outbox = rows(raw, "SELECT count(*) FROM outbox")[0][0]
    await store.workspaces.delete(ws["id"])
    # The workspace's tombstone is the one entry the delete writes.
    assert rows(raw, "SELECT count(*) FROM outbox")[0][0] == outbox + 1
    await assert_frozen(store, raw, ws["id"], conv["id"], task["id"])
    # Unfiltered lists leave the deleted workspace's rows out too; the others are untouched.
    assert [c["id"] for c in (await store.conversations.list()).items] == [other_conv["id"]]
    assert [t["id"] for t in (await store.tasks.list()).items] == [other_task["id"]]
    assert (await store.tasks.update(other_task["id"], priority=3))["priority"] == 3
    await store.messages.create(conversation_id=other_conv["id"], role="user", content="ok")


async def test_a_row_deleted_before_its_workspace_stays_deleted(store: Store) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    gone = await store.conversations.delete(conv["id"])
    await store.workspaces.delete(ws["id"])
    assert await store.conversations.delete(conv["id"]) == gone  # deleting twice: no change


async def test_pulled_delete_freezes_too_and_pulled_rows_still_apply(
    store: Store, raw: sqlite3.Connection
) -> None:
    c = clock()
    ws = remote_workspace(c)
    conv = remote_conversation(c, ws["id"])
    task = remote_task(c, ws["id"])
    await apply(store, change("workspaces", ws), change("conversations", conv), cursor="1:1")
    await apply(store, change("tasks", task), cursor="1:2")
    later = clock(1_000)
    tombstone = remote_workspace(later, id=ws["id"], deleted_at=iso(later))
    await apply(store, change("workspaces", tombstone), cursor="1:3")
    assert (await store.workspaces.get(ws["id"]))["deleted_at"] == iso(later)
    await assert_frozen(store, raw, ws["id"], conv["id"], task["id"])
    # Sync applies everything: the rule is the local API's, every device applies it alike.
    latest = clock(2_000)
    renamed = remote_conversation(latest, ws["id"], id=conv["id"], name="renamed")
    message = remote_message(latest, ws["id"], conv["id"], content="late")
    outcome = await apply(
        store, change("conversations", renamed), change("messages", message), cursor="1:4"
    )
    assert outcome.applied == 2
    assert (await store.conversations.get(conv["id"]))["name"] == "renamed"
    assert (await store.messages.get(message["id"]))["content"] == "late"


async def test_local_document_updates_are_refused_alone_and_pulled_ones_apply(
    store: Store, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = await create_linked(store, name="gone")
    kept = await create_linked(store, name="kept")
    frozen = (await store.documents.open(workspace_id=ws["id"], name="d"))["id"]
    live = (await store.documents.open(workspace_id=kept["id"], name="d"))["id"]
    mine = (await store.documents.open(name="local"))["id"]  # no workspace: never frozen
    await store.workspaces.delete(ws["id"])
    before = rows(raw, "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM changelog)")
    batches: list[set[str]] = []  # the documents of each batch written
    take = doc_ops.LocalBatch.take

    def counted(batch: doc_ops.LocalBatch) -> list[tuple[dict[str, Any], bytes]]:
        items = take(batch)
        batches.append({row["id"] for row, _ in items})
        return items

    monkeypatch.setattr(doc_ops.LocalBatch, "take", counted)
    editor = Editor()
    updates = [editor.insert(0, "a"), editor.insert(1, "b")]
    calls = [
        store.documents.apply_update(doc_id, update)
        for update in updates
        for doc_id in (live, frozen, mine)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    # a refusal in a batch beside updates that are stored (the case this test is about)
    assert any(frozen in docs and len(docs) > 1 for docs in batches), batches
    for refused in results[1::3]:
        assert isinstance(refused, InvalidInput) and refused.field == "id"
        assert f"deleted workspace {ws['id']!r}" in refused.message
    stored = [r for i, r in enumerate(results) if i % 3 != 1]
    assert all(isinstance(r, dict) and r["update_id"] for r in stored)
    assert rows(raw, "SELECT count(*) FROM doc_updates WHERE doc_id = ?", frozen) == [(0,)]
    outbox, changelog = before[0]
    assert rows(raw, "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM changelog)") == [
        (outbox + 2, changelog + 4)
    ]  # the live ones: 2 each, outbox for the linked one
    assert (await store.documents.get(frozen))["text"] == ""  # nor kept in the cache
    assert (await store.documents.get(live))["text"] == "ab"
    # A pulled update is applied: the rule is the local API's.
    assert await store.documents.apply_remote_update(
        frozen, updates[0], workspace_id=ws["id"], update_id=uuid7()
    )
    assert (await store.documents.get(frozen))["text"] == "a"
