"""supabase-js 2.119 (realtime-js, vsn 2.0.0 with binary broadcast frames) under node against
devcloud's Realtime server. Needs node ≥ 20.10 and ``npm ci`` in tests/interop/js."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devcloud.realtime.serializer import Frame
from devcloud.realtime.session import Connection
from tests.helpers import MS
from tests.interop import test_realtime
from tests.interop.test_realtime import Cloud

cloud = test_realtime.cloud  # the same fixture: uvicorn + Realtime on a fresh database

JS_DIR = Path(__file__).parent / "js"


class NodeClient:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []

    async def expect(
        self, kind: str, predicate: Callable[[Any], bool] = lambda _: True, **match: Any
    ) -> Any:
        """The data of the first line (seen or still to come) of ``kind`` that matches."""

        def wanted(item: dict[str, Any]) -> bool:
            data = item["data"]
            if item["kind"] != kind or not predicate(data):
                return False
            return all(isinstance(data, dict) and data.get(k) == v for k, v in match.items())

        for item in self.seen:
            if wanted(item):
                return item["data"]
        async with asyncio.timeout(10_000 * MS):
            while True:
                assert self.process.stdout is not None
                line = await self.process.stdout.readline()
                assert line, f"node exited before {kind} {match}; saw {self.seen}"
                self.seen.append(json.loads(line))
                if wanted(self.seen[-1]):
                    return self.seen[-1]["data"]


async def start_node(cloud: Cloud, token: str) -> NodeClient:
    node = shutil.which("node")
    assert node is not None, "node is required for the supabase-js interop test"
    assert (JS_DIR / "node_modules" / "@supabase" / "supabase-js").is_dir(), (
        "run `npm ci` in tests/interop/js first"
    )
    env = {
        **os.environ,
        "SUPABASE_URL": cloud.url,
        "SUPABASE_ANON_KEY": cloud.anon_key,
        "USER_TOKEN": token,
    }
    process = await asyncio.create_subprocess_exec(
        node, "--experimental-websocket", "--no-warnings", "realtime_client.mjs",
        cwd=JS_DIR, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return NodeClient(process)


async def test_supabase_js_postgres_changes_presence_and_binary_broadcast(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames: list[Frame] = []
    receive = Connection.receive

    async def recording_receive(self: Connection, frame: Frame, size: int = 0) -> None:
        frames.append(frame)
        await receive(self, frame, size)

    monkeypatch.setattr(Connection, "receive", recording_receive)
    client = await start_node(cloud, cloud.token("org-a"))
    try:
        await client.expect("status", status="SUBSCRIBED")
        await client.expect("system", message="Subscribed to PostgreSQL", status="ok")
        assert await client.expect("track") == "ok"
        assert await client.expect("send") == "ok"  # ack: the server replied to the kind-3 frame
        broadcast = await client.expect("broadcast")  # self: our kind-4 frame came back
        assert broadcast == {"type": "broadcast", "event": "cursor", "payload": {"x": 1}}
        (sent,) = [frame for frame in frames if frame.event == "broadcast"]
        assert sent.from_binary  # realtime-js sent it as a binary kind-3 frame
        # The first sync comes from presence_state (empty), then our own join diff.
        presence = await client.expect("presence", lambda state: "js-client" in state)
        (meta,) = presence["js-client"]
        assert meta["online_at"] == "2026-08-21T00:00:00Z" and meta["presence_ref"]

        await cloud.execute("INSERT INTO notes (org, title) VALUES ('org-b', 'not for js')")
        await cloud.execute("INSERT INTO notes (org, title, done) VALUES ('org-a', 'hi', true)")
        change = await client.expect("pg", eventType="INSERT")
        assert change["new"]["title"] == "hi" and change["new"]["done"] is True
        assert change["old"] == {} and change["errors"] is None
        assert change["schema"] == "public" and change["table"] == "notes"
        assert [i["data"]["new"]["title"] for i in client.seen if i["kind"] == "pg"] == ["hi"]

        assert client.process.stdin is not None
        client.process.stdin.write(b"finish\n")
        assert await client.expect("remove") == "ok"
        assert await asyncio.wait_for(client.process.wait(), 10_000 * MS) == 0
    finally:
        if client.process.returncode is None:
            client.process.kill()
            await client.process.wait()
