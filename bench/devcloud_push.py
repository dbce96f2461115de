"""Cloud push benchmark: sync_push over HTTP (POST /rest/v1/rpc/sync_push on a devcloud started
in this process, as a signed-in member, RLS on) in 500- and 1000-row batches of new messages;
the same RPC statement run through asyncpg as the member (what the HTTP path costs on top);
and asyncpg inserting the same kind of rows with json_to_recordset in the same run (as the
superuser, no RLS, the sync trigger in its cheapest mode: the best case a push could approach).
Prints JSON; "ratio" is HTTP push over the asyncpg insert. Not a test; figures are noisy on
shared CPUs, so the three are measured in interleaved rounds (--repeat) and each figure is the
median round (all rounds are listed under "runs"); the load average is printed too. When the
server runs on this machine, each figure also has "db_cpu_us_per_row": the CPU time of every
PostgreSQL process of the server (read from /proc) per row written, which a busy machine
disturbs far less than the wall clock ("db_cpu_ratio" compares them as "ratio" does).
devcloud's realtime capture triggers are on, as in every devcloud, unless
--without-realtime-capture; nobody subscribes to the messages here, so they notify nothing
(capture.sql: only watched tables notify) — unless --with-subscriber: then a Realtime client
(a WebSocket, as the member) subscribes to the messages' INSERTs throughout, so every push
also sends NOTIFYs and devcloud delivers the rows ("subscriber_received" counts them).

    .venv/bin/python bench/devcloud_push.py [--rows 20000] [--repeat 3] [--database-url URL]
                                            [--without-realtime-capture | --with-subscriber]

Without --database-url an embedded PostgreSQL (pgserver) runs in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import websockets
from _common import percentile, print_json_with_load, scratch_database

from daemon.store.ids import uuid7
from devcloud.context import Devcloud, DevcloudConfig
from devcloud.keys import sign
from devcloud.server import RunningDevcloud, running_devcloud

BATCH_SIZES = (500, 1000)


class ServerCpu:
    """CPU seconds used by a local PostgreSQL server: its postmaster and every child process
    (backends, WAL writer, ...), from /proc. ``None`` where /proc does not show the server."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster

    @classmethod
    async def locate(cls, conn: asyncpg.Connection) -> ServerCpu | None:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        stat = _proc_stat(backend)
        # (a remote server's backend pid may be some other local process)
        if stat is None or _proc_name(backend) != "postgres":
            return None
        return cls(int(stat[1]))  # the backend's parent

    def seconds(self) -> float:
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            stat = _proc_stat(int(entry.name))
            if stat is not None and self.postmaster in (int(entry.name), int(stat[1])):
                total += int(stat[11]) + int(stat[12])  # utime + stime, in clock ticks
        return total / os.sysconf("SC_CLK_TCK")


def _proc_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def clock(wall_ms: int, counter: int, device: str = "bench") -> str:
    return f"{wall_ms:013d}-{counter:06d}-{device}"


class Rows:
    """New message changes, each with its own clock, in one workspace's conversation; ids are
    UUIDv7, as the daemon mints them."""

    def __init__(self, workspace: str, conversation: str, user: str) -> None:
        self.workspace, self.conversation, self.user = workspace, conversation, user
        self.wall = int(time.time() * 1000) - 60_000
        self.counter = 0

    def changes(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            self.counter += 1
            if self.counter > 999_999:
                self.wall, self.counter = self.wall + 1, 0
            hlc = clock(self.wall, self.counter)
            fields = {
                "conversation_id": self.conversation,
                "role": "user",
                "content": f"message {self.counter}: the quick brown fox jumps over the lazy dog",
                "sender_user_id": self.user,
                "created_at": "2026-11-21T07:00:00.000Z",
            }
            out.append(
                {
                    "table": "messages",
                    "id": uuid7(),  # as the daemon mints them
                    "workspace_id": self.workspace,
                    "fields": fields,
                    "field_hlc": dict.fromkeys(fields, hlc),
                    "origin": "bench",
                }
            )
        return out


async def push_over_http(
    client: httpx.AsyncClient, rows: Rows, total: int, batch: int
) -> dict[str, Any]:
    batches = [json.dumps({"changes": rows.changes(batch)}) for _ in range(total // batch)]
    latencies = []
    started = time.perf_counter()
    for body in batches:
        t = time.perf_counter()
        response = await client.post("/rest/v1/rpc/sync_push", content=body)
        latencies.append(time.perf_counter() - t)
        response.raise_for_status()
        results = response.json()
        if len(results) != batch or any(r["status"] != "applied" for r in results):
            raise RuntimeError(f"unexpected push results: {results[:3]}")
    elapsed = time.perf_counter() - started
    return {
        "rows": len(batches) * batch,
        "rows_per_s": round(len(batches) * batch / elapsed),
        "batch_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "batch_max_ms": round(max(latencies) * 1000, 1),
    }


RPC_SQL = (  # the statement devcloud/rest/rpc.py builds for this call
    "SELECT to_json(sync_push)::text FROM jsonb_to_record($1::jsonb) AS _a(changes jsonb)"
    " CROSS JOIN LATERAL public.sync_push(changes => _a.changes) AS sync_push"
)


async def push_over_asyncpg(
    ctx: Devcloud, claims: dict[str, Any], rows: Rows, total: int, batch: int
) -> dict[str, Any]:
    """The same RPC as the HTTP path runs it (role, claims, one transaction), minus HTTP."""
    batches = [json.dumps({"changes": rows.changes(batch)}) for _ in range(total // batch)]
    started = time.perf_counter()
    for body in batches:
        async with ctx.transaction_as(claims) as conn:
            results = json.loads(await conn.fetchval(RPC_SQL, body))
        if len(results) != batch or any(r["status"] != "applied" for r in results):
            raise RuntimeError(f"unexpected push results: {results[:3]}")
    elapsed = time.perf_counter() - started
    return {"rows": len(batches) * batch, "rows_per_s": round(len(batches) * batch / elapsed)}


BASELINE_SQL = """
INSERT INTO public.messages
    (id, workspace_id, conversation_id, role, content, sender_user_id, created_at,
     field_hlc, hlc, origin)
SELECT * FROM json_to_recordset($1::json) AS r(
    id uuid, workspace_id uuid, conversation_id uuid, role text, content text,
    sender_user_id uuid, created_at timestamptz, field_hlc jsonb, hlc text, origin text)
"""


def flat(change: dict[str, Any]) -> dict[str, Any]:
    """The same row as plain columns: what a bulk insert that knows its table would send."""
    return {
        "id": change["id"],
        "workspace_id": change["workspace_id"],
        **change["fields"],
        "field_hlc": change["field_hlc"],
        "hlc": max(change["field_hlc"].values()),
        "origin": change["origin"],
    }


async def insert_with_asyncpg(
    conn: asyncpg.Connection, rows: Rows, total: int, batch: int
) -> dict[str, Any]:
    batches = [json.dumps([flat(c) for c in rows.changes(batch)]) for _ in range(total // batch)]
    started = time.perf_counter()
    for body in batches:
        async with conn.transaction():
            # the sync trigger's cheapest mode (stamps _txid/_seq/hlc only), as inside sync_push
            await conn.execute("SELECT set_config('syncd.in_push', 'on', true)")
            await conn.execute(BASELINE_SQL, body)
    elapsed = time.perf_counter() - started
    return {"rows": len(batches) * batch, "rows_per_s": round(len(batches) * batch / elapsed)}


async def seed(dc: RunningDevcloud) -> tuple[dict[str, Any], Rows]:
    """A member of an organisation, a workspace and a conversation; the member's claims."""
    user = await dc.create_user("bench@example.com", "bench-password-1", org="Bench")
    async with dc.ctx.pool.acquire() as conn:
        org = await conn.fetchval(
            "SELECT org_id::text FROM public.org_memberships WHERE user_id = $1", user
        )
        ws = await conn.fetchval(
            "INSERT INTO public.workspaces (org_id, name) VALUES ($1, 'bench') RETURNING id::text",
            org,
        )
        conv = await conn.fetchval(
            "INSERT INTO public.conversations (workspace_id) VALUES ($1) RETURNING id::text", ws
        )
    claims = {
        "sub": user,
        "role": "authenticated",
        "aud": "authenticated",
        "exp": int(time.time()) + 3600,
    }
    return claims, Rows(ws, conv, user)


async def disable_realtime_capture(dc: RunningDevcloud) -> None:
    """Turn off every trigger on the synced tables but the sync triggers (devcloud's realtime
    capture): to see what the SQL itself costs."""
    async with dc.ctx.pool.acquire() as conn:
        for table in ("workspaces", "conversations", "messages", "tasks"):
            names = await conn.fetch(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass"
                " AND NOT tgisinternal AND tgname NOT LIKE 'sync\\_row\\_stamp%'",
                f"public.{table}",
            )
            for name in names:
                await conn.execute(f'ALTER TABLE public.{table} DISABLE TRIGGER "{name["tgname"]}"')


class Subscriber:
    """A Realtime client subscribed to the messages' INSERTs; counts the changes it gets."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received = 0
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, dc: RunningDevcloud, token: str) -> Subscriber:
        url = f"ws://127.0.0.1:{dc.port}/realtime/v1/websocket?apikey={dc.anon_key}&vsn=1.0.0"
        ws = await websockets.connect(url, max_size=None)
        binding = {"event": "INSERT", "schema": "public", "table": "messages"}
        payload = {"config": {"postgres_changes": [binding]}, "access_token": token}
        await ws.send(_frame("realtime:bench", "phx_join", payload, "1"))
        while True:  # the join's reply, then the "subscribed" system message
            frame = json.loads(await ws.recv())
            if frame["payload"].get("status") == "error":
                raise RuntimeError(f"subscription failed: {frame}")
            if frame["event"] == "system":
                return cls(ws)

    async def _read(self) -> None:
        heartbeat = asyncio.get_running_loop().time() + 15
        async for text in self.ws:
            self.received += str(text).count('"postgres_changes"')
            if asyncio.get_running_loop().time() > heartbeat:
                heartbeat += 15
                await self.ws.send(_frame("phoenix", "heartbeat", {}, "hb"))

    async def close(self) -> None:
        self._task.cancel()
        await self.ws.close()


def _frame(topic: str, event: str, payload: Any, ref: str | None) -> str:
    frame = {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": "1"}
    return json.dumps(frame)


Runner = Callable[[int], Awaitable[dict[str, Any]]]


def auth_headers(dc: RunningDevcloud, claims: dict[str, Any]) -> dict[str, str]:
    return {
        "apikey": dc.anon_key,
        "Authorization": f"Bearer {sign(claims, dc.ctx.config.jwt_secret)}",
        "Content-Type": "application/json",
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median throughput, with every run's throughput listed."""
    ordered = sorted(runs, key=lambda r: r["rows_per_s"])
    median = {**ordered[len(ordered) // 2], "runs": [r["rows_per_s"] for r in runs]}
    if "db_cpu_us_per_row" in median:  # the median of its own: the rounds are noisy apart
        cpu = sorted(r["db_cpu_us_per_row"] for r in runs)
        median["db_cpu_us_per_row"] = cpu[len(cpu) // 2]
        median["db_cpu_runs"] = [r["db_cpu_us_per_row"] for r in runs]
    return median


async def measure(runners: dict[str, Runner], repeat: int, cpu: ServerCpu | None) -> dict[str, Any]:
    """Every runner at every batch size, ``repeat`` rounds, interleaved (so that each method
    sees the same machine load and table sizes); the median of each."""
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {b: [] for b in BATCH_SIZES} for name in runners
    }
    for _ in range(repeat):
        for name, runner in runners.items():
            for batch in BATCH_SIZES:
                before = cpu.seconds() if cpu else 0.0
                result = await runner(batch)
                if cpu:
                    used = cpu.seconds() - before
                    result["db_cpu_us_per_row"] = round(used / result["rows"] * 1e6, 1)
                runs[name][batch].append(result)
    return {
        name: {str(b): median_run(results) for b, results in by_batch.items()}
        for name, by_batch in runs.items()
    }


async def run(
    total: int, database_url: str | None, *, capture: bool, repeat: int, subscribe: bool
) -> dict[str, Any]:
    async with (
        scratch_database(database_url) as url,
        running_devcloud(DevcloudConfig(port=0), database_url=url) as dc,
    ):
        if not capture:
            await disable_realtime_capture(dc)
        claims, rows = await seed(dc)
        headers = auth_headers(dc, claims)
        subscriber = None
        if subscribe:
            subscriber = await Subscriber.open(dc, sign(claims, dc.ctx.config.jwt_secret))
        async with httpx.AsyncClient(base_url=dc.url, headers=headers, timeout=60) as client:
            conn = await asyncpg.connect(url)
            cpu = await ServerCpu.locate(conn)
            try:
                await push_over_http(client, rows, 2000, 500)  # warm-up: plans, caches
                await insert_with_asyncpg(conn, rows, 2000, 500)
                report = await measure(
                    {
                        "sync_push_http": lambda b: push_over_http(client, rows, total, b),
                        "sync_push_rpc_sql": lambda b: push_over_asyncpg(
                            dc.ctx, claims, rows, total, b
                        ),
                        "asyncpg": lambda b: insert_with_asyncpg(conn, rows, total, b),
                    },
                    repeat,
                    cpu,
                )
            finally:
                await conn.close()
                if subscriber is not None:
                    await subscriber.close()
    http, base = report["sync_push_http"], report["asyncpg"]
    return {
        "rows_per_run": total,
        "repeat": repeat,
        "realtime_capture": capture,
        "subscriber_received": None if subscriber is None else subscriber.received,
        **report,
        "ratio": {
            str(b): round(http[str(b)]["rows_per_s"] / base[str(b)]["rows_per_s"], 3)
            for b in BATCH_SIZES
        },
        "db_cpu_ratio": db_cpu_ratio(base, http),
        "target": {"rows_per_s": 25_000, "ratio": 0.25},
    }


def db_cpu_ratio(base: dict[str, Any], push: dict[str, Any]) -> dict[str, float] | None:
    """Database CPU per row of the asyncpg insert over that of sync_push (as "ratio": higher is
    better for sync_push), or None when the server's CPU was not measured."""
    if "db_cpu_us_per_row" not in base[str(BATCH_SIZES[0])]:
        return None
    return {
        str(b): round(base[str(b)]["db_cpu_us_per_row"] / push[str(b)]["db_cpu_us_per_row"], 3)
        for b in BATCH_SIZES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per batch size")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the median is shown)")
    parser.add_argument("--database-url", help="a PostgreSQL server (default: embedded)")
    parser.add_argument(
        "--without-realtime-capture",
        action="store_true",
        help="disable devcloud's realtime capture triggers (measures the SQL alone)",
    )
    parser.add_argument(
        "--with-subscriber",
        action="store_true",
        help="a Realtime client subscribes to the pushed messages throughout",
    )
    args = parser.parse_args()
    print_json_with_load(
        lambda: asyncio.run(
            run(
                args.rows,
                args.database_url,
                capture=not args.without_realtime_capture,
                repeat=max(1, args.repeat),
                subscribe=args.with_subscriber,
            )
        )
    )


if __name__ == "__main__":
    main()
