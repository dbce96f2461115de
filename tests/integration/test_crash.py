"""Durable ack (invariant I1): SIGKILL a writer at random moments, over and over; every write
it acknowledged is there after the restart, with its outbox and changelog entries (the child
links its workspace: only a linked workspace's writes get outbox entries).

The child (this file run as a script) writes through the Store with several concurrent writers
(so group commit is exercised) and prints one line per acknowledged write, after the await.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.helpers import MS, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
KILLS = 22
WRITERS = 8


class Child:
    def __init__(self, db: Path, stderr: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(db)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode()
            if line.endswith("\n"):  # a line cut by the kill was never acknowledged
                self.lines.append(line.rstrip("\n"))

    def kill(self) -> list[str]:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.lines


def check_acknowledged(db: Path, acks: list[str]) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        if not acks:
            return  # killed before anything was acknowledged (maybe before the schema existed)
        tables = {
            t: {r[0] for r in conn.execute(f"SELECT id FROM {t}")}
            for t in ("workspaces", "conversations", "messages", "tasks")
        }
        outbox = set(conn.execute("SELECT table_name, row_id, hlc FROM outbox").fetchall())
        changelog = set(
            conn.execute("SELECT row_id, json_extract(data, '$.hlc') FROM changelog").fetchall()
        )
    finally:
        conn.close()
    for line in acks:
        kind, table, row_id, hlc = line.split()
        assert row_id in tables[table], line
        assert (table, row_id, hlc) in outbox, line
        assert (row_id, hlc) in changelog, line


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "syncd.db"
    rng = random.Random()
    acknowledged: list[str] = []
    errors = (tmp_path / "child.stderr").open("wb")
    for _ in range(KILLS):
        child = Child(db, errors)
        if rng.random() < 0.2:
            # somewhere in start-up: opening, migrating, creating the device id, first writes
            time.sleep(rng.uniform(0, 0.4))
        else:
            target = rng.randint(1, 400)
            wait_for_sync(
                lambda c=child, t=target: len(c.lines) >= t or c.proc.poll() is not None,  # type: ignore[misc]
                timeout=30_000 * MS,
                interval=MS,
                message=f"{target} acknowledged writes",
            )
            assert child.proc.poll() is None, (tmp_path / "child.stderr").read_text()
        acknowledged += child.kill()
        check_acknowledged(db, acknowledged)
    errors.close()
    assert len(acknowledged) > KILLS * 50  # the kills really interrupted a busy writer


# -- the child ------------------------------------------------------------------------------


def _ack(kind: str, row: dict[str, str], table: str) -> None:
    sys.stdout.write(f"{kind} {table} {row['id']} {row['hlc']}\n")
    sys.stdout.flush()


async def _child(db: Path) -> None:
    from daemon.config import StoreSettings
    from daemon.store import Store

    store = await Store.open(db, StoreSettings())
    ws = await store.workspaces.create(name="crash")
    # Linked (no cloud: nothing is pushed), so every write has an outbox entry to check; the
    # workspace's own entry is the link's snapshot, under the clock of its creation.
    await store.sync.link(workspace_id=ws["id"], org_id="crash-org", path=None)
    _ack("create", ws, "workspaces")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    _ack("create", conv, "conversations")

    async def write(n: int) -> None:
        i = 0
        while True:
            i += 1
            msg = await store.messages.create(
                conversation_id=conv["id"], role="user", content=f"{n}:{i}"
            )
            _ack("create", msg, "messages")
            if i % 10 == 0:
                task = await store.tasks.create(workspace_id=ws["id"], kind="k", payload={"i": i})
                _ack("create", task, "tasks")
                task = await store.tasks.update(task["id"], status="running", progress={"i": i})
                _ack("update", task, "tasks")
                updated = await store.workspaces.update(ws["id"], current_step=f"{n}:{i}")
                _ack("update", updated, "workspaces")

    await asyncio.gather(*(write(n) for n in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(_child(Path(sys.argv[1])))
