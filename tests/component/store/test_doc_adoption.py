"""Opening a shared document on a second device joins it (real SQLite, real merge): a pulled
row adopts a local-only document of the same id, joining never renames, pulled metadata
reaches the loaded documents, and a new document's outbox entry wakes the push."""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

import orjson
import pytest
from pycrdt import Doc, Text

from daemon.errors import InvalidInput
from daemon.store import Store
from daemon.store.ids import uuid7

from .conftest import rows
from .linking import create_linked, take_all
from .test_sync_docs import apply, remote_doc, remote_update, text_update
from .test_sync_support import change, clock


def text_of(*updates: bytes) -> str:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("content", type=Text))


def state_of(opened: dict[str, Any]) -> bytes:
    return base64.b64decode(opened["state"])


async def test_a_pulled_row_adopts_a_local_only_document_and_queues_its_edits(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await create_linked(store, name="w"))["id"]
    await take_all(store, ws)  # (the link's snapshot: not what this test looks at)
    pushes: list[frozenset[str]] = []
    store.add_push_listener(pushes.append)
    doc_id = uuid7()
    # bob opens the id before alice's document reached him: a local-only document
    mine = await store.documents.open(doc_id)
    assert mine["workspace_id"] is None
    bobs = text_update("bob ")
    await store.documents.apply_update(doc_id, bobs)
    # alice's row and update arrive: the document is adopted, nothing is skipped
    alices = text_update("alice ")
    outcome = await apply(
        store,
        change("documents", remote_doc(clock(-5_000), ws, doc_id, "shared.md")),
        change("doc_updates", remote_update(clock(-4_000), ws, doc_id, alices)),
    )
    assert outcome.skipped == 0 and len(outcome.doc_updates) == 1
    assert rows(raw, "SELECT workspace_id, name FROM documents WHERE id = ?", doc_id) == [
        (ws, "shared.md")
    ]
    assert rows(raw, "SELECT DISTINCT workspace_id FROM doc_updates WHERE doc_id = ?", doc_id) == [
        (ws,)
    ]
    opened = await store.documents.open(doc_id)  # the loaded document learnt it too
    assert (opened["workspace_id"], opened["name"]) == (ws, "shared.md")
    assert sorted(text_of(state_of(opened)).split()) == ["alice", "bob"]
    # bob's edits go out: the merged metadata and his content, and the push is woken
    queued = [c for c in await take_all(store, ws) if c.table in ("documents", "doc_updates")]
    assert [c.table for c in queued] == ["documents", "doc_updates"]
    assert queued[0].fields["workspace_id"] == ws and queued[0].fields["name"] == "shared.md"
    assert text_of(base64.b64decode(queued[1].fields["data"])) == "bob "
    assert ws in frozenset().union(*pushes)
    # and so do his later edits
    await store.documents.apply_update(doc_id, text_update("more", state_of(opened)))
    later = [c for c in await take_all(store, ws) if c.table == "doc_updates"]
    assert len(later) == 2 and later[-1].fields["doc_id"] == doc_id
    # a document of ANOTHER workspace is not adopted: its row stays refused
    other = (await store.workspaces.create(name="private"))["id"]
    private = (await store.documents.open(workspace_id=other, name="secret"))["id"]
    outcome = await apply(store, change("documents", remote_doc(clock(), ws, private, "taken")))
    assert outcome.skipped == 1
    assert rows(raw, "SELECT workspace_id, name FROM documents WHERE id = ?", private) == [
        (other, "secret")
    ]


async def test_updates_pulled_before_the_row_wait_for_the_adoption(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await create_linked(store, name="w"))["id"]
    doc_id = uuid7()
    await store.documents.open(doc_id)
    early = remote_update(clock(-3_000), ws, doc_id, text_update("early"))
    outcome = await apply(store, change("doc_updates", early))
    assert (outcome.skipped, outcome.parked) == (0, 1)
    outcome = await apply(store, change("documents", remote_doc(clock(-5_000), ws, doc_id)))
    assert [u.update_id for u in outcome.doc_updates] == [early["id"]]
    assert (await store.documents.get(doc_id))["text"] == "early"
    assert rows(raw, "SELECT count(*) FROM sync_parked") == [(0,)]


async def test_an_edit_written_before_the_loaded_document_learnt_its_workspace_goes_out(
    store: Store, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between the adopting pull's commit and the refresh of the loaded document:
    an update written then has no workspace; the refresh claims it and queues it."""
    ws = (await create_linked(store, name="w"))["id"]
    await take_all(store, ws)
    doc_id = uuid7()
    await store.documents.open(doc_id)
    refresh = store.documents.refresh

    async def late_refresh(docs: Any) -> None:
        await store.documents.apply_update(doc_id, text_update("late"))
        await refresh(docs)

    monkeypatch.setattr(store.documents, "refresh", late_refresh)
    await apply(store, change("documents", remote_doc(clock(-5_000), ws, doc_id)))
    assert rows(raw, "SELECT workspace_id FROM doc_updates WHERE doc_id = ?", doc_id) == [(ws,)]
    content = [c for c in await take_all(store, ws) if c.table == "doc_updates"]
    assert [text_of(base64.b64decode(c.fields["data"])) for c in content] == ["late"]


async def test_joining_before_the_row_arrives_never_renames(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await create_linked(store, name="w"))["id"]
    await take_all(store, ws)
    doc_id = uuid7()
    joined = await store.documents.open(doc_id, workspace_id=ws)
    assert joined["name"] == ""
    # the creation row goes out without a name: it cannot rename the document in the cloud
    (created,) = [c for c in await take_all(store, ws) if c.row_id == doc_id]
    assert "name" not in created.fields and created.fields["workspace_id"] == ws
    # alice's row, written BEFORE bob joined, still gives the document its name
    await apply(store, change("documents", remote_doc(clock(-60_000), ws, doc_id, "roadmap.md")))
    assert rows(raw, "SELECT name FROM documents WHERE id = ?", doc_id) == [("roadmap.md",)]
    assert (await store.documents.open(doc_id))["name"] == "roadmap.md"
    # a name given on creation is a write like any: it beats an older one
    named = (await store.documents.open(workspace_id=ws, name="mine.md"))["id"]
    await apply(store, change("documents", remote_doc(clock(-60_000), ws, named, "older.md")))
    assert rows(raw, "SELECT name FROM documents WHERE id = ?", named) == [("mine.md",)]


async def test_open_answers_a_pulled_rename(store: Store) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    doc_id = (await store.documents.open(workspace_id=ws, name="old.md"))["id"]
    await apply(store, change("documents", remote_doc(clock(5_000), ws, doc_id, "new.md")))
    assert (await store.documents.open(doc_id))["name"] == "new.md"


async def test_a_new_document_of_a_linked_workspace_tells_the_push_listeners(
    store: Store,
) -> None:
    linked = (await create_linked(store, name="linked"))["id"]
    local = (await store.workspaces.create(name="local"))["id"]
    pushes: list[frozenset[str]] = []
    remove = store.add_push_listener(pushes.append)
    await store.documents.open(workspace_id=linked, name="d")
    assert pushes == [frozenset({linked})]
    # no outbox entry, nothing to push: a local-only document, one of an unlinked workspace
    await store.documents.open()
    await store.documents.open(workspace_id=local)
    assert pushes == [frozenset({linked})]
    remove()
    await store.documents.open(workspace_id=linked)
    assert pushes == [frozenset({linked})]


async def test_opening_a_local_only_document_with_a_workspace_adopts_it(
    store: Store, raw: sqlite3.Connection
) -> None:
    """``doc.open {id, workspace_id}`` of a document created without one: it takes the
    workspace as a pulled row's adoption gives it (fww: the value beats the null), its edits
    take the workspace and go out, and later edits follow."""
    ws = (await create_linked(store, name="w"))["id"]
    await take_all(store, ws)
    pushes: list[frozenset[str]] = []
    store.add_push_listener(pushes.append)
    doc_id = uuid7()
    mine = await store.documents.open(doc_id)
    assert mine["workspace_id"] is None
    await store.documents.apply_update(doc_id, text_update("offline "))
    [(clocks,)] = rows(raw, "SELECT field_hlc FROM documents WHERE id = ?", doc_id)
    null_clock = orjson.loads(clocks)["workspace_id"]  # the null workspace's, at creation
    adopted = await store.documents.open(doc_id, workspace_id=ws, name="ignored.md")
    assert adopted["workspace_id"] == ws and adopted["name"] == ""  # the name: on creation only
    assert text_of(state_of(adopted)) == "offline "
    assert rows(raw, "SELECT workspace_id FROM documents WHERE id = ?", doc_id) == [(ws,)]
    assert rows(raw, "SELECT DISTINCT workspace_id FROM doc_updates WHERE doc_id = ?", doc_id) == [
        (ws,)
    ]
    queued = [c for c in await take_all(store, ws) if c.table in ("documents", "doc_updates")]
    assert [c.table for c in queued] == ["documents", "doc_updates"]
    assert queued[0].fields["workspace_id"] == ws and "name" not in queued[0].fields
    assert queued[0].field_hlc["workspace_id"] > null_clock
    assert text_of(base64.b64decode(queued[1].fields["data"])) == "offline "
    assert ws in frozenset().union(*pushes)
    await store.documents.apply_update(doc_id, text_update("more", state_of(adopted)))
    later = [c for c in await take_all(store, ws) if c.table == "doc_updates"]
    assert len(later) == 2 and later[-1].fields["doc_id"] == doc_id
    # opened again with its workspace: nothing more to do
    outbox = rows(raw, "SELECT count(*) FROM outbox")
    assert (await store.documents.open(doc_id, workspace_id=ws))["workspace_id"] == ws
    assert rows(raw, "SELECT count(*) FROM outbox") == outbox


async def test_opening_with_another_or_a_bad_workspace_is_refused_and_changes_nothing(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await create_linked(store, name="w"))["id"]
    other = (await store.workspaces.create(name="other"))["id"]
    gone = (await store.workspaces.create(name="gone"))["id"]
    await store.workspaces.delete(gone)
    homed = (await store.documents.open(workspace_id=other, name="d"))["id"]
    local = (await store.documents.open(uuid7()))["id"]
    seq = await store.changelog.last_seq()
    outbox = rows(raw, "SELECT count(*) FROM outbox")
    before = rows(raw, "SELECT id, workspace_id, hlc, field_hlc FROM documents ORDER BY id")
    cases = [(homed, ws, f"belongs to workspace {other!r}"), (local, gone, "is deleted")]
    cases.append((local, "no-such-workspace", "unknown workspace"))
    for doc_id, workspace_id, reason in cases:
        with pytest.raises(InvalidInput) as refused:
            await store.documents.open(doc_id, workspace_id=workspace_id)
        assert refused.value.field == "workspace_id" and reason in str(refused.value), reason
    assert rows(raw, "SELECT id, workspace_id, hlc, field_hlc FROM documents ORDER BY id") == before
    assert await store.changelog.last_seq() == seq
    assert rows(raw, "SELECT count(*) FROM outbox") == outbox
    assert (await store.documents.open(local))["workspace_id"] is None  # the loaded one too
