"""SIGTERM while UIs are writing: the daemon exits 0 within 5 s and loses no acknowledged write."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from daemon.config import StoreSettings
from daemon.store import Store
from daemon.store.ids import uuid7
from tests.helpers import MS, wait_for

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 20
STOP_BUDGET = 5.0


class Rpc:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self.ids)
        await self.ws.send(orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                                         "params": params}))  # fmt: skip
        while True:
            reply = orjson.loads(await self.ws.recv())
            if reply.get("id") == request_id:
                return dict(reply)


def read_discovery(data_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((data_dir / "daemon.json").read_text()))
    except (FileNotFoundError, ValueError):
        return None


async def open_rpc(info: dict[str, Any]) -> Rpc:
    ws = await connect(
        info["url"],
        additional_headers={"Authorization": f"Bearer {info['token']}"},
        compression=None,
    )
    return Rpc(ws)


async def write_until_refused(rpc: Rpc, conversation_id: str, acked: list[str]) -> None:
    """Send messages one after another; record each id the daemon acknowledged."""
    try:
        while True:
            mid = uuid7()
            reply = await rpc.call(
                "message.send",
                {"conversation_id": conversation_id, "role": "user", "content": mid, "id": mid},
            )
            if "error" in reply:
                assert reply["error"]["code"] == -32010, reply  # shutting down
                return
            assert reply["result"]["id"] == mid
            acked.append(mid)
    except ConnectionClosed:
        return


async def linked_conversation(db: Path) -> str:
    """A conversation in a LINKED workspace, made before the daemon starts: only a linked
    workspace's writes get outbox entries. No cloud is configured: nothing is pushed."""
    store = await Store.open(db, StoreSettings())
    try:
        ws = await store.workspaces.create(name="burst")
        await store.sync.link(workspace_id=ws["id"], org_id="burst-org", path=None)
        return str((await store.conversations.create(workspace_id=ws["id"], name="c"))["id"])
    finally:
        await store.close()


async def test_sigterm_during_a_burst_of_writes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    conversation_id = await linked_conversation(tmp_path / "syncd.db")
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "daemon", "run", "--data-dir", str(tmp_path), "--port", "0"),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await wait_for(
            lambda: (
                (read_discovery(tmp_path) or {}).get("pid") == proc.pid
                or proc.returncode is not None
            ),
            timeout=30_000 * MS,
            message="daemon.json",
        )
        info = read_discovery(tmp_path)
        assert info is not None and proc.returncode is None
        clients = [await open_rpc(info) for _ in range(CLIENTS)]
        acked: list[str] = []
        writers = [
            asyncio.create_task(write_until_refused(c, conversation_id, acked)) for c in clients
        ]
        await wait_for(lambda: len(acked) >= 500, timeout=30_000 * MS, message="500 writes")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10_000 * MS)
        elapsed = time.monotonic() - started
        await asyncio.wait_for(asyncio.gather(*writers), 10_000 * MS)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == 0, (tmp_path / "stderr").read_text()
    assert elapsed < STOP_BUDGET
    assert not (tmp_path / "daemon.json").exists()

    conn = sqlite3.connect(tmp_path / "syncd.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {r[0] for r in conn.execute("SELECT id FROM messages")}
        outbox = {r[0] for r in conn.execute("SELECT row_id FROM outbox")}
        changelog = {r[0] for r in conn.execute("SELECT row_id FROM changelog")}
    finally:
        conn.close()
    missing = [
        mid for mid in acked if mid not in stored or mid not in outbox or mid not in changelog
    ]
    assert missing == []
    assert len(acked) >= 500
