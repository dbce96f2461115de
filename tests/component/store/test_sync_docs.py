"""Documents in cloud sync, store side (real SQLite, real merge): pulled metadata and updates,
parking, deduplication, absorbing into loaded Docs, the link snapshot, and compaction never
losing an update that waits in the outbox."""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

from pycrdt import Doc, Text

from daemon.store import Store
from daemon.store.ids import uuid7
from daemon.sync.push_batch import OutgoingBatch

from .conftest import rows
from .test_sync_support import (
    change,
    changelog_since,
    clock,
    iso,
    last_seq,
    merge,
    remote_workspace,
)

SCOPE = "workspace:docs"
ORG = "01900000-0000-7000-8000-0000000000ff"


def text_update(words: str, base: bytes | None = None) -> bytes:
    doc: Doc[Any] = Doc()
    if base is not None:
        doc.apply_update(base)
    before = doc.get_state()
    text = doc.get("content", type=Text)
    text += words
    return doc.get_update(before)


def remote_doc(c: str, ws: str, doc_id: str, name: str = "remote") -> dict[str, Any]:
    fields = {"id": doc_id, "workspace_id": ws, "name": name, "created_at": iso(c)}
    fields |= {"updated_at": iso(c), "deleted_at": None}
    clocks = {k: c for k in fields if k != "id"}
    return {**fields, "hlc": c, "field_hlc": clocks, "origin": c.split("-", 2)[2]}


def remote_update(c: str, ws: str, doc_id: str, data: bytes) -> dict[str, Any]:
    fields = {"id": uuid7(), "doc_id": doc_id, "workspace_id": ws, "created_at": iso(c)}
    fields["data"] = base64.b64encode(data).decode()
    return {**fields, "hlc": c, "field_hlc": {}, "origin": c.split("-", 2)[2]}


async def apply(store: Store, *changes: dict[str, Any]) -> Any:
    return await store.sync.apply_pull(
        scope=SCOPE, changes=list(changes), cursor="1:1", merge=merge
    )


async def test_pulled_updates_are_stored_once_parked_and_absorbed(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    doc_id = uuid7()
    first = text_update("hello")
    u1 = remote_update(clock(), ws, doc_id, first)
    seq = last_seq(raw)
    # the update comes before its document: parked, nothing stored, no event
    outcome = await apply(store, change("doc_updates", u1))
    assert outcome.parked == 1 and outcome.doc_updates == ()
    assert rows(raw, "SELECT count(*) FROM doc_updates") == [(0,)]
    # its document arrives: both stored in that transaction, one doc.updated event
    outcome = await apply(store, change("documents", remote_doc(clock(1), ws, doc_id, "plan")))
    assert [u.update_id for u in outcome.doc_updates] == [u1["id"]]
    assert [t for t, _ in changelog_since(raw, seq)] == ["doc.updated"]
    event = changelog_since(raw, seq)[0][1]
    assert event == {
        "id": doc_id,
        "workspace_id": ws,
        "update_id": u1["id"],
        "update": u1["data"],
        "origin": u1["origin"],
    }
    got = await store.documents.get(doc_id)
    assert got["text"] == "hello"
    # a loaded Doc gets the next pulled update through absorb
    u2 = remote_update(clock(2), ws, doc_id, text_update(" world", first))
    outcome = await apply(store, change("doc_updates", u2))
    assert await store.documents.absorb((u.doc_id, u.data) for u in outcome.doc_updates) == 1
    assert (await store.documents.get(doc_id))["text"] == "hello world"
    # the same rows again (a repeated pull): nothing stored, no event
    seq = last_seq(raw)
    outcome = await apply(store, change("doc_updates", u1), change("doc_updates", u2))
    assert outcome.doc_updates == () and changelog_since(raw, seq) == []
    assert rows(raw, "SELECT count(*) FROM doc_updates") == [(2,)]


async def test_metadata_merges_and_never_touches_the_snapshot(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    opened = await store.documents.open(workspace_id=ws, name="mine")
    doc_id = opened["id"]
    await store.documents.apply_update(doc_id, text_update("kept"))
    assert await store.documents.compact(doc_id) == 1
    snapshot = rows(raw, "SELECT snapshot, snapshot_seq FROM documents WHERE id = ?", doc_id)
    renamed = remote_doc(clock(5_000), ws, doc_id, "renamed")
    await apply(store, change("documents", renamed))
    after = rows(raw, "SELECT name, snapshot, snapshot_seq FROM documents WHERE id = ?", doc_id)
    assert after == [("renamed", *snapshot[0])]
    assert (await store.documents.get(doc_id))["text"] == "kept"
    # an older rename loses
    await apply(store, change("documents", remote_doc(clock(-60_000, 1), ws, doc_id, "old")))
    assert rows(raw, "SELECT name FROM documents WHERE id = ?", doc_id) == [("renamed",)]


async def test_own_updates_coming_back_are_not_stored_again(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    doc_id = (await store.documents.open(workspace_id=ws))["id"]
    await store.documents.apply_update(doc_id, text_update("x"))
    assert await store.documents.compact(doc_id) == 1  # folded: the row is gone
    echo = remote_update(clock(device=store.device_id), ws, doc_id, text_update("x"))
    seq = last_seq(raw)
    await apply(store, change("doc_updates", echo))
    assert rows(raw, "SELECT count(*) FROM doc_updates") == [(0,)]
    assert changelog_since(raw, seq) == []


async def test_link_snapshot_and_compaction_keep_every_update_for_the_push(
    store: Store,
) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    doc_id = (await store.documents.open(workspace_id=ws, name="d"))["id"]
    state = b""
    for word in ("one ", "two "):
        update = text_update(word, state or None)
        await store.documents.apply_update(doc_id, update)
        state = base64.b64decode((await store.documents.get(doc_id))["state"])
    # linking: the document's metadata and ONE update holding all of it
    await store.sync.link(workspace_id=ws, org_id=ORG, path=None)
    taken = await store.sync.take_outbox(workspace_ids=[ws])
    docs = [c for c in taken if c.table in ("documents", "doc_updates")]
    assert [c.table for c in docs] == ["documents", "doc_updates"]
    assert docs[0].fields["name"] == "d"
    assert replayed(docs[1].fields["data"]) == "one two "
    # a later update waits in the outbox; compaction folds (and deletes) its row...
    await store.documents.apply_update(doc_id, text_update("three", state))
    assert await store.documents.compact(doc_id) == 3
    taken = await store.sync.take_outbox(workspace_ids=[ws])
    pending = [c for c in taken if c.table == "doc_updates"][-1]
    # ...yet the outbox entry still carries the update, and maps to a complete cloud change
    (mapped,) = OutgoingBatch.of([pending], None).mapped
    assert mapped is not None
    assert set(mapped["fields"]) == {"doc_id", "workspace_id", "data", "created_at"}
    assert mapped["hlc"] == pending.hlc and "field_hlc" not in mapped  # every field under it
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    doc.apply_update(base64.b64decode(mapped["fields"]["data"]))
    assert str(doc.get("content", type=Text)) == "one two three"


def replayed(data: str) -> str:
    doc: Doc[Any] = Doc()
    doc.apply_update(base64.b64decode(data))
    return str(doc.get("content", type=Text))


async def test_a_document_waits_for_its_workspace_and_updates_for_their_document(
    store: Store, raw: sqlite3.Connection
) -> None:
    c = clock()
    ws = remote_workspace(c, name="later")
    doc_id = uuid7()
    doc = remote_doc(clock(1), ws["id"], doc_id, "d")
    update = remote_update(clock(2), ws["id"], doc_id, text_update("parked"))
    outcome = await apply(store, change("documents", doc), change("doc_updates", update))
    assert outcome.parked == 2
    outcome = await apply(store, change("workspaces", ws))
    assert [u.update_id for u in outcome.doc_updates] == [update["id"]]
    assert (await store.documents.get(doc_id))["text"] == "parked"
    assert rows(raw, "SELECT count(*) FROM sync_parked") == [(0,)]


async def test_an_update_naming_a_document_of_another_workspace_is_skipped(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    other = (await store.workspaces.create(name="private"))["id"]
    private = (await store.documents.open(workspace_id=other))["id"]
    forged = remote_update(clock(), ws, private, text_update("evil"))
    outcome = await apply(store, change("doc_updates", forged))
    assert outcome.skipped == 1 and outcome.doc_updates == ()
    assert (await store.documents.get(private))["text"] == ""
