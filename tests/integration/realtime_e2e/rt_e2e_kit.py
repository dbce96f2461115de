"""Helpers for the end-to-end realtime tests (a module name no other test folder uses; this
folder has no ``__init__.py``, like tests/integration/sync whose harness it reuses).

``Lab``          tests/integration/sync/sync_kit.py's ``SyncLab`` (a devcloud subprocess and
                 ``syncd run`` daemons) with UI peers.
``UiPeer``       a UI attached to a daemon's local API over a raw WebSocket: it records every
                 ``event`` notification as it arrives (``at``: monotonic receipt time), the
                 ephemeral ones included (the Python client keeps only new seqs).
``linked_pair``  Ada's daemon A publishes a workspace with a conversation; Bob's daemon B
                 clones it; returns once both receive its changes through realtime and B's
                 catch-up pulls are over.
``insert_message_in_cloud``  a message written straight into the cloud's database (no daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from daemon.store.ids import uuid7
from tests.helpers import MS, wait_for
from tests.integration.sync.sync_kit import CloudProcess, DaemonProcess, SyncLab
from ui_bridge.client import RpcError

ADA = "ada@example.com"
BOB = "bob@example.com"
CALL_TIMEOUT = 30_000 * MS


class Lab(SyncLab):
    """tests/integration/sync's lab, plus the UI peers a test opens (closed first)."""

    def __init__(self, root: Path, database_url: str) -> None:
        super().__init__(root, database_url)
        self.peers: list[UiPeer] = []

    async def ui(self, daemon: DaemonProcess) -> UiPeer:
        peer = await UiPeer.open(daemon.data_dir)
        self.peers.append(peer)
        return peer

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()
        await super().close()


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() at receipt
    subscription: str
    seq: int
    topic: str
    data: dict[str, Any]
    ephemeral: bool


class UiPeer:
    """A raw JSON-RPC client of one daemon (see the module docstring)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[Received] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read(), name="ui-peer-reader")

    @classmethod
    async def open(cls, data_dir: Path) -> UiPeer:
        info = json.loads((data_dir / "daemon.json").read_text())
        headers = {"Authorization": f"Bearer {info['token']}"}
        ws = await connect(info["url"], additional_headers=headers, compression=None)
        return cls(ws)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                message = orjson.loads(raw)
                if message.get("method") == "event":
                    p = message["params"]
                    self.events.append(
                        Received(time.monotonic(), p["subscription"], p["seq"], p["topic"],
                                 p["data"], bool(p.get("ephemeral"))),
                    )  # fmt: skip
                elif (future := self._pending.pop(message.get("id"), None)) is not None:
                    future.set_result(message)

    async def call(self, method: str, params: Any = None) -> Any:
        req_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        body = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}}
        await self.ws.send(json.dumps(body))
        reply = await asyncio.wait_for(future, CALL_TIMEOUT)
        assert "error" not in reply, reply
        return reply["result"]

    async def subscribe(self, topics: list[str], since: int | None = None) -> str:
        params: dict[str, Any] = {"topics": topics}
        if since is not None:
            params["since"] = since
        return str((await self.call("subscribe", params))["subscription"])

    def of(self, topic: str, subscription: str | None = None) -> list[Received]:
        return [
            e for e in self.events if e.topic == topic and subscription in (None, e.subscription)
        ]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def realtime(daemon: DaemonProcess) -> dict[str, Any]:
    """``cloud.status``'s realtime part: ``{connected, subscribed: [workspace ids]}``."""
    return dict((await daemon.call("cloud.status"))["realtime"])


async def workspace_sync(daemon: DaemonProcess, ws_id: str) -> dict[str, Any]:
    status = await daemon.call("sync.status")
    return next(w for w in status["workspaces"] if w["workspace_id"] == ws_id)


async def wait_subscribed(daemon: DaemonProcess, ws_id: str, *, within: float) -> None:
    async def subscribed() -> bool:
        state = await realtime(daemon)
        return bool(state["connected"]) and ws_id in state["subscribed"]

    await wait_for(
        subscribed, timeout=within, interval=50 * MS, message=f"{daemon.name} subscribed"
    )


async def wait_idle(daemon: DaemonProcess, ws_id: str) -> None:
    async def idle() -> bool:
        status = await workspace_sync(daemon, ws_id)
        return status["state"] == "idle" and status["last_pull_at"] is not None

    await wait_for(idle, timeout=20_000 * MS, interval=50 * MS, message=f"{daemon.name} idle")


async def linked_pair(
    lab: Lab, cloud: CloudProcess
) -> tuple[DaemonProcess, DaemonProcess, str, str]:
    """See the module docstring; returns (a, b, workspace id, conversation id)."""
    await cloud.create_user(ADA, org="Acme")
    await cloud.create_user(BOB, org="Acme", role="member")
    a, b = await lab.daemon("a"), await lab.daemon("b")
    await a.login(ADA)
    await b.login(BOB)
    ws_id = await a.publish("notes")
    conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "general"})
    await a.push()
    await b.clone(ws_id, lab.root / "b-notes")
    for daemon in (a, b):
        await wait_subscribed(daemon, ws_id, within=20_000 * MS)
    await wait_for(lambda: has_conversation(b, conv["id"]), timeout=20_000 * MS)
    await wait_idle(b, ws_id)
    return a, b, ws_id, str(conv["id"])


async def has_conversation(daemon: DaemonProcess, conv_id: str) -> bool:
    try:
        await daemon.call("conversation.get", {"id": conv_id})
    except RpcError:
        return False
    return True


async def message_ids(daemon: DaemonProcess, conv_id: str) -> set[str]:
    return {m["id"] for m in await daemon.messages(conv_id)}


async def insert_message_in_cloud(
    cloud: CloudProcess, ws_id: str, conv_id: str, content: str
) -> str:
    """A message written straight into the cloud's PostgreSQL, as another writer would."""
    row_id = uuid7()
    clock = f"{int(time.time() * 1000):013d}-000000-cloud-writer"
    await cloud.fetch(
        "INSERT INTO public.messages (id, workspace_id, conversation_id, role, content, hlc,"
        " field_hlc, origin) VALUES ($1, $2, $3, 'user', $4, $5, '{}'::jsonb, 'cloud-writer')",
        uuid.UUID(row_id),
        uuid.UUID(ws_id),
        uuid.UUID(conv_id),
        content,
        clock,
    )
    return row_id
