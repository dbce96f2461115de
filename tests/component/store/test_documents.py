"""Documents on a real SQLite file: durable updates, outbox/changelog, cache, compaction."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from pycrdt import Doc, Text, TransactionEvent

from daemon.config import StoreSettings
from daemon.errors import InvalidInput, NotFound, ShuttingDown, StoreError
from daemon.events import ChangeEvent
from daemon.store import Store, doc_ops
from daemon.store.ids import uuid7
from tests.helpers import MS, wait_for

from .conftest import rows
from .linking import create_linked

REPO = Path(__file__).resolve().parents[3]


class Editor:
    """A pycrdt Doc whose every edit is one transaction, its update kept as encoded once."""

    def __init__(self, client_id: int | None = None) -> None:
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.text = self.doc.get("content", type=Text)
        self.updates: list[bytes] = []
        self.doc.observe(self._keep)

    def _keep(self, event: TransactionEvent) -> None:
        self.updates.append(event.update)

    def insert(self, index: int, value: str) -> bytes:
        with self.doc.transaction():
            self.text.insert(index, value)
        return self.updates[-1]

    def delete(self, start: int, stop: int) -> bytes:
        with self.doc.transaction():
            del self.text[start:stop]
        return self.updates[-1]

    def apply(self, update: bytes) -> None:
        self.doc.apply_update(update)


def text_of(state: bytes) -> str:
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    doc.apply_update(state)
    return str(text)


def count(raw: sqlite3.Connection, table: str) -> int:
    return int(rows(raw, f"SELECT count(*) FROM {table}")[0][0])


async def type_words(store: Store, doc_id: str, editor: Editor, words: int) -> None:
    for i in range(words):
        await store.documents.apply_update(doc_id, editor.insert(len(editor.text), f"w{i} "))


@pytest.fixture
async def workspace(store: Store) -> dict[str, Any]:
    return await create_linked(store, name="docs")  # linked: its documents get entries


# -- schema ---------------------------------------------------------------------------------------


def test_tables_match_the_migration(raw: sqlite3.Connection, store: Store) -> None:
    for table in (doc_ops.documents, doc_ops.doc_updates):
        info = rows(raw, f"PRAGMA table_info({table.name})")
        in_db = [(name, bool(notnull) or bool(pk), bool(pk)) for _, name, _, notnull, _, pk in info]
        assert in_db == [(c.name, not c.nullable, c.primary_key) for c in table.columns]


# -- open / create --------------------------------------------------------------------------------


async def test_open_creates_once_and_queues_the_document_for_the_cloud(
    store: Store, raw: sqlite3.Connection, workspace: dict[str, Any]
) -> None:
    doc_id = uuid7()
    opened = await store.documents.open(doc_id, workspace_id=workspace["id"], name="Notes")
    assert opened["id"] == doc_id and opened["workspace_id"] == workspace["id"]
    assert opened["name"] == "Notes" and opened["deleted_at"] is None
    assert text_of(base64.b64decode(opened["state"])) == ""
    again = await store.documents.open(doc_id, workspace_id=None, name="ignored")
    assert again == opened
    assert rows(raw, "SELECT id, name FROM documents") == [(doc_id, "Notes")]
    [(table, op, fields)] = rows(
        raw, "SELECT table_name, op, fields FROM outbox WHERE row_id = ?", doc_id
    )
    assert (table, op) == ("documents", "insert")
    assert orjson.loads(fields)["name"] == "Notes"


async def test_a_document_without_workspace_is_local_only(
    store: Store, raw: sqlite3.Connection
) -> None:
    opened = await store.documents.open()  # no id: a new one is minted
    editor = Editor()
    await store.documents.apply_update(opened["id"], editor.insert(0, "private"))
    assert opened["workspace_id"] is None
    assert count(raw, "outbox") == 0
    assert count(raw, "doc_updates") == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": "not-a-uuid"}, "id"),
        ({"id": "01a1fd0b-c8b7-7537-9067-81276c692f38", "workspace_id": "nope"}, "workspace_id"),
        ({"name": 5}, "name"),
        ({"id": ""}, "id"),
    ],
)
async def test_bad_creations_are_refused_and_store_nothing(
    store: Store, raw: sqlite3.Connection, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await store.documents.open(**kwargs)
    assert caught.value.field == field
    assert count(raw, "documents") == 0 and count(raw, "outbox") == 0


async def test_unknown_documents_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.documents.get(uuid7())
    with pytest.raises(NotFound):
        await store.documents.apply_update(uuid7(), Editor().insert(0, "x"))


# -- updates --------------------------------------------------------------------------------------


async def test_a_local_update_writes_row_outbox_and_changelog_in_one_commit(
    store: Store, raw: sqlite3.Connection, workspace: dict[str, Any]
) -> None:
    doc_id = (await store.documents.open(workspace_id=workspace["id"]))["id"]
    seen: list[ChangeEvent] = []
    store.add_commit_listener(seen.extend)
    update = Editor().insert(0, "hello")
    result = await store.documents.apply_update(doc_id, update)
    # committed before the await returned: a separate connection sees everything
    [(update_id, data, origin)] = rows(raw, "SELECT id, data, origin FROM doc_updates")
    assert result == {"id": doc_id, "update_id": update_id}
    assert data == update and origin == store.device_id
    [(op, ws_id, fields)] = rows(
        raw,
        "SELECT op, workspace_id, fields FROM outbox WHERE table_name = 'doc_updates'"
        " AND row_id = ?",
        update_id,
    )
    assert (op, ws_id) == ("insert", workspace["id"])
    assert base64.b64decode(orjson.loads(fields)["data"]) == update
    [event] = seen
    assert event.topic == "doc.updated"
    assert event.data["id"] == doc_id and event.data["update_id"] == update_id
    assert base64.b64decode(event.data["update"]) == update
    [(topic, data_json)] = rows(raw, "SELECT topic, data FROM changelog WHERE seq = ?", event.seq)
    assert topic == "doc.updated" and orjson.loads(data_json) == event.data


async def test_updates_are_durable_once_acknowledged(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings())
    editor = Editor()
    try:
        doc_id = (await store.documents.open())["id"]
        await type_words(store, doc_id, editor, 20)
        await store.documents.apply_update(doc_id, editor.delete(0, 3))
    finally:
        await store.close()
    reopened = await Store.open(db_path, StoreSettings())
    try:
        assert (await reopened.documents.get(doc_id))["text"] == str(editor.text)
    finally:
        await reopened.close()


async def test_concurrent_updates_share_writes_and_keep_one_entry_each(
    store: Store, raw: sqlite3.Connection
) -> None:
    doc_id = (await store.documents.open())["id"]
    editor = Editor()
    updates = [editor.insert(len(editor.text), f"{i},") for i in range(200)]
    results = await asyncio.gather(*(store.documents.apply_update(doc_id, u) for u in updates))
    assert len({r["update_id"] for r in results}) == 200
    assert [r[0] for r in rows(raw, "SELECT data FROM doc_updates ORDER BY seq")] == updates
    seqs = [r[0] for r in rows(raw, "SELECT seq FROM changelog ORDER BY seq")]
    assert seqs == list(range(seqs[0], seqs[0] + 200))
    assert (await store.documents.get(doc_id))["text"] == str(editor.text)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x00", b"garbage bytes, not a Yjs update", os.urandom(64), "not bytes"],
)
async def test_invalid_updates_change_nothing(
    store: Store, raw: sqlite3.Connection, bad: Any
) -> None:
    doc_id = (await store.documents.open())["id"]
    editor = Editor()
    await store.documents.apply_update(doc_id, editor.insert(0, "kept"))
    before = [count(raw, t) for t in ("doc_updates", "outbox", "changelog")]
    with pytest.raises(InvalidInput) as caught:
        await store.documents.apply_update(doc_id, bad)
    assert caught.value.field == "update"
    assert [count(raw, t) for t in ("doc_updates", "outbox", "changelog")] == before
    assert (await store.documents.get(doc_id))["text"] == "kept"


async def test_a_failed_write_leaves_neither_row_nor_cached_change(
    store: Store, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc_id = (await store.documents.open())["id"]
    editor = Editor()
    await store.documents.apply_update(doc_id, editor.insert(0, "a"))

    def broken(self: doc_ops.LocalBatch, ctx: Any) -> Any:
        self.take()
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(doc_ops.LocalBatch, "op", broken)
    with pytest.raises(StoreError):
        await store.documents.apply_update(doc_id, editor.insert(1, "b"))
    monkeypatch.undo()
    assert count(raw, "doc_updates") == 1
    assert (await store.documents.get(doc_id))["text"] == "a"  # reloaded, not the cache


async def test_the_cache_is_bounded_and_reloads_evicted_documents(store: Store) -> None:
    store.documents.cache_size = 2
    editors = {(await store.documents.open())["id"]: Editor() for _ in range(4)}
    for round_ in range(3):
        for doc_id, editor in editors.items():
            await store.documents.apply_update(doc_id, editor.insert(0, f"{round_}"))
    assert len(store.documents._cache) == 2
    for doc_id, editor in editors.items():
        assert (await store.documents.get(doc_id))["text"] == str(editor.text) == "210"


# -- remote updates -------------------------------------------------------------------------------


async def test_remote_updates_merge_without_outbox_and_once_per_id(
    store: Store, raw: sqlite3.Connection, workspace: dict[str, Any]
) -> None:
    doc_id, update_id = uuid7(), uuid7()
    remote = Editor()
    update = remote.insert(0, "from the cloud")
    seen: list[ChangeEvent] = []
    store.add_commit_listener(seen.extend)
    applied = await store.documents.apply_remote_update(
        doc_id, update, workspace_id=workspace["id"], update_id=update_id, origin="device-b"
    )
    assert applied is True
    assert (await store.documents.get(doc_id))["text"] == "from the cloud"
    assert count(raw, "outbox") == 1  # the workspace's own entry: nothing for the document
    assert [(e.topic, e.data["update_id"], e.data["origin"]) for e in seen] == [
        ("doc.updated", update_id, "device-b")
    ]
    again = await store.documents.apply_remote_update(doc_id, update, update_id=update_id)
    assert again is False
    assert count(raw, "doc_updates") == 1 and len(seen) == 1
    local = Editor()
    local.apply(update)
    await store.documents.apply_update(doc_id, local.insert(0, ">> "))
    assert (await store.documents.get(doc_id))["text"] == ">> from the cloud"


# -- compaction -----------------------------------------------------------------------------------


async def test_compaction_folds_updates_into_the_snapshot(
    db_path: Path, raw: sqlite3.Connection
) -> None:
    store = await Store.open(db_path, StoreSettings())
    editor = Editor()
    try:
        doc_id = (await store.documents.open())["id"]
        await type_words(store, doc_id, editor, 30)
        await store.documents.apply_update(doc_id, editor.delete(2, 9))
        assert await store.documents.compact(doc_id) == 31
        assert count(raw, "doc_updates") == 0
        [(snapshot, snapshot_seq)] = rows(raw, "SELECT snapshot, snapshot_seq FROM documents")
        assert text_of(snapshot) == str(editor.text) and snapshot_seq > 0
        await type_words(store, doc_id, editor, 3)  # snapshot + remaining updates
        assert await store.documents.compact(doc_id) == 3
        assert await store.documents.compact(doc_id) == 0
    finally:
        await store.close()
    reopened = await Store.open(db_path, StoreSettings())
    try:
        assert (await reopened.documents.get(doc_id))["text"] == str(editor.text)
        assert str((await reopened.documents.load(doc_id)).get("content", type=Text)) == str(
            editor.text
        )
    finally:
        await reopened.close()


async def test_compaction_runs_in_the_background_after_n_updates(
    store: Store, raw: sqlite3.Connection
) -> None:
    store.documents.compact_every = 10
    doc_id = (await store.documents.open())["id"]
    editor = Editor()
    await type_words(store, doc_id, editor, 25)

    def compacted() -> bool:
        snapshot = rows(raw, "SELECT snapshot FROM documents")[0][0]
        return snapshot is not None and count(raw, "doc_updates") < 10

    await wait_for(compacted, message="background compaction")
    assert (await store.documents.get(doc_id))["text"] == str(editor.text)
    assert str((await store.documents.load(doc_id)).get("content", type=Text)) == str(editor.text)


async def test_a_failure_inside_the_compaction_transaction_changes_nothing(
    db_path: Path, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await Store.open(db_path, StoreSettings())
    editor = Editor()
    try:
        doc_id = (await store.documents.open())["id"]
        await type_words(store, doc_id, editor, 12)

        def crash(*args: Any) -> int:
            raise sqlite3.OperationalError("simulated crash after the snapshot was written")

        monkeypatch.setattr(doc_ops, "delete_folded", crash)
        with pytest.raises(StoreError):
            await store.documents.compact(doc_id)
        assert rows(raw, "SELECT snapshot, snapshot_seq FROM documents") == [(None, 0)]
        assert count(raw, "doc_updates") == 12
        monkeypatch.undo()
    finally:
        await store.close()
    reopened = await Store.open(db_path, StoreSettings())
    try:
        assert (await reopened.documents.get(doc_id))["text"] == str(editor.text)
        assert await reopened.documents.compact(doc_id) == 12
        assert (await reopened.documents.get(doc_id))["text"] == str(editor.text)
    finally:
        await reopened.close()


CRASHING_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from daemon.config import StoreSettings
    from daemon.store import Store, doc_ops

    def die(conn, *args):
        os._exit(17)  # the snapshot is written, its transaction not committed

    async def main():
        store = await Store.open(Path(sys.argv[1]), StoreSettings())
        doc_ops.delete_folded = die
        await store.documents.compact(sys.argv[3])

    asyncio.run(main())
    """
)


async def test_a_process_killed_mid_compaction_loses_nothing(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings())
    editor = Editor()
    try:
        doc_id = (await store.documents.open())["id"]
        await type_words(store, doc_id, editor, 15)
    finally:
        await store.close()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_CHILD, str(db_path), str(REPO), doc_id
    )
    assert await asyncio.wait_for(child.wait(), 30_000 * MS) == 17
    raw = sqlite3.connect(db_path)
    try:
        assert rows(raw, "SELECT snapshot FROM documents") == [(None,)]
        assert count(raw, "doc_updates") == 15
    finally:
        raw.close()
    reopened = await Store.open(db_path, StoreSettings())
    try:
        assert (await reopened.documents.get(doc_id))["text"] == str(editor.text)
    finally:
        await reopened.close()


async def test_updates_waiting_for_their_dependencies_survive_compaction_and_state(
    store: Store,
) -> None:
    """Updates applied before the ones they depend on stay pending in pycrdt and out of its
    encoded state: compaction must keep them and ``state`` must carry them."""
    doc_id = (await store.documents.open())["id"]
    alice, bob = Editor(client_id=1), Editor(client_id=2)
    first = alice.insert(0, "hello world")
    bob.apply(first)
    later = [bob.insert(5, ","), bob.delete(0, 1), alice.insert(0, "H")]
    alice.apply(later[0])
    alice.apply(later[1])
    expected = str(alice.text)
    for update in later:  # they all depend on `first`, which has not arrived
        await store.documents.apply_update(doc_id, update)
    state = base64.b64decode((await store.documents.get(doc_id))["state"])
    assert await store.documents.compact(doc_id) == 0  # nothing integrated: all kept
    await store.documents.apply_update(doc_id, first)
    assert (await store.documents.get(doc_id))["text"] == expected
    late_joiner = Editor()
    late_joiner.apply(state)
    late_joiner.apply(first)
    assert str(late_joiner.text) == expected
    assert await store.documents.compact(doc_id) == 4
    assert str((await store.documents.load(doc_id)).get("content", type=Text)) == expected


async def test_closing_the_store_refuses_updates_and_keeps_what_was_acknowledged(
    store: Store, raw: sqlite3.Connection
) -> None:
    store.documents.compact_every = 5  # a background compaction may be under way at close
    doc_id = (await store.documents.open())["id"]
    editor = Editor()
    await type_words(store, doc_id, editor, 6)
    await store.close()
    with pytest.raises(ShuttingDown):
        await store.documents.apply_update(doc_id, editor.insert(0, "late"))
    [(snapshot,)] = rows(raw, "SELECT snapshot FROM documents")
    stored = Editor()
    if snapshot is not None:
        stored.apply(snapshot)
    for (data,) in rows(raw, "SELECT data FROM doc_updates ORDER BY seq"):
        stored.apply(data)
    assert str(stored.text) == "w0 w1 w2 w3 w4 w5 "


async def test_a_reordered_stream_converges_in_cache_store_and_snapshot(
    db_path: Path, raw: sqlite3.Connection
) -> None:
    """One editor's updates arriving out of order (as over several connections), with
    background compactions in between: nothing is lost anywhere."""
    rng = random.Random(3)
    editor = Editor(client_id=9)
    updates = []
    for _ in range(600):
        size = len(editor.text)
        if size > 10 and rng.random() < 0.2:
            start = rng.randrange(size - 2)
            updates.append(editor.delete(start, start + 2))
        else:
            updates.append(editor.insert(rng.randint(max(0, size - 5), size), rng.choice("xyz ")))
    order = sorted(range(len(updates)), key=lambda i: i + rng.random() * 16)
    store = await Store.open(db_path, StoreSettings())
    try:
        store.documents.compact_every = 100
        doc_id = (await store.documents.open())["id"]
        for i in order:
            await store.documents.apply_update(doc_id, updates[i])
        assert (await store.documents.get(doc_id))["text"] == str(editor.text)
        await store.documents.compact(doc_id)
        assert count(raw, "doc_updates") == 0
    finally:
        await store.close()
    reopened = await Store.open(db_path, StoreSettings())
    try:
        assert (await reopened.documents.get(doc_id))["text"] == str(editor.text)
    finally:
        await reopened.close()
