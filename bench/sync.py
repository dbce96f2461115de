"""Benchmark of cloud sync through the daemon (prints JSON; not a test).

    .venv/bin/python bench/sync.py [--quick] [--random-ids] [--database-url URL]

Real parts only: PostgreSQL (embedded pgserver unless ``--database-url``/
``SYNCD_TEST_DATABASE_URL``), devcloud as a ``python -m devcloud`` child process, and daemons as
``syncd run`` child processes driven through their JSON-RPC API, as a user's tools would.

- push: device A publishes a workspace holding N messages (``cloud.link`` + ``sync.push``
  until the cloud holds every row); rows/s next to the baseline measured in the same run: the
  naive one-request-per-row approach (httpx ``POST /rest/v1/messages`` per row, keep-alive, as
  the same user). Budget: >= 25k rows/s and >= 10x the per-row baseline.
- pull: device B clones that workspace (``cloud.link {cloud_workspace_id}`` + ``sync.pull``);
  rows pulled and applied per second. Budget: >= 40k rows/s. The cloud's tables are ANALYZEd
  first (see ``seed_workspace``).
- attribution: the same devcloud driven directly (httpx, no daemon): ``sync_push`` of ready
  500-row batches and ``sync_pull`` pages of 1000 decoded but not applied, i.e. the ceiling
  the cloud side allows on this machine.
- first sync: device C clones a workspace of 100,000 messages (seeded with COPY);
  time and the daemon's peak RSS (VmHWM) growth, next to B's growth for N rows ("flat memory":
  the growth must not scale with the row count: at most 2x B's). Budget: <= 2.5 s.
  ``--quick`` uses 20,000 rows and gives no verdict for it.

Row ids: every row syncd creates has a time-ordered UUIDv7 id (daemon/store/ids.py), so the
seeded workspace and the per-row baseline use UUIDv7 ids too: that is what a cloned syncd
workspace holds. ``--random-ids`` seeds (and posts) random UUIDv4 ids instead, the case of
rows written by other apps: random primary keys dirty one SQLite B-tree page per inserted row,
which makes the first sync's INSERTs several times slower (reported, not budgeted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from _common import (
    ROOT,
    child_env,
    devcloud_process,
    print_json_with_load,
    scratch_database,
    wait_until,
)

from daemon.store.ids import uuid7
from devcloud import _seed
from devcloud.context import DevcloudConfig
from ui_bridge.client import Client, connect

EMAIL, PASSWORD = "bench@example.com", "bench password 1"
CONTENT = "benchmark message body " * 4
FIRST_SYNC_ROWS = 100_000
NAIVE_ROWS = 1_000
WAIT_S = 300.0
ANON_KEY = DevcloudConfig().anon_key


class Daemon:
    """One ``syncd run`` child process configured for the cloud, with a client."""

    def __init__(self, data_dir: Path, cloud_url: str) -> None:
        self.data_dir = data_dir
        self.cloud_url = cloud_url
        self.proc: asyncio.subprocess.Process | None = None
        self.client: Client | None = None

    async def start(self) -> Daemon:
        env = child_env(SYNCD_CLOUD_URL=self.cloud_url, SYNCD_CLOUD_ANON_KEY=ANON_KEY)
        self.proc = proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "daemon", "run", "--data-dir", str(self.data_dir)),
            *("--port", "0"),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_until(
            lambda: proc.returncode is not None or self._pid() == proc.pid, "daemon", WAIT_S
        )
        self.client = await connect(data_dir=self.data_dir, reconnect=False)
        await self.call("cloud.login", {"email": EMAIL, "password": PASSWORD})
        return self

    def _pid(self) -> int | None:
        try:
            return int(json.loads((self.data_dir / "daemon.json").read_text())["pid"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    async def call(self, method: str, params: Any = None) -> Any:
        assert self.client is not None
        return await self.client.call(method, params)

    def rss_mb(self) -> dict[str, float]:
        """Current and peak resident memory of the daemon process (Linux /proc)."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
        return {k: round(int(v) / 1024, 1) for k, v in values.items()}

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()


async def count_messages(pool: asyncpg.Pool, ws_id: str) -> int:
    sql = "SELECT count(*) FROM messages WHERE workspace_id = $1::uuid"
    return int(await pool.fetchval(sql, ws_id))


async def write_messages(daemon: Daemon, conv_id: str, n: int) -> None:
    params = {"conversation_id": conv_id, "role": "user", "content": CONTENT}
    for start in range(0, n, 500):
        batch = min(500, n - start)
        await asyncio.gather(*(daemon.call("message.send", params) for _ in range(batch)))


async def bench_push(a: Daemon, pool: asyncpg.Pool, n: int) -> dict[str, Any]:
    ws = await a.call("workspace.create", {"name": "bench push"})
    conv = await a.call("conversation.create", {"workspace_id": ws["id"], "name": "c"})
    await write_messages(a, conv["id"], n)
    start = time.perf_counter()
    await a.call("cloud.link", {"workspace_id": ws["id"]})
    linked = time.perf_counter()
    result = await a.call("sync.push")
    await wait_until(lambda: _reached(pool, ws["id"], n), "the push", WAIT_S)
    elapsed = time.perf_counter() - start
    return {
        "rows": n,
        "link_s": round(linked - start, 3),
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(n / elapsed),
        "sync_push_result": result,
        "workspace_id": ws["id"],
        "conversation_id": conv["id"],
    }


async def _reached(pool: asyncpg.Pool, ws_id: str, n: int) -> bool:
    return await count_messages(pool, ws_id) >= n


def new_id(random_ids: bool) -> str:
    """A row id as syncd mints them (UUIDv7), or a random UUIDv4 with ``--random-ids``."""
    return str(uuid.uuid4()) if random_ids else uuid7()


async def bench_naive(
    cloud_url: str, ws_id: str, conv_id: str, n: int, *, random_ids: bool = False
) -> dict[str, Any]:
    """One POST /rest/v1/messages per row, sequentially, as the signed-in user."""
    async with contextlib.aclosing(await user_client(cloud_url)) as http:
        headers = {"Prefer": "return=minimal"}
        start = time.perf_counter()
        for _ in range(n):
            row = {"id": new_id(random_ids), "workspace_id": ws_id, "conversation_id": conv_id,
                   "role": "user", "content": CONTENT}  # fmt: skip
            response = await http.post("/rest/v1/messages", json=row, headers=headers)
            response.raise_for_status()
        elapsed = time.perf_counter() - start
    return {"rows": n, "elapsed_s": round(elapsed, 3), "rows_per_s": round(n / elapsed)}


async def user_client(cloud_url: str) -> httpx.AsyncClient:
    """An HTTP client signed in as the bench user (bearer token on every request)."""
    http = httpx.AsyncClient(base_url=cloud_url, headers={"apikey": ANON_KEY}, timeout=120)
    auth = await http.post(
        "/auth/v1/token", params={"grant_type": "password"},
        json={"email": EMAIL, "password": PASSWORD},
    )  # fmt: skip
    auth.raise_for_status()
    http.headers["Authorization"] = f"Bearer {auth.json()['access_token']}"
    return http


async def bench_cloud_push(cloud_url: str, ws_id: str, conv_id: str, n: int) -> dict[str, Any]:
    """The cloud side alone: sync_push of ready-made 500-row batches, one request at a time
    (the ceiling of what any client reaches through this devcloud)."""
    clock = f"{time.time_ns() // 1_000_000:013d}-000000-bench"
    async with contextlib.aclosing(await user_client(cloud_url)) as http:
        start = time.perf_counter()
        for first in range(0, n, 500):
            changes = [
                {"table": "messages", "id": str(uuid.uuid4()), "workspace_id": ws_id,
                 "fields": {"conversation_id": conv_id, "role": "user", "content": CONTENT},
                 "field_hlc": dict.fromkeys(("conversation_id", "role", "content"), clock),
                 "origin": "bench"}
                for _ in range(min(500, n - first))
            ]  # fmt: skip
            response = await http.post(
                "/rest/v1/rpc/sync_push", content=orjson.dumps({"changes": changes}),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            response.raise_for_status()
        elapsed = time.perf_counter() - start
    return {
        "rows": n,
        "batch": 500,
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(n / elapsed),
    }


async def bench_cloud_pull(cloud_url: str, ws_id: str, limit: int = 1000) -> dict[str, Any]:
    """The cloud side alone: page through sync_pull and decode, applying nothing."""
    rows, cursor = 0, None
    async with contextlib.aclosing(await user_client(cloud_url)) as http:
        start = time.perf_counter()
        while True:
            body = {"cursor": cursor, "limit": limit, "workspace_id": ws_id}
            response = await http.post("/rest/v1/rpc/sync_pull", json=body)
            response.raise_for_status()
            page = orjson.loads(response.content)
            rows += len(page["changes"])
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        elapsed = time.perf_counter() - start
    return {"rows": rows, "page": limit, "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(rows / elapsed)}  # fmt: skip


async def first_sync(daemon: Daemon, ws_id: str, rows: int, tmp: Path) -> dict[str, Any]:
    """Clone a cloud workspace of ``rows`` messages: time and the daemon's memory growth."""
    before = daemon.rss_mb()
    start = time.perf_counter()
    folder = tmp / f"clone-{ws_id}"
    folder.mkdir()
    await daemon.call("cloud.link", {"cloud_workspace_id": ws_id, "path": str(folder)})
    linked = time.perf_counter()
    result = await daemon.call("sync.pull")
    elapsed = time.perf_counter() - start
    after = daemon.rss_mb()
    listed = await daemon.call("workspace.get", {"id": ws_id})
    return {
        "rows": rows,
        "link_s": round(linked - start, 3),
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed),
        "rss_before_mb": before["VmRSS"],
        "peak_rss_mb": after["VmHWM"],
        "rss_growth_mb": round(after["VmHWM"] - before["VmRSS"], 1),
        "sync_pull_result": result,
        "cloned": listed["id"] == ws_id,
    }


async def seed_workspace(pool: asyncpg.Pool, rows: int, *, random_ids: bool = False) -> str:
    """A workspace of ``rows`` messages in the bench user's organisation, written with COPY
    (triggers off: the rows carry their own clocks; _txid/_seq come from column defaults).
    Ids are UUIDv7 in creation order, as syncd writes them (UUIDv4 with ``random_ids``).

    The tables are then ANALYZEd, as autovacuum does after a bulk load on a real cloud: a
    first sync started right after the COPY otherwise meets a planner without statistics,
    whose plan makes each of the first ``sync_pull`` pages ~8x slower (measured: the first
    five 2000-row pages ~450 ms each instead of ~55 ms, ~1.9 s of a 100k first sync)."""
    ws_id, conv_id = new_id(random_ids), new_id(random_ids)
    clock = f"{time.time_ns() // 1_000_000:013d}-000000-seed"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        org = await conn.fetchval("SELECT id FROM organizations WHERE name = 'bench'")
        await conn.execute(
            "INSERT INTO workspaces (id, org_id, name, hlc, origin) VALUES ($1, $2, 'big', $3, "
            "'seed')", uuid.UUID(ws_id), org, clock,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO conversations (id, workspace_id, name, hlc, origin) "
            "VALUES ($1, $2, 'c', $3, 'seed')", uuid.UUID(conv_id), uuid.UUID(ws_id), clock,
        )  # fmt: skip
        records = (
            (
                uuid.UUID(new_id(random_ids)),
                uuid.UUID(ws_id),
                uuid.UUID(conv_id),
                "user",
                CONTENT,
                clock,
                "seed",
            )
            for _ in range(rows)
        )
        await conn.copy_records_to_table(
            "messages",
            records=records,
            columns=["id", "workspace_id", "conversation_id", "role", "content", "hlc", "origin"],
        )
    await analyze(pool)
    return ws_id


async def analyze(pool: asyncpg.Pool) -> None:
    """Planner statistics for the synced tables, as autovacuum keeps them on a real cloud
    (it analyzes a table within a minute of a bulk change; a bench cannot wait for it)."""
    await pool.execute("ANALYZE workspaces, conversations, messages")


def verdicts(push: dict[str, Any], naive: dict[str, Any], pull: dict[str, Any],
             big: dict[str, Any], cloud: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    ratio = push["rows_per_s"] / naive["rows_per_s"]
    growth_ratio = big["rss_growth_mb"] / max(pull["rss_growth_mb"], 1.0)
    return {
        "push": {**push, "baseline_per_row_post": naive, "ratio_to_per_row": round(ratio, 1),
                 "attribution_cloud_only": cloud["push"],
                 "budget": {"rows_per_s_min": 25_000, "ratio_min": 10},
                 "ok": push["rows_per_s"] >= 25_000 and ratio >= 10},
        "pull_apply": {**pull, "budget": {"rows_per_s_min": 40_000},
                       "attribution_cloud_only": cloud["pull"],
                       "ok": pull["rows_per_s"] >= 40_000},
        "first_sync": {**big, "rss_growth_vs_small_pull": round(growth_ratio, 2),
                       "budget": {"rows": FIRST_SYNC_ROWS, "elapsed_s_max": 2.5,
                                  "rss_growth_vs_small_pull_max": 2.0},
                       "ok": (big["elapsed_s"] <= 2.5 and growth_ratio <= 2.0
                              if big["rows"] >= FIRST_SYNC_ROWS else None)},
        "note": "2-core machine shared with other jobs: figures are noisy",
    }  # fmt: skip


async def main(quick: bool, database_url: str | None, random_ids: bool = False) -> dict[str, Any]:
    n = 5_000 if quick else 20_000
    big_rows = 20_000 if quick else FIRST_SYNC_ROWS
    tmp = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    daemons: list[Daemon] = []
    try:
        async with (
            scratch_database(database_url) as url,
            devcloud_process(url, tmp / "devcloud.log") as cloud_url,
        ):
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            try:
                async with pool.acquire() as conn:
                    await _seed.create_user(conn, EMAIL, PASSWORD, org="bench")
                for name in "abc":
                    daemons.append(await Daemon(tmp / name, cloud_url).start())
                a, b, c = daemons
                push = await bench_push(a, pool, n)
                naive = await bench_naive(
                    cloud_url, push["workspace_id"], push["conversation_id"], NAIVE_ROWS,
                    random_ids=random_ids,
                )  # fmt: skip
                await analyze(pool)  # the pushed rows: see seed_workspace
                pull = await first_sync(b, push["workspace_id"], n + NAIVE_ROWS, tmp)
                big_ws = await seed_workspace(pool, big_rows, random_ids=random_ids)
                big = await first_sync(c, big_ws, big_rows, tmp)
                cloud = {
                    "pull": await bench_cloud_pull(cloud_url, big_ws),
                    "push": await bench_cloud_push(
                        cloud_url, push["workspace_id"], push["conversation_id"], n // 2
                    ),
                }
            finally:
                for daemon in daemons:
                    await daemon.close()
                await pool.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "row_ids": "uuid4" if random_ids else "uuid7",
        **verdicts(push, naive, pull, big, cloud),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument(
        "--random-ids", action="store_true", help="seed random UUIDv4 ids instead of UUIDv7"
    )
    parser.add_argument("--database-url", default=os.environ.get("SYNCD_TEST_DATABASE_URL"))
    args = parser.parse_args()
    print_json_with_load(lambda: asyncio.run(main(args.quick, args.database_url, args.random_ids)))
