"""``syncd compact``: VACUUM a data dir's database while no daemon runs. Real files, real
``syncd run`` processes, a real failure (a file size limit) in the middle of the VACUUM."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon import cli
from daemon.app import DataDirLock
from daemon.config import StoreSettings
from daemon.errors import AlreadyRunning
from daemon.store import Store, compact
from tests.helpers import MS, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
CONTENT = 8 << 10  # bytes per message
RETAIN = 200  # changelog entries kept


def syncd(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


async def fill(data_dir: Path, messages: int = 400) -> tuple[str, str]:
    """A database with ``messages`` messages of 8 KiB whose changelog entries (copies of them)
    were pruned by later small writes, which did not reuse their pages, and one deleted
    conversation; (the live conversation's id, the deleted one's)."""
    store = await Store.open(data_dir / "syncd.db", StoreSettings(changelog_retain=RETAIN))
    try:
        ws = await store.workspaces.create(name="w")
        live = await store.conversations.create(workspace_id=ws["id"], name="live")
        gone = await store.conversations.create(workspace_id=ws["id"], name="gone")
        for i in range(messages):
            conv = live if i % 2 else gone
            await store.messages.create(
                conversation_id=conv["id"], role="user", content=f"{i:08d}".ljust(CONTENT, "x")
            )
        for i in range(2 * RETAIN):  # push the messages' entries out of the changelog
            await store.conversations.update(live["id"], name=f"live {i}")
        await store.conversations.delete(gone["id"])
    finally:
        await store.close()
    return live["id"], gone["id"]


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def contents(path: Path) -> list[tuple[Any, ...]]:
    """Every synced row, as stored (tombstones included)."""
    return query(
        path,
        "SELECT id, conversation_id, content, deleted_at FROM messages UNION ALL"
        " SELECT id, workspace_id, name, deleted_at FROM conversations ORDER BY 1",
    )


def start_daemon(data_dir: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--data-dir", str(data_dir), "--port", "0"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return json.loads((data_dir / "daemon.json").read_text())["pid"] == proc.pid
        except (FileNotFoundError, ValueError, KeyError):
            return False

    wait_for_sync(ready, timeout=30_000 * MS, message="the daemon to publish daemon.json")
    assert proc.poll() is None
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


async def test_compact_shrinks_the_file_and_keeps_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "d"
    live, gone = await fill(data_dir)
    vacuum = compact.compact_database
    refused: list[AlreadyRunning] = []
    told: list[tuple[int, str]] = []

    def locked_meanwhile(path: Path) -> compact.Compaction:
        with pytest.raises(AlreadyRunning) as held:  # as a daemon starting meanwhile is
            DataDirLock.acquire(data_dir)
        refused.append(held.value)
        # a client is told that compact, not a daemon starting up, holds the data dir
        told.append((cli.main(["status", "--data-dir", str(data_dir)]), capsys.readouterr().err))
        return vacuum(path)

    monkeypatch.setattr(compact, "compact_database", locked_meanwhile)
    path = data_dir / "syncd.db"
    rows = contents(path)
    free_pages = query(path, "PRAGMA freelist_count")[0][0]
    assert free_pages > RETAIN  # the pruned changelog entries' pages
    size = path.stat().st_size

    assert (
        await asyncio.to_thread(cli.main, ["compact", "--data-dir", str(data_dir), "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["database"] == str(path) and result["size_before"] == size
    assert result["size_after"] == path.stat().st_size
    assert result["freed"] == size - result["size_after"] > free_pages * 4096 * 0.9
    assert query(path, "PRAGMA freelist_count") == [(0,)]
    assert query(path, "PRAGMA integrity_check") == [("ok",)]
    assert contents(path) == rows  # tombstones and their messages kept (sync may need them)
    assert [e.pid for e in refused] == [os.getpid()]
    assert (
        str(refused[0])
        == f"syncd compact (pid {os.getpid()}) is compacting the database of {data_dir}"
    )
    ((code, err),) = told
    assert code == 3  # no daemon runs
    assert f"syncd compact (pid {os.getpid()}) is compacting its database" in err
    assert not (data_dir / "syncd.lock").read_text()  # released

    store = await Store.open(path, StoreSettings())  # the daemon's store reads it as before
    try:
        page = await store.messages.list(conversation_id=live, limit=1000)
        assert len(page.items) == 200
        assert page.items[0]["content"] == "00000001".ljust(CONTENT, "x")
        assert (await store.conversations.get(gone))["deleted_at"] is not None
    finally:
        await store.close()

    assert await asyncio.to_thread(cli.main, ["compact", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"compacted {path}: ") and "bytes before" in out and "freed)" in out


def test_compact_refuses_while_a_daemon_runs_and_holds_the_lock_itself(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    asyncio.run(fill(data_dir, messages=40))
    path = data_dir / "syncd.db"
    daemon = start_daemon(data_dir)
    try:
        refused = syncd("compact", "--data-dir", str(data_dir))
        assert refused.returncode == 1, refused.stderr
        assert f"(pid {daemon.pid}) is already running" in refused.stderr
        assert "stop the daemon first" in refused.stderr
        assert daemon.poll() is None
        assert syncd("call", "--data-dir", str(data_dir), "daemon.ping").returncode == 0
        stop(daemon)
        compacting = DataDirLock.acquire(data_dir, "compact")  # as another syncd compact does
        try:
            again = syncd("compact", "--data-dir", str(data_dir))
            assert again.returncode == 1 and "wait for it to finish" in again.stderr
            run = syncd("run", "--data-dir", str(data_dir), "--port", "0")
            assert run.returncode != 0
            assert f"syncd compact (pid {os.getpid()}) is compacting the database" in run.stderr
        finally:
            compacting.release()
        rows = contents(path)
        done = syncd("compact", "--data-dir", str(data_dir), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["size_after"] == path.stat().st_size
        assert contents(path) == rows
        daemon = start_daemon(data_dir)  # the lock was released
    finally:
        stop(daemon)


def test_a_failed_compaction_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    """No file may grow past 256 KiB: the VACUUM fails writing its copy of a ~2 MB database,
    rolls back, and the database is byte for byte what it was."""
    data_dir = tmp_path / "d"
    asyncio.run(fill(data_dir))
    path = data_dir / "syncd.db"
    before = path.read_bytes()
    limit = 256 << 10

    def small_files() -> None:  # in the child: writes past the limit fail (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    failed = syncd("compact", "--data-dir", str(data_dir), preexec_fn=small_files)
    assert failed.returncode == 1, failed.stdout
    line = failed.stderr.strip()
    assert line.startswith("syncd compact: VACUUM failed: "), failed.stderr
    assert line.endswith("; the database is as it was"), failed.stderr
    assert "Traceback" not in failed.stderr
    assert path.read_bytes() == before
    assert query(path, "PRAGMA integrity_check") == [("ok",)]
    assert syncd("compact", "--data-dir", str(data_dir)).returncode == 0  # and can be redone


def test_compact_without_a_database_creates_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "none"
    out = syncd("compact", "--data-dir", str(data_dir))
    assert out.returncode == 1
    assert out.stderr == f"syncd compact: no database at {data_dir / 'syncd.db'}\n"
    assert not data_dir.exists()
