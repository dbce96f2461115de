"""Opening the store where it cannot be opened: a clean StoreError naming the file, and no
connection thread left behind to print "Event loop is closed" once the loop is gone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import StoreError
from daemon.store import Store, engine


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
