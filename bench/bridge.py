"""Benchmark of the local API (prints JSON; not a test).

    .venv/bin/python bench/bridge.py [--quick]

The daemon side (a real Store in a temporary directory, a real BridgeServer, a raw websockets
echo server) runs in this process; the clients run in a child process, as editors would.

- write: sequential ``message.send`` round trips (p50/p99) next to the two baselines measured
  in the same run: a raw websockets echo of a same-sized frame, and a raw sqlite3 transaction
  inserting one row plus one outbox entry (WAL, synchronous=NORMAL).
  Budget: p50 <= 2 x (echo p50 + transaction p50) and p99 <= 1 ms. The bench workspace is
  LINKED (a link row; no cloud is configured, nothing is pushed), so every measured write
  commits its row AND its outbox entry, as the budget means. ``write.unlinked``: the same
  sequential writes in an unlinked workspace (no outbox entry: local-only data; not budgeted).
- concurrent: 50 clients each sending messages one after the other. Budget: >= 15k writes/s.
  The 50 clients share ONE child process (websockets' asyncio client), which needs about as
  much CPU per write as the daemon on this 2-core machine: both CPU costs are reported, and
  the event loop thread's own while the clients write (``loop_thread_busy``: the share of one
  core it used; near 1 the loop thread is the limit).
- pipelined: ONE client keeping 64 ``message.send`` requests in flight (the local API runs a
  connection's requests concurrently, so they are group-committed); writes/s (no budget).
- fanout: 200 subscribed clients; the daemon commits messages; deliveries/s until every
  client has every event. Budget: >= 40k deliveries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from _common import print_json_with_load, process_cpu_s, run_on_daemon_loop, summary_us
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from daemon.config import BridgeSettings, StoreSettings
from daemon.store import Store
from ui_bridge.server import BridgeServer

CONTENT = "benchmark message body " * 4
BENCH_ORG = "01a1fe00-0000-7000-8000-000000000000"  # any id: no cloud is configured


# -- client side (child process) ----------------------------------------------------------------


def send_frame(conv_id: str, i: int) -> bytes:
    params = {"conversation_id": conv_id, "role": "user", "content": CONTENT}
    return orjson.dumps({"jsonrpc": "2.0", "method": "message.send", "params": params, "id": i})


async def sequential(url: str, headers: dict[str, str], frame: Any, n: int) -> list[float]:
    samples = []
    async with connect(url, additional_headers=headers, compression=None) as ws:
        for i in range(n + n // 10):  # the first tenth warms up
            payload = frame(i)
            start = time.perf_counter()
            await ws.send(payload, text=True)
            await ws.recv(decode=False)
            if i >= n // 10:
                samples.append(time.perf_counter() - start)
    return samples


async def client_write(cfg: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    n, conv = cfg["n"], cfg["conv_id"]
    echo = await sequential(cfg["echo_url"], {}, lambda i: send_frame(conv, i), n)
    api = await sequential(cfg["url"], headers, lambda i: send_frame(conv, i), n)
    ping = await sequential(cfg["url"], headers, ping_frame, n)
    local = cfg["unlinked_conv_id"]
    unlinked = await sequential(cfg["url"], headers, lambda i: send_frame(local, i), n)
    return {"echo": echo, "api": api, "ping": ping, "api_unlinked": unlinked}


def ping_frame(i: int) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "method": "daemon.ping", "id": i})


async def client_concurrent(cfg: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    clients = [
        await connect(cfg["url"], additional_headers=headers, compression=None)
        for _ in range(cfg["clients"])
    ]
    latencies: list[float] = []

    async def run(ws: Any, k: int) -> None:
        for i in range(cfg["per_client"]):
            start = time.perf_counter()
            await ws.send(send_frame(cfg["conv_id"], k * 1_000_000 + i), text=True)
            reply = orjson.loads(await ws.recv(decode=False))
            assert "result" in reply, reply
            latencies.append(time.perf_counter() - start)

    print("mark start", flush=True)  # the daemon's loop thread CPU is read at each mark
    cpu_before = process_cpu_s()
    start = time.perf_counter()
    await asyncio.gather(*(run(ws, k) for k, ws in enumerate(clients)))
    elapsed = time.perf_counter() - start
    cpu = process_cpu_s() - cpu_before
    print("mark stop", flush=True)
    await asyncio.gather(*(ws.close() for ws in clients))
    return {"elapsed": elapsed, "latencies": latencies, "client_cpu_s": cpu}


async def client_fanout(cfg: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    expected = cfg["events"]
    clients = [
        await connect(cfg["url"], additional_headers=headers, compression=None, max_queue=None)
        for _ in range(cfg["clients"])
    ]
    for ws in clients:
        await ws.send(
            b'{"jsonrpc":"2.0","method":"subscribe","params":{"topics":["message.*"]},"id":1}',
            text=True,
        )
        await ws.recv(decode=False)
    last = [0.0] * len(clients)

    async def count(k: int, ws: Any) -> None:
        for _ in range(expected):
            await ws.recv(decode=False)
        last[k] = time.monotonic()

    tasks = [asyncio.create_task(count(k, ws)) for k, ws in enumerate(clients)]
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.gather(*tasks)
    await asyncio.gather(*(ws.close() for ws in clients))
    return {"done": max(last)}


async def client_pipelined(cfg: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    total, window = cfg["writes"], cfg["window"]
    async with connect(cfg["url"], additional_headers=headers, compression=None) as ws:
        start = time.perf_counter()
        for i in range(min(window, total)):
            await ws.send(send_frame(cfg["conv_id"], i), text=True)
        sent = min(window, total)
        for _ in range(total):
            reply = orjson.loads(await ws.recv(decode=False))
            assert "result" in reply, reply
            if sent < total:
                await ws.send(send_frame(cfg["conv_id"], sent), text=True)
                sent += 1
        elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "writes": total, "window": window}


def child_main(mode: str, cfg: dict[str, Any]) -> None:
    run = {
        "write": client_write,
        "concurrent": client_concurrent,
        "pipelined": client_pipelined,
        "fanout": client_fanout,
    }[mode]
    print(json.dumps(asyncio.run(run(cfg))), flush=True)


# -- daemon side (this process) -----------------------------------------------------------------


async def spawn(mode: str, cfg: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        mode,
        json.dumps(cfg),
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 26,
    )


async def run_child(
    mode: str, cfg: dict[str, Any], marks: dict[str, float] | None = None
) -> dict[str, Any]:
    """Run a client child; its last line is its result. ``marks``: the CPU time of this
    (the event loop's) thread when the child printed each ``mark NAME`` line."""
    proc = await spawn(mode, cfg)
    assert proc.stdout is not None
    last = b""
    async for line in proc.stdout:
        if line.startswith(b"mark "):
            if marks is not None:
                marks[line[5:].decode().strip()] = time.thread_time()
        elif line.strip():
            last = line
    if await proc.wait() != 0:
        raise RuntimeError(f"client process failed ({mode})")
    return dict(json.loads(last))


async def store_direct(store: Store, conv_id: str, n: int) -> list[float]:
    """The same write awaited in-process, without the API (attribution only)."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await store.messages.create(conversation_id=conv_id, role="user", content=CONTENT)
        samples.append(time.perf_counter() - start)
    return samples


def raw_transactions(path: Path, n: int) -> list[float]:
    """One row + one outbox entry per transaction on a raw sqlite3 connection (the floor)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE messages (id TEXT PRIMARY KEY, workspace_id TEXT, conversation_id TEXT,"
        " role TEXT, content TEXT, created_at TEXT, updated_at TEXT, deleted_at TEXT,"
        " hlc TEXT, origin TEXT)"
    )
    db.execute(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, table_name TEXT, row_id TEXT,"
        " workspace_id TEXT, op TEXT, fields TEXT, field_hlc TEXT, hlc TEXT, origin TEXT,"
        " created_at TEXT)"
    )
    samples = []
    for i in range(n):
        row_id = f"{i:036d}"
        start = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO messages VALUES (?, 'w', 'c', 'user', ?, 't', 't', NULL, 'h', 'o')",
            (row_id, CONTENT),
        )
        db.execute(
            "INSERT INTO outbox (table_name, row_id, workspace_id, op, fields, field_hlc, hlc,"
            " origin, created_at) VALUES ('messages', ?, 'w', 'insert', ?, '{}', 'h', 'o', 't')",
            (row_id, CONTENT),
        )
        db.execute("COMMIT")
        samples.append(time.perf_counter() - start)
    db.close()
    return samples


async def echo_handler(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message, text=True)


async def fanout(
    server: BridgeServer, store: Store, conv_id: str, cfg: dict[str, Any]
) -> dict[str, Any]:
    proc = await spawn("fanout", cfg)
    assert proc.stdout is not None
    ready = json.loads(await proc.stdout.readline())
    assert ready["ready"]
    start = time.monotonic()
    pending = [
        store.messages.create(conversation_id=conv_id, role="user", content=CONTENT)
        for _ in range(cfg["events"])
    ]
    for i in range(0, len(pending), 50):  # 50 writers at a time: group commit
        await asyncio.gather(*pending[i : i + 50])
    committed = time.monotonic()
    out = json.loads((await proc.stdout.readline()).decode())
    await proc.wait()
    deliveries = cfg["events"] * cfg["clients"]
    elapsed = out["done"] - start
    return {
        "clients": cfg["clients"],
        "events": cfg["events"],
        "deliveries": deliveries,
        "commit_s": round(committed - start, 3),
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(deliveries / elapsed),
    }


async def main(quick: bool) -> dict[str, Any]:
    scale = 0.2 if quick else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store = await Store.open(data / "syncd.db", StoreSettings())
        server = BridgeServer(BridgeSettings(port=0), store=store, data_dir=data, version="bench")
        await server.start()
        echo = await serve(echo_handler, "127.0.0.1", 0, compression=None)
        echo_port = next(iter(echo.sockets)).getsockname()[1]
        try:
            ws = await store.workspaces.create(name="bench")
            await store.sync.link(workspace_id=ws["id"], org_id=BENCH_ORG, path=None)
            conv = await store.conversations.create(workspace_id=ws["id"], name="bench")
            local = await store.workspaces.create(name="bench-unlinked")
            local_conv = await store.conversations.create(workspace_id=local["id"], name="b")
            base = {"url": server.url, "token": server.token, "conv_id": conv["id"]}
            n = int(2000 * scale)
            echo_url = f"ws://127.0.0.1:{echo_port}/"
            write = await run_child(
                "write",
                {**base, "echo_url": echo_url, "n": n, "unlinked_conv_id": local_conv["id"]},
            )
            raw = raw_transactions(data / "raw.db", n)
            write["store"] = await store_direct(store, conv["id"], n)
            write["store_unlinked"] = await store_direct(store, local_conv["id"], n)
            cpu_before, marks = process_cpu_s(), {}
            concurrent = await run_child(
                "concurrent", {**base, "clients": 50, "per_client": int(200 * scale)}, marks
            )
            concurrent["server_cpu_s"] = process_cpu_s() - cpu_before
            concurrent["loop_cpu_s"] = marks["stop"] - marks["start"]
            pipelined = await run_child(
                "pipelined", {**base, "writes": int(10_000 * scale), "window": 64}
            )
            fan = await fanout(
                server, store, conv["id"], {**base, "clients": 200, "events": int(500 * scale)}
            )
        finally:
            echo.close()
            await echo.wait_closed()
            await server.stop()
            await store.close()
    result = report(write, raw, concurrent, fan)
    result["pipelined_1_client"] = {
        "window": pipelined["window"],
        "writes": pipelined["writes"],
        "writes_per_s": round(pipelined["writes"] / pipelined["elapsed"]),
    }
    return result


def report(
    write: dict[str, Any], raw: list[float], concurrent: dict[str, Any], fan: dict[str, Any]
) -> dict[str, Any]:
    api, echo, txn = summary_us(write["api"]), summary_us(write["echo"]), summary_us(raw)
    floor = echo["p50_us"] + txn["p50_us"]
    writes = len(concurrent["latencies"])
    per_s = writes / concurrent["elapsed"]
    loop_cpu = concurrent["loop_cpu_s"]
    return {
        "write": {
            "api": api,
            "baseline_echo": echo,
            "baseline_sqlite_txn": txn,
            "ratio_p50_to_baseline": round(api["p50_us"] / floor, 2),
            "attribution": {
                "api_daemon_ping": summary_us(write["ping"]),
                "store_create_in_process": summary_us(write["store"]),
            },
            "budget": {"ratio_p50_max": 2.0, "p99_us_max": 1000},
            "ok": api["p50_us"] <= 2 * floor and api["p99_us"] <= 1000,
            "unlinked": {  # the same writes in an unlinked workspace: no outbox entry
                "api": summary_us(write["api_unlinked"]),
                "store_create_in_process": summary_us(write["store_unlinked"]),
                "budget": None,
            },
        },
        "concurrent_50": {
            "writes": writes,
            "writes_per_s": round(per_s),
            "latency": summary_us(concurrent["latencies"]),
            "daemon_cpu_us_per_write": round(concurrent["server_cpu_s"] / writes * 1e6, 1),
            "client_cpu_us_per_write": round(concurrent["client_cpu_s"] / writes * 1e6, 1),
            # the event loop's thread alone (it runs the API and the inline group commits), and
            # the share of one core it used while the clients wrote: near 1, it is the limit
            "loop_thread_cpu_us_per_write": round(loop_cpu / writes * 1e6, 1),
            "loop_thread_busy": round(loop_cpu / concurrent["elapsed"], 2),
            "budget_writes_per_s": 15000,
            "ratio_to_budget": round(per_s / 15000, 2),
            "ok": per_s >= 15000,
        },
        "fanout_200": {
            **fan,
            "budget_deliveries_per_s": 40000,
            "ratio_to_budget": round(fan["deliveries_per_s"] / 40000, 2),
            "ok": fan["deliveries_per_s"] >= 40000,
        },
        "note": "2-core machine shared with other jobs: figures are noisy",
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], json.loads(sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the work (smoke run)")
    args = parser.parse_args()
    print_json_with_load(lambda: run_on_daemon_loop(main(args.quick)))
