"""The changelog's byte bound (``changelog_retain_bytes``) on real SQLite files: big entries are
pruned oldest first, the count bound still holds, the newest entry stays, and a restart (clean,
after writes it never saved, or of a changelog written before the bound) keeps the bound."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import DaemonError
from daemon.store import Store
from daemon.store.changelog_size import KEY, parse_mark
from daemon.store.txn import PRUNE_SLACK_DIVISOR

from .conftest import rows
from .test_doc_batch import edits

BOUND = 200_000
BIG = 20_000  # characters of content per message


def kept(db_path: Path) -> tuple[int, int, int, int]:
    """(count, min seq, max seq, total length(data)) of the changelog, read from the file."""
    conn = sqlite3.connect(db_path)
    try:
        [found] = rows(
            conn, "SELECT count(*), min(seq), max(seq), total(length(data)) FROM changelog"
        )
        return found[0], found[1], found[2], int(found[3])
    finally:
        conn.close()


def saved_mark(db_path: Path) -> tuple[int, int, int] | None:
    conn = sqlite3.connect(db_path)
    try:
        found = rows(conn, "SELECT value FROM meta WHERE key = ?", KEY)
        return parse_mark(found[0][0]) if found else None
    finally:
        conn.close()


async def write_big(store: Store, conv_id: str, n: int, size: int = BIG) -> None:
    for i in range(n):
        await store.messages.create(conversation_id=conv_id, role="user", content=f"{i}" * size)


async def conversation(store: Store) -> str:
    ws = await store.workspaces.create(name="w")
    return str((await store.conversations.create(workspace_id=ws["id"], name="c"))["id"])


async def test_big_writes_are_pruned_to_the_byte_bound(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings(changelog_retain_bytes=BOUND))
    try:
        conv = await conversation(store)
        for _ in range(6):
            await write_big(store, conv, 10)  # 1.2 MB of content in all
            count, first, last, chars = kept(db_path)
            assert chars <= BOUND + BOUND // PRUNE_SLACK_DIVISOR
            assert chars > BOUND - 2 * BIG  # pruned to the bound, not far past it
            assert last == await store.changelog.last_seq()
            assert first == await store.changelog.first_seq()
        # what is kept replays from the oldest kept entry on
        first = await store.changelog.first_seq()
        replayed = await store.changelog.read_since(first - 1)
        assert [e.seq for e in replayed] == list(range(first, last + 1))
        assert 8 <= len(replayed) <= 11  # about BOUND / BIG entries
    finally:
        await store.close()
    assert saved_mark(db_path) == (first, last, kept(db_path)[3])  # the size, exact


async def test_the_count_bound_still_holds_with_small_entries(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings(changelog_retain=20))
    try:
        conv = await conversation(store)
        await write_big(store, conv, 50, size=10)
    finally:
        await store.close()
    count, first, last, chars = kept(db_path)
    assert (count, first, last) == (20, 33, 52)
    assert saved_mark(db_path) == (33, 52, chars)


async def test_the_newest_entry_stays_even_past_the_bound(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings(changelog_retain_bytes=1000))
    try:
        conv = await conversation(store)
        await write_big(store, conv, 3, size=5000)
        last = await store.changelog.last_seq()
        assert await store.changelog.first_seq() == last
        [event] = await store.changelog.read_since(last - 1)
        assert event.data["content"] == "2" * 5000
    finally:
        await store.close()
    assert kept(db_path)[:3] == (1, last, last)


async def test_a_restart_keeps_the_bound_and_the_size_it_saved(db_path: Path) -> None:
    settings = StoreSettings(changelog_retain_bytes=BOUND)
    store = await Store.open(db_path, settings)
    try:
        conv = await conversation(store)
        await write_big(store, conv, 8)  # 160 kB: nothing pruned yet
    finally:
        await store.close()
    assert kept(db_path)[0] == 10  # (the workspace and the conversation too)
    for _ in range(2):
        store = await Store.open(db_path, settings)
        try:
            await write_big(store, conv, 8)
            count, first, last, chars = kept(db_path)
            assert BOUND - 2 * BIG < chars <= BOUND + BOUND // PRUNE_SLACK_DIVISOR
            assert first > 1
        finally:
            await store.close()
        assert saved_mark(db_path) == (first, last, chars)


async def test_entries_written_after_the_last_saved_size_count_at_the_next_start(
    db_path: Path,
) -> None:
    """As after a crash: entries in the file that the saved size does not include."""
    settings = StoreSettings(changelog_retain_bytes=BOUND)
    store = await Store.open(db_path, settings)
    try:
        conv = await conversation(store)
        await write_big(store, conv, 12)  # pruned once: the size is saved
    finally:
        await store.close()
    mark = saved_mark(db_path)
    assert mark is not None
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:  # 8 more entries of 20 kB the saved size knows nothing of
        for i in range(8):
            conn.execute(
                "INSERT INTO changelog (topic, row_id, workspace_id, data, created_at)"
                " VALUES ('message.created', ?, NULL, ?, '2026-01-01T00:00:00.000Z')",
                (f"x{i}", "x" * BIG),
            )
    finally:
        conn.close()
    assert kept(db_path)[3] > BOUND + BIG
    store = await Store.open(db_path, settings)
    try:
        await write_big(store, conv, 1, size=10)
    finally:
        await store.close()
    count, first, last, chars = kept(db_path)
    assert BOUND - 2 * BIG < chars <= BOUND + BOUND // PRUNE_SLACK_DIVISOR
    assert saved_mark(db_path) == (first, last, chars)


async def test_a_changelog_without_a_saved_size_is_measured_and_pruned(db_path: Path) -> None:
    """A changelog written before the byte bound existed (no size in meta): 60 entries of
    20 kB under the old count-only retention; the first write after the upgrade prunes it."""
    store = await Store.open(db_path, StoreSettings(changelog_retain_bytes=1 << 30))
    try:
        conv = await conversation(store)
        await write_big(store, conv, 60)
    finally:
        await store.close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("DELETE FROM meta WHERE key = ?", (KEY,))
    finally:
        conn.close()
    assert kept(db_path)[0] == 62
    await (await Store.open(db_path, StoreSettings(changelog_retain_bytes=1 << 30))).close()
    assert saved_mark(db_path) == (1, 62, kept(db_path)[3])  # measured once, then saved
    store = await Store.open(db_path, StoreSettings(changelog_retain_bytes=BOUND))
    try:
        await write_big(store, conv, 1, size=10)
        count, first, last, chars = kept(db_path)
        assert BOUND - 2 * BIG < chars <= BOUND + BOUND // PRUNE_SLACK_DIVISOR
        assert await store.changelog.first_seq() == first
    finally:
        await store.close()
    assert saved_mark(db_path) == (first, last, chars)


async def test_document_updates_and_a_failed_batch_keep_the_size_exact(db_path: Path) -> None:
    """Bulk-written entries (doc_ops.LocalBatch) count; a refused write adds nothing."""
    store = await Store.open(db_path, StoreSettings(changelog_retain_bytes=BOUND))
    try:
        ws = await store.workspaces.create(name="docs")
        doc_id = (await store.documents.open(workspace_id=ws["id"]))["id"]
        for update in edits(400):
            await store.documents.apply_update(doc_id, update)
        conv = await conversation(store)
        await write_big(store, conv, 5)
        with pytest.raises(DaemonError):
            await store.messages.create(conversation_id="no such", role="user", content="x")
        await write_big(store, conv, 5)
    finally:
        await store.close()
    count, first, last, chars = kept(db_path)
    assert first > 1 and saved_mark(db_path) == (first, last, chars)
