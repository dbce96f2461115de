"""Benchmark of realtime through the daemon (prints JSON; not a test).

    .venv/bin/python bench/realtime.py [--frames N] [--messages N] [--no-e2e] [--database-url URL]

- added: the latency the daemon adds between a realtime frame in and the UI event out. One
  process: a minimal Phoenix server (this file) pushes ``postgres_changes`` frames of new
  messages, one at a time, to the daemon's realtime side (``LiveSync`` + ``RealtimeConnection``
  on a real Store and a real BridgeServer); a raw WebSocket UI subscribed to ``message.created``
  receives the event. Timestamps: ``in`` when the daemon's socket reader hands the frame text to
  the Phoenix client, ``ui`` when the UI has the notification; and, in the same run, the raw
  WebSocket hop (server -> plain client on loopback). ``added = (ui - in) - hop`` (median hop):
  map, merge, one SQLite transaction, changelog, fan-out, writer wake-up. Budget: p50 <= 1 ms,
  p99 <= 5 ms. ``gc`` counts the collections during the measured frames and their longest
  pause per generation (a generation-2 pause, tens of ms, lands on a frame whole).
- e2e (unless ``--no-e2e``): PostgreSQL (embedded pgserver unless ``--database-url``), devcloud
  and two ``syncd run`` daemons as child processes, on loopback. ``a_to_b``: ``message.send`` on
  A until B's UI has ``message.created`` (A's push, change capture, Realtime and B), one
  message every 0.3 s: a lone write is pushed at once, while a write within 250 ms of the last
  push's start waits for that throttle (protocol.py; not measured here). ``cloud_to_b``: a row
  committed straight into the cloud's PostgreSQL until B's UI has it (change capture +
  Realtime + B).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from _common import (
    child,
    child_env,
    devcloud_process,
    percentile,
    print_json_with_load,
    run_on_daemon_loop,
    scratch_database,
    wait_until,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from daemon.config import BridgeSettings, StoreSettings
from daemon.store import Store
from daemon.store.ids import uuid7
from daemon.sync.live import LiveSync
from devcloud import _seed
from devcloud.context import DevcloudConfig
from ui_bridge.methods import build_method_table
from ui_bridge.server import BridgeServer

PASSWORD = "bench password 1"
WAIT_S = 60.0
#: Seconds between two a_to_b writes: more than the daemon's push throttle (250 ms).
PACE_S = 0.3
BUDGET_P50_MS, BUDGET_P99_MS = 1.0, 5.0


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 0.50) * 1000, 3),
        "p99": round(percentile(values, 0.99) * 1000, 3),
        "mean": round(statistics.fmean(values) * 1000, 3),
        "n": len(values),
    }


class GcPauses:
    """Collector pauses while active (``gc.callbacks``): per generation, how many, the longest."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._start))

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for gen in sorted({g for g, _ in self.pauses}):
            times = [t for g, t in self.pauses if g == gen]
            out[f"gen{gen}"] = {"n": len(times), "max_ms": round(max(times) * 1000, 3)}
        return out


# A minimal Realtime server ------------------------------------------------------------------


class FakeRealtime:
    """Accepts joins (with "Subscribed to PostgreSQL"), answers heartbeats, and pushes frames."""

    def __init__(self) -> None:
        self.daemon: ServerConnection | None = None
        self.plain: ServerConnection | None = None
        self.topic = ""
        self.subscribed = asyncio.Event()

    async def handle(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.startswith("/plain"):
            self.plain = ws
            await ws.wait_closed()
            return
        self.daemon = ws
        async for raw in ws:
            frame = json.loads(raw)
            topic, event, ref = frame["topic"], frame["event"], frame.get("ref")
            if event == "heartbeat" or event == "phx_join":
                response: dict[str, Any] = {}
                if event == "phx_join":
                    changes = frame["payload"]["config"]["postgres_changes"]
                    response = {"postgres_changes": [{**c, "id": i} for i, c in enumerate(changes)]}
                reply = {"status": "ok", "response": response}
                await ws.send(_frame(topic, "phx_reply", reply, ref))
            if event == "phx_join":
                self.topic = topic
                system = {"status": "ok", "message": "Subscribed to PostgreSQL",
                          "extension": "postgres_changes", "channel": topic}  # fmt: skip
                await ws.send(_frame(topic, "system", system, None))
                self.subscribed.set()


def _frame(topic: str, event: str, payload: Any, ref: str | None) -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref})


def message_change(topic: str, ws_id: str, conv_id: str, n: int) -> str:
    clock = f"{int(time.time() * 1000):013d}-{n % 1_000_000:06d}-bench-remote"
    now = "2026-08-21T12:00:00.000+00:00"
    record = {
        "id": uuid7(), "workspace_id": ws_id, "conversation_id": conv_id, "role": "user",
        "content": f"realtime message {n}", "sender_user_id": None, "sender_agent_id": None,
        "model_used": None, "created_at": now, "updated_at": now, "deleted_at": None,
        "hlc": clock, "field_hlc": {}, "origin": "bench-remote", "_txid": "1", "_seq": n,
    }  # fmt: skip
    data = {"schema": "public", "table": "messages", "commit_timestamp": now, "type": "INSERT",
            "columns": [], "record": record, "errors": None}  # fmt: skip
    return _frame(topic, "postgres_changes", {"ids": [2], "data": data}, None)


def fake_token() -> str:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": 4_000_000_000}).encode()).decode()
    return f"e30.{claims.rstrip('=')}.sig"


class UiListener:
    """A raw UI of the local API: the receipt time of each ``message.created`` by content."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: dict[str, float] = {}
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str, topics: list[str]) -> UiListener:
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                           compression=None)  # fmt: skip
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                  "params": {"topics": topics}}))  # fmt: skip
        await ws.recv()
        return cls(ws)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                at = time.perf_counter()
                message = orjson.loads(raw)
                if message.get("method") == "event":
                    self.received[message["params"]["data"]["content"]] = at

    async def close(self) -> None:
        self.task.cancel()
        await self.ws.close()


async def bench_added(frames: int, tmp: Path) -> dict[str, Any]:
    store = await Store.open(tmp / "added" / "syncd.db", StoreSettings())
    server = FakeRealtime()
    async with serve(server.handle, "127.0.0.1", 0, compression=None) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        ws = await store.workspaces.create(name="bench")
        conv = await store.conversations.create(workspace_id=ws["id"], name="c")

        async def token() -> str:
            return fake_token()

        live = LiveSync(
            url=f"http://127.0.0.1:{port}", apikey="anon", store=store, token_provider=token,
            catch_up=lambda _ws: None, identity=lambda: (None, None),
            require_login=lambda _op: None,
        )  # fmt: skip
        bridge = BridgeServer(BridgeSettings(port=0), store=store, data_dir=tmp / "added",
                              version="bench", methods=build_method_table())  # fmt: skip
        await bridge.start()
        live.publisher = bridge.hub.publish_live
        await live.add_workspace(ws["id"])
        live.activate()
        ui = plain = None
        try:
            await asyncio.wait_for(server.subscribed.wait(), WAIT_S)
            conn = live.connection
            assert conn is not None and server.daemon is not None
            frame_in: list[float] = []
            original = conn._client.receive_text  # instrument: when the reader has the frame

            def receive_text(text: str | bytes, now: float) -> None:
                if isinstance(text, str) and '"postgres_changes"' in text:
                    frame_in.append(time.perf_counter())
                original(text, now)

            conn._client.receive_text = receive_text  # type: ignore[method-assign]
            ui = await UiListener.open(bridge.url, bridge.token, ["message.created"])
            plain = await connect(f"ws://127.0.0.1:{port}/plain", compression=None)
            await wait_until(lambda: server.plain is not None, "the plain client")
            with GcPauses() as pauses:
                hop, total, in_to_ui = await _run_frames(server, ui, plain, ws["id"], conv["id"],
                                                         frames, frame_in)  # fmt: skip
        finally:
            if plain is not None:
                await plain.close()
            if ui is not None:
                await ui.close()
            await live.deactivate()
            await bridge.stop()
            await store.close()
    median_hop = statistics.median(hop)
    added = [max(0.0, v - median_hop) for v in in_to_ui]
    result = {
        "frames": frames,
        "hop_raw_websocket_ms": summary_ms(hop),
        "frame_sent_to_ui_ms": summary_ms(total),
        "frame_in_to_ui_ms": summary_ms(in_to_ui),
        "added_ms": summary_ms(added),
        "budget_ms": {"p50": BUDGET_P50_MS, "p99": BUDGET_P99_MS},
        "gc": pauses.summary(),
    }
    result["within_budget"] = (
        result["added_ms"]["p50"] <= BUDGET_P50_MS and result["added_ms"]["p99"] <= BUDGET_P99_MS
    )
    return result


async def _run_frames(
    server: FakeRealtime,
    ui: UiListener,
    plain: ClientConnection,
    ws_id: str,
    conv_id: str,
    frames: int,
    frame_in: list[float],
) -> tuple[list[float], list[float], list[float]]:
    assert server.daemon is not None and server.plain is not None
    hop: list[float] = []
    total: list[float] = []
    in_to_ui: list[float] = []
    for n in range(-50, frames):  # the first 50: warm-up, not counted
        text = message_change(server.topic, ws_id, conv_id, n + 50)
        content = f"realtime message {n + 50}"
        sent = time.perf_counter()
        await server.daemon.send(text)
        await wait_until(lambda c=content: c in ui.received, "the UI event")  # type: ignore[misc]
        got = ui.received[content]
        sent_plain = time.perf_counter()
        await server.plain.send(text)
        await plain.recv()
        if n >= 0:
            hop.append(time.perf_counter() - sent_plain)
            total.append(got - sent)
            in_to_ui.append(got - frame_in[-1])
    return hop, total, in_to_ui


# End to end ------------------------------------------------------------------------------------


class Api:
    """A JSON-RPC client of one daemon (raw, so that every reply is awaited in order)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ws: ClientConnection | None = None
        self.ids = 0

    async def open(self, proc: Any) -> Api:
        path = self.data_dir / "daemon.json"

        def published() -> bool:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return bool(json.loads(path.read_text())["pid"] == proc.pid)
            return False

        await wait_until(published, "the daemon")
        info = json.loads(path.read_text())
        self.info = info
        headers = {"Authorization": f"Bearer {info['token']}"}
        self.ws = await connect(info["url"], compression=None, additional_headers=headers)
        return self

    async def call(self, method: str, params: Any = None) -> Any:
        assert self.ws is not None
        self.ids += 1
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method,
                                       "params": params or {}}))  # fmt: skip
        while True:
            reply = orjson.loads(await self.ws.recv())
            if reply.get("id") == self.ids:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]


async def bench_e2e(messages: int, database_url: str | None, tmp: Path) -> dict[str, Any]:
    async with (
        scratch_database(database_url) as db_url,
        devcloud_process(db_url, tmp / "devcloud.log") as cloud_url,
    ):
        env = child_env(SYNCD_CLOUD_URL=cloud_url, SYNCD_CLOUD_ANON_KEY=DevcloudConfig().anon_key)
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await _seed.create_user(conn, "ada@bench.example", PASSWORD, org="Bench")
                await _seed.create_user(conn, "bob@bench.example", PASSWORD, org="Bench",
                                        role="member")  # fmt: skip
            a_dir, b_dir = tmp / "a", tmp / "b"
            run = ["-m", "daemon", "run", "--port", "0", "--data-dir"]
            async with (
                child([*run, str(a_dir)], tmp / "a.log", env) as a_proc,
                child([*run, str(b_dir)], tmp / "b.log", env) as b_proc,
            ):
                a, b = await Api(a_dir).open(a_proc), await Api(b_dir).open(b_proc)
                return await _e2e_measure(a, b, pool, messages, tmp)
        finally:
            await pool.close()


async def subscribed(api: Api, ws_id: str) -> bool:
    return ws_id in (await api.call("cloud.status"))["realtime"]["subscribed"]


async def _e2e_measure(
    a: Api, b: Api, pool: asyncpg.Pool, messages: int, tmp: Path
) -> dict[str, Any]:
    await a.call("cloud.login", {"email": "ada@bench.example", "password": PASSWORD})
    await b.call("cloud.login", {"email": "bob@bench.example", "password": PASSWORD})
    ws = await a.call("workspace.create", {"name": "bench"})
    conv = await a.call("conversation.create", {"workspace_id": ws["id"], "name": "c"})
    await a.call("cloud.link", {"workspace_id": ws["id"]})
    await a.call("sync.push")
    (tmp / "b-ws").mkdir()
    await b.call("cloud.link", {"cloud_workspace_id": ws["id"], "path": str(tmp / "b-ws")})
    await b.call("sync.pull")
    for api in (a, b):
        await wait_until(lambda api=api: subscribed(api, ws["id"]), "the realtime subscription")
    ui = await UiListener.open(b.info["url"], b.info["token"], ["message.created"])
    try:
        a_to_b: list[float] = []
        last = 0.0
        for n in range(messages):
            content = f"a to b {n}"
            if a_to_b:  # pace: the push throttle (250 ms from the last push) has passed
                await asyncio.sleep(max(0.0, last + PACE_S - time.perf_counter()))
            start = last = time.perf_counter()
            await a.call("message.send", {"conversation_id": conv["id"], "role": "user",
                                          "content": content})  # fmt: skip
            await wait_until(lambda c=content: c in ui.received, "A's message on B")  # type: ignore[misc]
            a_to_b.append(ui.received[content] - start)
        cloud_to_b: list[float] = []
        sql = (
            "INSERT INTO public.messages (id, workspace_id, conversation_id, role, content, hlc,"
            " field_hlc, origin) VALUES ($1, $2, $3, 'user', $4, $5, '{}', 'bench')"
        )
        async with pool.acquire() as conn:
            for n in range(messages):
                content = f"cloud to b {n}"
                clock = f"{int(time.time() * 1000):013d}-{n:06d}-bench-cloud"
                start = time.perf_counter()
                await conn.execute(sql, uuid.UUID(uuid7()), uuid.UUID(ws["id"]),
                                   uuid.UUID(conv["id"]), content, clock)  # fmt: skip
                await wait_until(lambda c=content: c in ui.received, "the row on B")  # type: ignore[misc]
                cloud_to_b.append(ui.received[content] - start)
    finally:
        await ui.close()
    return {
        "messages": messages,
        "a_to_b_ms": summary_ms(a_to_b),
        "cloud_to_b_ms": summary_ms(cloud_to_b),
        "note": f"a_to_b: one write every {PACE_S} s (lone writes are pushed at once)",
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-rt-") as root:
        tmp = Path(root)
        result: dict[str, Any] = {"added": await bench_added(args.frames, tmp)}
        if not args.no_e2e:
            result["e2e"] = await bench_e2e(args.messages, args.database_url, tmp)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("SYNCD_TEST_DATABASE_URL"))
    cli_args = parser.parse_args()
    print_json_with_load(lambda: run_on_daemon_loop(main(cli_args)))
