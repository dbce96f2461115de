"""Documents never accept, nor break on, an update that is not exactly one well-formed Yjs
update v1 (audit G1 findings 2, 3, 8): local, pulled and already-stored bad data, on a real
SQLite file."""

from __future__ import annotations

import base64
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text, create_update_message

from daemon.config import StoreSettings
from daemon.errors import InvalidInput
from daemon.store import Store
from daemon.store.ids import uuid7

from .conftest import rows
from .test_sync_docs import apply, remote_doc, remote_update
from .test_sync_support import change, changelog_since, clock, last_seq

POISON = bytes.fromhex(  # audit G1 t3_poison.py: yrs keeps it pending, then states break
    "01059ee18b8f93a40a0001010763416e74656e7402849ee1f48b8f93a40a01016c849ee1f48b8f93a40a0208"
    "6c6f20776f726c64c49ee1f48b8f93a40a029ee1f48b8f41a40a03035859625a2801046d657461016b0177"
    "0176019ee1f48b8f93a40a010002"
)
GARBAGE = base64.b64decode("AQJnYXJiYWdl////")  # the row another app inserted (t19)
TABLES = ("doc_updates", "outbox", "changelog")


def edit(doc: Doc[Any], index: int, value: str) -> bytes:
    before = doc.get_state()
    doc.get("content", type=Text).insert(index, value)
    return doc.get_update(before)


def state_text(state_b64: str) -> str:
    """The text of a base64 state, decoded as a Yjs client would (raises if it cannot)."""
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    doc.apply_update(base64.b64decode(state_b64))
    return str(text)


def counts(raw: sqlite3.Connection) -> list[int]:
    return [rows(raw, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES]


def misframed() -> list[bytes]:
    one, two = Doc(), Doc()
    first, second = edit(one, 0, "first part"), edit(two, 0, "second part")
    return [POISON, first + second, create_update_message(first)]


@pytest.mark.parametrize("bad", misframed(), ids=["poison", "concatenated", "y-protocols"])
async def test_a_malformed_local_update_is_refused_and_writes_nothing(
    store: Store, raw: sqlite3.Connection, bad: bytes
) -> None:
    doc_id = (await store.documents.open())["id"]
    await store.documents.apply_update(doc_id, edit(Doc(), 0, "good text"))
    before = counts(raw)
    with pytest.raises(InvalidInput) as caught:
        await store.documents.apply_update(doc_id, bad)
    assert caught.value.field == "update"
    assert "Yjs update" in caught.value.message
    assert counts(raw) == before
    got = await store.documents.get(doc_id)
    assert got["text"] == "good text" == state_text(got["state"])


async def test_the_empty_update_changes_and_writes_nothing(
    store: Store, raw: sqlite3.Connection
) -> None:
    doc_id = (await store.documents.open())["id"]
    before = counts(raw)
    result = await store.documents.apply_update(doc_id, Doc().get_update())  # b"\x00\x00"
    assert result == {"id": doc_id, "update_id": None}
    assert counts(raw) == before


async def test_a_local_update_waiting_for_another_is_kept_and_the_state_decodes(
    store: Store,
) -> None:
    doc_id = (await store.documents.open())["id"]
    editor: Doc[Any] = Doc()
    first = edit(editor, 0, "hello")
    second = edit(editor, 5, " world")  # needs "hello"
    await store.documents.apply_update(doc_id, second)
    got = await store.documents.get(doc_id)
    assert got["text"] == "" and state_text(got["state"]) == ""
    await store.documents.apply_update(doc_id, first)
    got = await store.documents.get(doc_id)
    assert got["text"] == "hello world" == state_text(got["state"])


async def test_bad_rows_already_stored_are_left_out_with_a_warning(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows the previous code wrote (or pulled) load without them: never -32603 again."""
    store = await Store.open(db_path, StoreSettings())
    try:
        doc_id = (await store.documents.open())["id"]
        editor: Doc[Any] = Doc()
        await store.documents.apply_update(doc_id, edit(editor, 0, "good text"))
    finally:
        await store.close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:  # as the code before this check stored them
        for data in (POISON, GARBAGE):
            conn.execute(
                "INSERT INTO doc_updates (id, doc_id, workspace_id, data, created_at, hlc, origin)"
                " VALUES (?, ?, NULL, ?, '2026-01-01T00:00:00.000Z', '', 'cloud')",
                (uuid7(), doc_id, data),
            )
    finally:
        conn.close()
    caplog.set_level(logging.WARNING, logger="daemon.store.documents")
    store = await Store.open(db_path, StoreSettings())
    try:
        got = await store.documents.get(doc_id)
        assert got["text"] == "good text" == state_text(got["state"])
        opened = await store.documents.open(doc_id)
        assert state_text(opened["state"]) == "good text"
        await store.documents.apply_update(doc_id, edit(editor, 9, " more"))
        assert await store.documents.compact(doc_id) == 2  # the bad rows are kept, not folded
        assert str((await store.documents.load(doc_id)).get("content", type=Text)) == (
            "good text more"
        )
    finally:
        await store.close()
    skipped = [r for r in caplog.records if r.getMessage().startswith("doc.load.skipped")]
    assert len(skipped) >= 2 and all(r.levelno == logging.WARNING for r in skipped)
    for record in skipped:  # never the data
        assert POISON.hex() not in record.getMessage() and "garbage" not in record.getMessage()


async def test_a_pulled_update_that_is_not_one_yjs_update_is_set_aside(
    store: Store, raw: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    doc_id = uuid7()
    good = edit(Doc(), 0, "important text")
    await apply(
        store,
        change("documents", remote_doc(clock(), ws, doc_id)),
        change("doc_updates", remote_update(clock(1), ws, doc_id, good)),
    )
    assert (await store.documents.get(doc_id))["text"] == "important text"  # loaded
    seq = last_seq(raw)
    caplog.set_level(logging.WARNING)
    bad = [remote_update(clock(2 + i), ws, doc_id, d) for i, d in enumerate([GARBAGE, POISON])]
    empty = remote_update(clock(5), ws, doc_id, b"\x00\x00")
    outcome = await apply(store, *(change("doc_updates", u) for u in (*bad, empty)))
    assert outcome.skipped == 2 and outcome.doc_updates == ()
    assert rows(raw, "SELECT count(*) FROM doc_updates") == [(1,)]
    assert changelog_since(raw, seq) == []  # no doc.updated event carries them
    reasons = [r.getMessage() for r in caplog.records if "sync.apply.skipped" in r.getMessage()]
    assert sorted(u["id"] in m for u in bad for m in reasons).count(True) == 2
    assert all(r.levelno == logging.WARNING for r in caplog.records if "skipped" in r.msg)
    got = await store.documents.get(doc_id)
    assert got["text"] == "important text" == state_text(got["state"])


async def test_a_relayed_malformed_update_is_refused(store: Store, raw: sqlite3.Connection) -> None:
    ws = (await store.workspaces.create(name="w"))["id"]
    doc_id = uuid7()
    await apply(store, change("documents", remote_doc(clock(), ws, doc_id)))
    before = counts(raw)
    with pytest.raises(InvalidInput) as caught:
        await store.documents.apply_broadcast(
            doc_id, POISON, workspace_id=ws, update_id=uuid7(), origin="other"
        )
    assert caught.value.field == "update" and counts(raw) == before
