"""A real Store in tmp_path and a real BridgeServer on a free port, plus a raw JSON-RPC client."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from daemon.config import BridgeSettings, StoreSettings
from daemon.store import Store
from tests.helpers import MS
from ui_bridge.methods import Method, MethodTable, build_method_table
from ui_bridge.server import BridgeServer

RECV_TIMEOUT = 5_000 * MS


class Gate:
    """A method ``gate`` that waits until the test opens the gate."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0
        self.cancelled = 0

    async def handler(self, ctx: Any, params: dict[str, Any]) -> Any:
        self.entered += 1
        try:
            await self.open.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "opened"

    def table(self) -> MethodTable:
        table = build_method_table()
        table.add(Method("gate", self.handler))
        return table


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    g = Gate()
    yield g
    g.open.set()


class Rpc:
    """A thin JSON-RPC peer over one real websockets connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.events: collections.deque[dict[str, Any]] = collections.deque()

    async def send(self, message: Any) -> None:
        if isinstance(message, bytes | str):
            await self.ws.send(message)
        else:
            await self.ws.send(json.dumps(message))  # json: can send what orjson refuses

    async def recv(self, within: float = RECV_TIMEOUT) -> Any:
        raw = await asyncio.wait_for(self.ws.recv(), within)
        return orjson.loads(raw)

    async def request(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a request and return its response object (events arriving first are skipped)."""
        req_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params is not None:
            message["params"] = params
        await self.send(message)
        while True:
            reply = await self.recv()
            if isinstance(reply, dict) and reply.get("id") == req_id:
                return reply
            if isinstance(reply, dict) and reply.get("method") == "event":
                self.events.append(reply["params"])  # events may come before the reply

    async def call(self, method: str, params: Any = None) -> Any:
        reply = await self.request(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    async def next_event(self) -> dict[str, Any]:
        if self.events:
            return self.events.popleft()
        while True:
            message = await self.recv()
            if isinstance(message, dict) and message.get("method") == "event":
                return message["params"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "syncd.db", StoreSettings())
    yield opened
    await opened.close()


MakeBridge = Callable[..., Awaitable[BridgeServer]]


@pytest.fixture
async def make_bridge(store: Store, tmp_path: Path) -> AsyncIterator[MakeBridge]:
    servers: list[BridgeServer] = []

    async def make(methods: MethodTable | None = None, **settings: Any) -> BridgeServer:
        server = BridgeServer(
            BridgeSettings(port=0, **settings),
            store=store,
            data_dir=tmp_path,
            version="0.0.0-test",
            methods=methods,
        )
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def bridge(make_bridge: MakeBridge) -> BridgeServer:
    return await make_bridge()


def auth(server: BridgeServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


@pytest.fixture
async def open_rpc() -> AsyncIterator[Callable[[BridgeServer], Awaitable[Rpc]]]:
    connections: list[ClientConnection] = []

    async def open_(server: BridgeServer, **kwargs: Any) -> Rpc:
        ws = await connect(server.url, additional_headers=auth(server), compression=None, **kwargs)
        connections.append(ws)
        return Rpc(ws)

    yield open_
    for ws in connections:
        await ws.close()


@pytest.fixture
async def rpc(bridge: BridgeServer, open_rpc: Callable[[BridgeServer], Awaitable[Rpc]]) -> Rpc:
    return await open_rpc(bridge)
