"""The WAL shrinks back after a burst of writes (audit finding 8: it kept its largest size,
17-28 MB, until the daemon restarted; ``journal_size_limit`` was -1)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from daemon.config import StoreSettings
from daemon.store import Store
from daemon.store.checkpoint import Checkpointer
from daemon.store.engine import run_in_thread
from tests.helpers import MS, wait_for

LIMIT = 4 << 20  # engine.WAL_SIZE_LIMIT


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _wal_size(db_path: Path) -> int:
    wal = Path(f"{db_path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_after_a_burst_the_idle_wal_is_truncated_under_the_limit(db_path: Path) -> None:
    store = await Store.open(db_path, StoreSettings())
    try:
        ws = await store.workspaces.create(name="w")
        conv = await store.conversations.create(workspace_id=ws["id"], name="c")
        body = "x" * (64 << 10)
        peak = 0
        for _ in range(400):  # ~26 MB of messages, and as much again in the changelog
            await store.messages.create(conversation_id=conv["id"], role="user", content=body)
            peak = max(peak, _wal_size(db_path))
        assert peak > LIMIT  # the burst did grow it past the limit

        # Nothing is written any more: the checkpoint after the burst truncates the WAL.
        await wait_for(
            lambda: _wal_size(db_path) <= LIMIT,
            timeout=20_000 * MS,
            message="the WAL back under journal_size_limit",
        )

        def journal_size_limit(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA journal_size_limit").fetchone()[0])

        assert await run_in_thread(store._writer_conn, journal_size_limit) == LIMIT
    finally:
        await store.close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (400,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


async def test_a_checkpoint_never_makes_a_new_database_where_the_file_was_deleted(
    tmp_path: Path,
) -> None:
    """The checkpointer opens its connection at its first checkpoint; the database deleted
    before that (daemon/watch.py then stops the daemon, naming it) must not be created again
    empty, with a WAL of its own: the watch then blamed a "replaced" WAL (CI50)."""
    path = tmp_path / "syncd.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    path.unlink()
    checkpointer = Checkpointer(str(path))
    assert checkpointer.start(asyncio.get_running_loop())
    await checkpointer.close()  # waits for the checkpoint (it failed: logged)
    assert _names(tmp_path) == []
