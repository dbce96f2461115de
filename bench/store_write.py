"""Store write benchmark: latency of sequential writes and throughput of 50 concurrent writers
through the Store API, next to raw sqlite3 doing the same row + outbox + changelog transaction
on the same schema in the same run. Prints JSON. Not a test; figures are noisy on shared CPUs.
The workspace is LINKED (a link row; nothing is pushed), so each write commits its row AND its
outbox entry; ``store.sequential_unlinked``: the same sequential writes in an unlinked workspace
(no outbox entry: local-only data; not budgeted).

    .venv/bin/python bench/store_write.py [--writes 3000] [--writers 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from _common import print_json_with_load, run_on_daemon_loop, summary_us

from daemon.config import StoreSettings
from daemon.store import Store, migrate
from daemon.store.codec import iso_ms, now_ms
from daemon.store.ids import uuid7

BENCH_ORG = "01a1fe00-0000-7000-8000-000000000000"  # any id: no cloud is configured


def raw_setup(path: Path) -> tuple[sqlite3.Connection, str, str]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate.migrate(conn)
    ts = iso_ms(now_ms())
    ws, conv = uuid7(), uuid7()
    clock = f"{now_ms():013d}-000000-raw"
    conn.execute(
        "INSERT INTO workspaces (id, name, created_at, updated_at, hlc, origin)"
        " VALUES (?, 'w', ?, ?, ?, 'raw')",
        (ws, ts, ts, clock),
    )
    conn.execute(
        "INSERT INTO conversations (id, workspace_id, name, created_at, updated_at, hlc, origin)"
        " VALUES (?, ?, 'c', ?, ?, ?, 'raw')",
        (conv, ws, ts, ts, clock),
    )
    return conn, ws, conv


def raw_write(conn: sqlite3.Connection, ws: str, conv: str, i: int) -> None:
    """The same work a store write does: row + outbox + changelog in one transaction."""
    ms = now_ms()
    mid, ts, clock = uuid7(ms), iso_ms(ms), f"{ms:013d}-{i % 1000000:06d}-raw"
    row = {"id": mid, "workspace_id": ws, "conversation_id": conv, "role": "user",
           "content": f"message {i}", "created_at": ts, "updated_at": ts, "deleted_at": None,
           "hlc": clock, "origin": "raw"}  # fmt: skip
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO messages (id, workspace_id, conversation_id, role, content, created_at,"
        " updated_at, deleted_at, hlc, origin) VALUES (:id, :workspace_id, :conversation_id,"
        " :role, :content, :created_at, :updated_at, :deleted_at, :hlc, :origin)",
        row,
    )
    fields = {k: v for k, v in row.items() if k not in ("hlc", "origin")}
    conn.execute(
        "INSERT INTO outbox (table_name, row_id, workspace_id, op, fields, field_hlc, hlc,"
        " origin, created_at, attempts) VALUES ('messages', ?, ?, 'insert', ?, ?, ?, 'raw', ?, 0)",
        (
            mid,
            ws,
            orjson.dumps(fields).decode(),
            orjson.dumps(dict.fromkeys(fields, clock)).decode(),
            clock,
            ts,
        ),  # fmt: skip
    )
    conn.execute(
        "INSERT INTO changelog (topic, row_id, workspace_id, data, created_at)"
        " VALUES ('message.created', ?, ?, ?, ?)",
        (mid, ws, orjson.dumps(row).decode(), ts),
    )
    conn.execute("COMMIT")


def bench_raw(path: Path, writes: int) -> dict[str, Any]:
    conn, ws, conv = raw_setup(path)
    try:
        for i in range(200):  # warm up
            raw_write(conn, ws, conv, i)
        samples = []
        started = time.perf_counter()
        for i in range(writes):
            t0 = time.perf_counter()
            raw_write(conn, ws, conv, i)
            samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return {**summary_us(samples), "writes_per_s": round(writes / elapsed)}


async def sequential_writes(store: Store, conv: str, writes: int) -> list[float]:
    samples = []
    for i in range(writes):
        t0 = time.perf_counter()
        await store.messages.create(conversation_id=conv, role="user", content=f"message {i}")
        samples.append(time.perf_counter() - t0)
    return samples


async def bench_store(path: Path, writes: int, writers: int) -> dict[str, Any]:
    store = await Store.open(path, StoreSettings())
    try:
        ws = await store.workspaces.create(name="bench")
        await store.sync.link(workspace_id=ws["id"], org_id=BENCH_ORG, path=None)
        conv = (await store.conversations.create(workspace_id=ws["id"], name="c"))["id"]
        local = await store.workspaces.create(name="bench-unlinked")
        local_conv = (await store.conversations.create(workspace_id=local["id"], name="c"))["id"]
        for i in range(200):  # warm up
            await store.messages.create(conversation_id=conv, role="user", content=f"w{i}")
        sequential = await sequential_writes(store, conv, writes)
        unlinked = await sequential_writes(store, local_conv, writes)

        per_writer = max(1, writes * 2 // writers)
        concurrent: list[float] = []

        async def writer(n: int) -> None:
            for i in range(per_writer):
                t0 = time.perf_counter()
                await store.messages.create(conversation_id=conv, role="user", content=f"{n}:{i}")
                concurrent.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(writer(n) for n in range(writers)))
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return {
        "sequential": summary_us(sequential),
        "sequential_unlinked": summary_us(unlinked),
        "concurrent": {
            "writers": writers,
            "writes": per_writer * writers,
            "writes_per_s": round(per_writer * writers / elapsed),
            **summary_us(concurrent),
        },
    }


def measure(writes: int, writers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = bench_raw(Path(tmp) / "raw.db", writes)
        store = run_on_daemon_loop(bench_store(Path(tmp) / "store.db", writes, writers))
    return {
        "bench": "store_write",
        "synchronous": "NORMAL",
        "raw_sqlite3_row_outbox_changelog": raw,
        "store": store,
        "ratios": {
            "sequential_p50_vs_raw": round(store["sequential"]["p50_us"] / raw["p50_us"], 2),
            "sequential_p99_vs_raw": round(store["sequential"]["p99_us"] / raw["p99_us"], 2),
            "concurrent_writes_per_s_vs_raw_sequential": round(
                store["concurrent"]["writes_per_s"] / raw["writes_per_s"], 2
            ),
        },
        "budgets": {
            "sequential_p50_within_3x_raw": store["sequential"]["p50_us"] <= 3 * raw["p50_us"],
            "concurrent_at_least_15k_per_s": store["concurrent"]["writes_per_s"] >= 15_000,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--writers", type=int, default=50)
    args = parser.parse_args()
    print_json_with_load(lambda: measure(args.writes, args.writers))


if __name__ == "__main__":
    main()
