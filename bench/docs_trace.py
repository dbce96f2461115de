"""Benchmark B4: a real editing trace through ``doc.update`` (prints JSON; not a test).

    .venv/bin/python bench/docs_trace.py [TRACE] [--limit N] [--connections K] [--window W]
                                         [--compact-every N]

TRACE defaults to ``../shared/editing-traces/automerge-paper.ascii.json.gz`` (relative to the
repository): the josephg/editing-traces format, ``{"startContent", "endContent", "txns":
[{"patches": [[pos, delete_count, insert_text], ...]}]}``.

The daemon side (a real Store in a temporary directory and a real BridgeServer) runs in this
process; the editor runs in a child process, as an editor would. The editor replays the trace
into its own pycrdt Doc, one transaction per edit (pycrdt is quadratic when many edits share one
transaction), keeping each edit's update as encoded once by the transaction; then it sends every
update as one ``doc.update`` over K real WebSocket connections (edit i on connection i mod K),
pipelined with at most W requests in flight in total. The local API runs a connection's requests
concurrently, so pipelined updates are group-committed together. The daemon answers a request
once its update is committed; compaction runs as configured (``--compact-every``).

K defaults to 1: an editor is one Yjs client on one connection, whose updates arrive in order.
With K > 1 one client's updates arrive interleaved from K connections that run at their own
pace, far out of order: a stress test of the daemon's pending-update handling (each update
waits for its predecessors), not the B4 scenario; report it as such. Figures:

- ``daemon``: edits/s from the first send to the last acknowledgement, and the final
  ``doc.get`` text checked against the trace's ``endContent``; CPU per edit of the daemon side
  (this process, every thread) and of the editor (the child, while sending);
- ``plain_pycrdt``: in the same run, the editor's own edits/s (editing + encoding updates) and a
  fresh pycrdt Doc applying the same updates (edits/s), and the ratios.

Budget: >= 15k edits/s through the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from _common import ROOT, print_json_with_load, process_cpu_s, run_on_daemon_loop
from pycrdt import Doc, Text, TransactionEvent
from websockets.asyncio.client import ClientConnection, connect

from daemon.config import BridgeSettings, StoreSettings
from daemon.store import Store
from ui_bridge.server import BridgeServer

DEFAULT_TRACE = ROOT / ".." / "shared" / "editing-traces" / "automerge-paper.ascii.json.gz"
BUDGET = 15_000


# -- editor side (child process) ----------------------------------------------------------------


def load_trace(path: str, limit: int | None) -> tuple[list[tuple[int, int, str]], str | None]:
    """The trace's patches in order, and its final text (None when cut by ``limit``)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        trace = json.load(f)
    if trace.get("startContent"):
        raise SystemExit("traces with a startContent are not supported")
    patches = [(p[0], p[1], p[2]) for txn in trace["txns"] for p in txn["patches"]]
    if limit is not None and limit < len(patches):
        return patches[:limit], None
    return patches, trace["endContent"]


def edit_locally(patches: list[tuple[int, int, str]]) -> tuple[list[bytes], float, str]:
    """Replay the patches in a pycrdt Doc, one transaction per edit; each edit's update."""
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    updates: list[bytes] = []

    def keep(event: TransactionEvent) -> None:
        updates.append(event.update)

    doc.observe(keep)
    start = time.perf_counter()
    for pos, deleted, inserted in patches:
        with doc.transaction():
            if deleted:
                del text[pos : pos + deleted]
            if inserted:
                text.insert(pos, inserted)
    return updates, time.perf_counter() - start, str(text)


def apply_plainly(updates: list[bytes]) -> tuple[float, str]:
    """A fresh pycrdt Doc applying every update, one at a time (what the daemon does too)."""
    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    start = time.perf_counter()
    for update in updates:
        doc.apply_update(update)
    return time.perf_counter() - start, str(text)


async def send_all(
    cfg: dict[str, Any], frames: list[bytes], connections: list[ClientConnection]
) -> float:
    """Send ``frames`` (frame i on connection i mod K) pipelined; seconds until the last ack."""
    k = len(connections)
    per_conn = max(1, cfg["window"] // k)

    async def run(index: int, ws: ClientConnection) -> None:
        mine = frames[index::k]
        room = asyncio.Semaphore(per_conn)

        async def receive() -> None:
            for _ in range(len(mine)):
                reply = orjson.loads(await ws.recv(decode=False))
                if "result" not in reply:
                    raise RuntimeError(f"doc.update failed: {reply}")
                room.release()

        receiver = asyncio.create_task(receive())
        for frame in mine:
            await room.acquire()
            await ws.send(frame, text=True)
        await receiver

    start = time.perf_counter()
    await asyncio.gather(*(run(i, ws) for i, ws in enumerate(connections)))
    return time.perf_counter() - start


async def editor(cfg: dict[str, Any]) -> dict[str, Any]:
    patches, end_text = load_trace(cfg["trace"], cfg["limit"])
    updates, edit_s, local_text = edit_locally(patches)
    if end_text is not None and local_text != end_text:
        raise RuntimeError("pycrdt replay of the trace does not give its endContent")
    apply_s, applied_text = apply_plainly(updates)
    assert applied_text == local_text
    frames = [
        orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "doc.update",
                "params": {"id": cfg["doc_id"], "update": _b64(update)},
                "id": i,
            }
        )
        for i, update in enumerate(updates)
    ]
    headers = {"Authorization": f"Bearer {cfg['token']}"}
    connections = [
        await connect(cfg["url"], additional_headers=headers, compression=None, max_queue=None)
        for _ in range(cfg["connections"])
    ]
    cpu_before = process_cpu_s()
    try:
        daemon_s = await send_all(cfg, frames, connections)
        ws = connections[0]
        await ws.send(
            orjson.dumps(
                {"jsonrpc": "2.0", "method": "doc.get", "params": {"id": cfg["doc_id"]}, "id": -1}
            ),
            text=True,
        )
        final = orjson.loads(await ws.recv(decode=False))["result"]
    finally:
        await asyncio.gather(*(ws.close() for ws in connections))
    return {
        "edits": len(updates),
        "update_bytes_mean": round(sum(map(len, updates)) / len(updates), 1),
        "edit_s": edit_s,
        "apply_s": apply_s,
        "daemon_s": daemon_s,
        "editor_cpu_s": process_cpu_s() - cpu_before,
        "text_matches": final["text"] == local_text,
        "text_sha256": hashlib.sha256(local_text.encode()).hexdigest(),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- daemon side (this process) -----------------------------------------------------------------


async def run_editor(cfg: dict[str, Any]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", json.dumps(cfg), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError("the editor process failed")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        store = await Store.open(data / "syncd.db", StoreSettings())
        if args.compact_every is not None:
            store.documents.compact_every = args.compact_every
        server = BridgeServer(BridgeSettings(port=0), store=store, data_dir=data, version="bench")
        await server.start()
        try:
            workspace = await store.workspaces.create(name="bench")
            doc = await store.documents.open(workspace_id=workspace["id"], name="B4")
            cfg = {
                "url": server.url,
                "token": server.token,
                "doc_id": doc["id"],
                "trace": str(args.trace),
                "limit": args.limit,
                "connections": args.connections,
                "window": args.window,
            }
            cpu_before = process_cpu_s()
            out = await run_editor(cfg)
            daemon_cpu = process_cpu_s() - cpu_before
            stored = await store.documents.load(doc["id"])
            stored_text = str(stored.get("content", type=Text))
        finally:
            await server.stop()
            await store.close()
    return report(args, out, daemon_cpu, stored_text)


def report(
    args: argparse.Namespace, out: dict[str, Any], daemon_cpu: float, stored_text: str
) -> dict[str, Any]:
    edits = out["edits"]
    daemon_rate = edits / out["daemon_s"]
    apply_rate = edits / out["apply_s"]
    return {
        "trace": Path(args.trace).name,
        "edits": edits,
        "update_bytes_mean": out["update_bytes_mean"],
        "daemon": {
            "connections": args.connections,
            "window": args.window,
            "compact_every": args.compact_every,
            "edits_per_s": round(daemon_rate),
            "elapsed_s": round(out["daemon_s"], 3),
            "daemon_cpu_us_per_edit": round(daemon_cpu / edits * 1e6, 1),
            "editor_cpu_us_per_edit": round(out["editor_cpu_s"] / edits * 1e6, 1),
            "final_text_matches": out["text_matches"],
            "stored_text_matches": hashlib.sha256(stored_text.encode()).hexdigest()
            == out["text_sha256"],
        },
        "plain_pycrdt": {
            "local_edits_per_s": round(edits / out["edit_s"]),
            "apply_updates_per_s": round(apply_rate),
        },
        "ratio_daemon_to_plain_apply": round(daemon_rate / apply_rate, 4),
        "ratio_daemon_to_plain_local_edits": round(daemon_rate / (edits / out["edit_s"]), 3),
        "budget_edits_per_s": BUDGET,
        "ratio_to_budget": round(daemon_rate / BUDGET, 2),
        "ok": daemon_rate >= BUDGET and out["text_matches"],
        "note": "2-core machine shared with other jobs: figures are noisy",
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(editor(json.loads(sys.argv[2])))), flush=True)
        sys.exit(0)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("trace", nargs="?", default=str(DEFAULT_TRACE), help="trace (.json.gz)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N edits")
    parser.add_argument("--connections", type=int, default=1, help="WebSocket connections")
    parser.add_argument("--window", type=int, default=256, help="requests in flight in total")
    parser.add_argument(
        "--compact-every", type=int, default=None, help="compaction threshold (attribution)"
    )
    args = parser.parse_args()
    print_json_with_load(lambda: run_on_daemon_loop(main(args)))
