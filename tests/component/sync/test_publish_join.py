"""Publishing a workspace pushes its history BEFORE joining its realtime channel (service.py
``_join_when_pushed``): joined while pushing, every pushed row would come back as an echo.

Against the in-process devcloud (real HTTP, real Realtime socket, real PostgreSQL). A's HTTP
client goes through ``Gate``, an httpx transport in front of the real one that can hold
(``hold``) or refuse as a down cloud does (``refuse``: a connection error) the ``sync_push``
requests carrying messages, i.e. the history push, not the publish's own workspace row. A's
periodic pull is an hour away: what reaches A came through realtime or a catch-up pull."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import httpx
import pytest

from daemon.realtime.states import ChannelState
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, Device, MakeDevice, stored

ADA = "ada@example.com"
BOB = "bob@example.com"
HOUR = 3600.0
HISTORY = 600
WITHIN = 20_000 * MS


class Gate(httpx.AsyncBaseTransport):
    """The real transport, except for history pushes while ``mode`` is not ``open``."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.mode: Literal["open", "hold", "refuse"] = "open"
        self.opened = asyncio.Event()
        self.stopped = 0  # history pushes held or refused so far

    def open(self) -> None:
        self.mode = "open"
        self.opened.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        history = request.url.path.endswith("/rpc/sync_push") and b'"messages"' in request.content
        if history and self.mode == "refuse":
            self.stopped += 1
            raise httpx.ConnectError("connection refused", request=request)
        if history and self.mode == "hold":
            self.stopped += 1
            await self.opened.wait()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def gated_device(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> AsyncIterator[tuple[Device, Gate]]:
    """Ada's device A (logged in), its HTTP requests through a Gate."""
    gate = Gate()
    device = await make_device("a", gate, pull_interval_s=HOUR, push_limit=100)
    await devcloud.create_user(ADA, PASSWORD, org="Acme")
    await devcloud.create_user(BOB, PASSWORD, org="Acme", role="member")
    await device.cloud.login(ADA, PASSWORD)
    yield device, gate


async def history(device: Device, rows: int = HISTORY) -> tuple[str, str]:
    """A local workspace with a conversation of ``rows`` messages: (workspace, conversation)."""
    ws = await device.store.workspaces.create(name="notes")
    conv = await device.store.conversations.create(workspace_id=ws["id"], name="chat")
    for n in range(rows):
        await device.store.messages.create(
            conversation_id=conv["id"], role="user", content=f"history {n}"
        )
    return ws["id"], conv["id"]


async def publish_held(a: Device, gate: Gate, rows: int = HISTORY) -> tuple[str, str]:
    """A publishes a workspace of ``rows`` messages; returns once its history push is held."""
    ws_id, conv_id = await history(a, rows)
    gate.mode = "hold"
    await a.cloud.link(workspace_id=ws_id)
    await wait_for(lambda: gate.stopped > 0, timeout=WITHIN, message="the history push")
    return ws_id, conv_id


def channel(device: Device, ws_id: str) -> ChannelState:
    conn = device.cloud.live.connection
    return ChannelState.CLOSED if conn is None else conn.channel_state(ws_id)


def subscribed(device: Device, ws_id: str) -> bool:
    return ws_id in device.cloud.live.status()["subscribed"]


async def cloud_messages(devcloud: RunningDevcloud, ws_id: str) -> int:
    async with devcloud.ctx.pool.acquire() as conn:
        sql = "SELECT count(*) FROM public.messages WHERE workspace_id = $1::uuid"
        return int(await conn.fetchval(sql, ws_id))


async def has_message(device: Device, conv_id: str, content: str) -> bool:
    page = await device.store.messages.list(conversation_id=conv_id, limit=1000)
    items = list(page.items)
    while page.next_cursor is not None:
        page = await device.store.messages.list(
            conversation_id=conv_id, after=page.next_cursor, limit=1000
        )
        items.extend(page.items)
    return any(m["content"] == content for m in items)


async def clone(bob: Device, ws_id: str, tmp_path: Path) -> None:
    await bob.cloud.login(BOB, PASSWORD)
    (tmp_path / "b-notes").mkdir()
    await bob.cloud.link(cloud_workspace_id=ws_id, path=str(tmp_path / "b-notes"))
    await wait_for(lambda: subscribed(bob, ws_id), timeout=WITHIN, message="B subscribed")
    # Subscribed is not pulled: the workspace row arrives with B's first (catch-up) pull.
    found = bob.store.workspaces.get
    await wait_for(lambda: stored(found, ws_id), timeout=WITHIN, message="B's first pull")


async def test_the_channel_is_joined_once_the_history_is_pushed_then_changes_arrive(
    gated_device: tuple[Device, Gate],
    make_device: MakeDevice,
    devcloud: RunningDevcloud,
    tmp_path: Path,
) -> None:
    a, gate = gated_device
    ws_id, conv_id = await publish_held(a, gate)
    # The history push is in flight: A has not joined the workspace's channel.
    assert a.cloud.live.connection is not None and a.cloud.live.connection.is_connected
    assert channel(a, ws_id) is ChannelState.CLOSED
    assert not subscribed(a, ws_id)
    gate.open()
    await wait_for(lambda: subscribed(a, ws_id), timeout=WITHIN, message="A subscribed")
    assert await cloud_messages(devcloud, ws_id) == HISTORY  # pushed before the join
    assert (await a.cloud.sync_status())["outbox"] == 0
    # Joined: a change B makes reaches A through realtime (A's periodic pull is an hour away).
    b = await make_device("b", pull_interval_s=HOUR)
    await clone(b, ws_id, tmp_path)
    await wait_for(lambda: has_message(b, conv_id, "history 0"), timeout=WITHIN)
    await b.store.messages.create(conversation_id=conv_id, role="user", content="from bob")
    await b.cloud.sync_now("push")
    await wait_for(lambda: has_message(a, conv_id, "from bob"), timeout=WITHIN)


async def test_a_write_made_elsewhere_during_the_publish_reaches_the_publisher(
    gated_device: tuple[Device, Gate],
    make_device: MakeDevice,
    devcloud: RunningDevcloud,
    tmp_path: Path,
) -> None:
    a, gate = gated_device
    ws_id, conv_id = await publish_held(a, gate, rows=150)
    # While A's history push waits, B clones the (new) cloud workspace and writes in it.
    b = await make_device("b", pull_interval_s=HOUR)
    await clone(b, ws_id, tmp_path)
    other = await b.store.conversations.create(workspace_id=ws_id, name="bob's")
    await b.store.messages.create(conversation_id=other["id"], role="user", content="early bird")
    result = await b.cloud.sync_now("push")
    assert result["error"] is None and result["applied"] == 2
    assert channel(a, ws_id) is ChannelState.CLOSED  # A missed it on realtime: not joined yet
    gate.open()
    # The catch-up pull after A's SUBSCRIBED brings it (A's periodic pull is an hour away).
    await wait_for(lambda: has_message(a, other["id"], "early bird"), timeout=WITHIN)
    assert await cloud_messages(devcloud, ws_id) == 150 + 1
    await wait_for(lambda: has_message(b, conv_id, "history 149"), timeout=WITHIN)


async def test_a_publish_while_the_cloud_is_down_still_joins_and_syncs_once_it_is_back(
    gated_device: tuple[Device, Gate], devcloud: RunningDevcloud
) -> None:
    a, gate = gated_device
    ws_id, _ = await history(a, rows=150)
    gate.mode = "refuse"
    await a.cloud.link(workspace_id=ws_id)
    # The history push fails (and is retried): the workspace joins anyway.
    await wait_for(lambda: subscribed(a, ws_id), timeout=WITHIN, message="A subscribed")
    assert gate.stopped > 0 and gate.mode == "refuse"
    assert await cloud_messages(devcloud, ws_id) == 0
    status = await a.cloud.sync_status()
    assert status["outbox"] > 0
    await wait_for(lambda: gate.stopped > 1, timeout=WITHIN, message="a retry of the push")
    gate.open()
    await wait_for(
        lambda: cloud_messages_are(devcloud, ws_id, 150), timeout=WITHIN, message="the history"
    )
    await wait_for(lambda: outbox_empty(a), timeout=WITHIN, message="A's outbox to drain")
    assert subscribed(a, ws_id)


async def cloud_messages_are(devcloud: RunningDevcloud, ws_id: str, rows: int) -> bool:
    return await cloud_messages(devcloud, ws_id) == rows


async def outbox_empty(device: Device) -> bool:
    return (await device.cloud.sync_status())["outbox"] == 0
