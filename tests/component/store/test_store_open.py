"""Opening the store where it cannot be opened: a clean StoreError naming the file, and no
connection thread left behind to print "Event loop is closed" once the loop is gone."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import StoreError
from daemon.store import Store, engine
from tests.helpers import wait_for


def _connection_threads() -> set[threading.Thread]:
    """aiosqlite's worker threads (``Thread-N (_connection_worker_thread)``) still running."""
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def test_a_failed_connect_leaves_no_thread_to_report_to_a_closed_loop(
    tmp_path: Path,
) -> None:
    before = _connection_threads()
    with pytest.raises(StoreError) as caught:
        await engine.connect(tmp_path, StoreSettings())  # a directory: SQLite cannot open it

    assert str(caught.value).startswith(f"cannot open {tmp_path}: ")
    # Its thread is over before the error is raised: a daemon that exits at once (closing the
    # loop) must not leave it to report to the closed loop.
    assert _connection_threads() - before == set()


async def test_a_database_path_that_is_a_directory_is_said(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    path.mkdir()
    with pytest.raises(StoreError) as caught:
        await Store.open(path, StoreSettings())

    assert str(caught.value) == f"cannot open {path}: it is a directory, not a database file"
    assert list(path.iterdir()) == []


async def test_a_data_dir_that_is_not_utf8_keeps_its_background_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path of bytes that are not UTF-8 (b"/x\\xff": "/x\\udcff" in Python) is SQLite's
    file name all the same: the checkpointer opens the same file (it used to find no path:
    ``PRAGMA database_list`` cannot answer it as text)."""
    monkeypatch.setattr(engine, "CHECKPOINT_EVERY", 8)
    data_dir = tmp_path / os.fsdecode(b"data\xff")
    path = data_dir / "syncd.db"
    store = await Store.open(path, StoreSettings())
    try:
        checkpointer = store._writer.checkpointer
        assert checkpointer is not None
        ws = await store.workspaces.create(name="w")
        for i in range(20):
            await store.workspaces.update(ws["id"], name=f"w{i}")
        await wait_for(lambda: checkpointer.checkpoints >= 1, message="a background checkpoint")
    finally:
        await store.close()
    assert os.listdir(os.fsencode(tmp_path)) == [b"data\xff"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT name FROM workspaces").fetchall() == [("w19",)]
    finally:
        conn.close()
