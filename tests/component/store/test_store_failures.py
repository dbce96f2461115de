"""A full disk and a read-only database file are told apart (failures.py): a StoreUnavailable
with a reason a UI can show, nothing changed; a read-only file is refused at open, named.

The disk is "full" through SQLite's ``PRAGMA max_page_count`` on the writer's connection (the
same SQLITE_FULL a full disk gives); the file is read-only at run time through ``PRAGMA
query_only`` (the same SQLITE_READONLY), and at open through its mode (or, for root, whom
modes do not stop, the immutable attribute)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import StoreUnavailable
from daemon.store import Store
from daemon.store.engine import run_in_thread
from tests.helpers import overwrite_a_leaf_page, store_with_messages

from .conftest import rows


async def _on_writer(store: Store, sql: str) -> None:
    def run(conn: sqlite3.Connection) -> None:
        if "{pages}" in sql:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(sql.format(pages=pages))
        else:
            conn.execute(sql)

    await run_in_thread(store._writer_conn, run)


async def test_a_full_disk_is_said_and_changes_nothing(
    store: Store, raw: sqlite3.Connection, db_path: Path
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    before = rows(raw, "SELECT count(*) FROM messages")
    await _on_writer(store, "PRAGMA max_page_count = {pages}")

    with pytest.raises(StoreUnavailable) as caught:
        await store.messages.create(conversation_id=conv["id"], role="user", content="x" * 200_000)

    assert caught.value.reason == "disk_full"
    assert caught.value.message == f"the disk is full: cannot write {db_path}"
    assert rows(raw, "SELECT count(*) FROM messages") == before
    await _on_writer(store, "PRAGMA max_page_count = 1073741823")  # space freed: writes again
    await store.messages.create(conversation_id=conv["id"], role="user", content="y" * 200_000)
    assert rows(raw, "SELECT count(*) FROM messages") == [(before[0][0] + 1,)]


async def test_a_full_disk_is_said_to_every_write_of_a_group(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    await _on_writer(store, "PRAGMA max_page_count = {pages}")

    results = await asyncio.gather(
        *(
            store.messages.create(conversation_id=conv["id"], role="user", content="x" * 50_000)
            for _ in range(6)
        ),
        return_exceptions=True,
    )

    assert [getattr(r, "reason", r) for r in results] == ["disk_full"] * 6
    assert rows(raw, "SELECT count(*) FROM messages") == [(0,)]


async def test_a_read_only_database_is_said_with_its_path(
    store: Store, raw: sqlite3.Connection, db_path: Path
) -> None:
    ws = await store.workspaces.create(name="w")
    await _on_writer(store, "PRAGMA query_only = ON")

    with pytest.raises(StoreUnavailable) as caught:
        await store.workspaces.update(ws["id"], name="renamed")

    assert caught.value.reason == "read_only"
    assert caught.value.message == f"the database file is read-only: {db_path}"
    assert rows(raw, "SELECT name FROM workspaces") == [("w",)]
    await _on_writer(store, "PRAGMA query_only = OFF")


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """An existing syncd.db this process cannot write: mode 0400 (not root), else the
    immutable attribute (root ignores modes)."""
    path = tmp_path / "syncd.db"
    sqlite3.connect(path).close()
    path.write_bytes(b"")
    if os.geteuid() != 0:
        path.chmod(0o400)
        try:
            yield path
        finally:
            path.chmod(0o600)
        return
    chattr = shutil.which("chattr")
    assert chattr is not None, "root without chattr: cannot make a file read-only"
    subprocess.run([chattr, "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


async def test_a_read_only_database_is_refused_at_open_naming_it(immutable: Path) -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await Store.open(immutable, StoreSettings())

    assert caught.value.reason == "read_only"
    assert str(caught.value) == f"the database file is read-only: {immutable}"


async def test_a_read_that_meets_corrupt_pages_says_the_database_is_damaged(
    tmp_path: Path,
) -> None:
    path = tmp_path / "syncd.db"
    store, ws_id, conv_id = await store_with_messages(path)
    await store.close()
    overwrite_a_leaf_page(path)  # one leaf of the messages table

    store = await Store.open(path, StoreSettings())
    try:
        assert (await store.workspaces.get(ws_id))["name"] == "w"  # the rest still reads
        with pytest.raises(StoreUnavailable) as caught:
            await store.messages.list(conversation_id=conv_id, limit=1000)
    finally:
        await store.close()
    assert caught.value.reason == "damaged" and "integrity_check" in caught.value.message
