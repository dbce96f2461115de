"""The Python client's life around its daemon: a daemon that dies mid-handshake, a client or
stream closed while calls wait, and what a caller is told when the connection ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import orjson
import pytest

from daemon.app import DataDirLock
from daemon.config import BridgeSettings, StoreSettings, load_settings
from daemon.store import Store
from tests.helpers import MS, wait_for
from ui_bridge import cli_commands
from ui_bridge.client import ConnectionLost, DaemonNotAnswering, Event, RefetchRequired, connect
from ui_bridge.discovery import DiscoveryInfo, write_discovery
from ui_bridge.server import BridgeServer

from .conftest import MakeBridge

#: Long enough that waiting for it would fail the test: a call that cannot succeed must not.
PATIENT = 60_000 * MS
PROMPT = 2_000 * MS


async def next_event(stream: object) -> Event:
    return await asyncio.wait_for(anext(stream), 5_000 * MS)  # type: ignore[call-overload]


class HandshakeDropper:
    """A port that accepts TCP connections and closes them at once: a daemon killed while a
    client's WebSocket handshake was under way."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def advertise(self, data_dir: Path, port: int) -> None:
        url = f"ws://127.0.0.1:{port}/"
        write_discovery(data_dir, DiscoveryInfo(os.getpid(), port, url, "t", "0", "x"))


@pytest.fixture
async def short_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose changelog keeps 10 entries."""
    store = await Store.open(tmp_path / "syncd.db", StoreSettings(changelog_retain=10))
    yield store
    await store.close()


@pytest.fixture
async def dropper() -> AsyncIterator[HandshakeDropper]:
    dropper = HandshakeDropper()
    yield dropper
    if dropper.server is not None:
        dropper.server.close()
        await dropper.server.wait_closed()


async def test_a_daemon_that_drops_the_handshake_does_not_answer(
    tmp_path: Path, dropper: HandshakeDropper
) -> None:
    dropper.advertise(tmp_path, await dropper.start())
    lock = DataDirLock.acquire(tmp_path)  # this process is the daemon
    try:
        with pytest.raises(DaemonNotAnswering) as info:  # not websockets' InvalidMessage
            await connect(data_dir=tmp_path, reconnect=False)
        assert info.value.pid == os.getpid() and "does not answer" in str(info.value)
    finally:
        lock.release()


async def test_a_reconnect_that_meets_a_dropped_handshake_keeps_trying(
    tmp_path: Path, store: Store, make_bridge: MakeBridge, dropper: HandshakeDropper
) -> None:
    server = await make_bridge()
    client = await connect(data_dir=tmp_path)
    try:
        stream = await client.subscribe(["workspace.*"])
        await server.stop()
        dropper.advertise(tmp_path, await dropper.start())
        await wait_for(lambda: dropper.accepted >= 2, message="reconnect attempts")
        await make_bridge()  # the daemon is back: the client must still find it
        created = await store.workspaces.create(name="after the crash")
        assert (await next_event(stream)).data == created
        assert await client.call("daemon.ping") == {"pong": True}
    finally:
        await client.close()


async def test_a_call_on_a_closed_client_fails_at_once(bridge: object, tmp_path: Path) -> None:
    client = await connect(data_dir=tmp_path, connect_timeout=PATIENT)
    await client.close()
    with pytest.raises(ConnectionLost, match="closed"):
        await asyncio.wait_for(client.call("daemon.ping"), PROMPT)


async def test_a_call_after_a_lost_connection_without_reconnect_fails_at_once(
    tmp_path: Path, make_bridge: MakeBridge
) -> None:
    server = await make_bridge()
    client = await connect(data_dir=tmp_path, reconnect=False, connect_timeout=PATIENT)
    try:
        stream = await client.subscribe(["**"])
        await server.stop()
        with pytest.raises(ConnectionLost):  # the stream says the connection is gone
            await next_event(stream)
        with pytest.raises(ConnectionLost):  # and a call does not wait for one
            await asyncio.wait_for(client.call("daemon.ping"), PROMPT)
    finally:
        await client.close()


async def test_a_stream_left_after_its_client_closed_ends_at_once(
    bridge: object, tmp_path: Path
) -> None:
    client = await connect(data_dir=tmp_path, connect_timeout=PATIENT)
    stream = await client.subscribe(["**"])
    iterating = asyncio.Event()

    async def read_all() -> list[Event]:
        async with stream:  # its exit unsubscribes: there is no connection to do it on
            iterating.set()
            return [event async for event in stream]

    reader = asyncio.create_task(read_all())
    await iterating.wait()
    await client.close()
    assert await asyncio.wait_for(reader, PROMPT) == []


async def test_a_request_over_the_frame_limit_says_so(
    tmp_path: Path, make_bridge: MakeBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    await make_bridge(max_frame_bytes=4096)
    async with await connect(data_dir=tmp_path) as client:
        with pytest.raises(ConnectionLost) as info:
            await client.call("daemon.ping", {"pad": "x" * 5000})
        assert "1009" in str(info.value) and "exceeds limit of 4096 bytes" in str(info.value)
        assert await client.call("daemon.ping") == {"pong": True}  # it reconnected
    settings = load_settings(data_dir=tmp_path, environ={})
    params = orjson.dumps({"pad": "x" * 5000}).decode()
    assert await asyncio.to_thread(cli_commands.call, settings, "daemon.ping", params) == 1
    err = capsys.readouterr().err
    assert err.startswith("syncd: connection to the daemon lost: the daemon closed it with 1009")
    assert err.count("connection to the daemon lost") == 1


def test_a_daemon_without_its_discovery_file_is_named_by_its_pid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = DataDirLock.acquire(tmp_path)  # a daemon starting: the lock, no daemon.json yet
    try:
        settings = load_settings(data_dir=tmp_path, environ={})
        assert cli_commands.call(settings, "daemon.ping", None) == 1
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert f"ps -p {os.getpid()}" in err and "None" not in err


async def test_a_stream_nobody_reads_holds_a_bounded_queue_then_misses_nothing(
    tmp_path: Path, store: Store, make_bridge: MakeBridge
) -> None:
    await make_bridge()
    async with await connect(data_dir=tmp_path, max_queue=10) as client:
        stream = await client.subscribe(["workspace.*"])
        other = await client.subscribe(["workspace.*"], since=0)
        created = [await store.workspaces.create(name=f"w{i}") for i in range(50)]
        status = await client.call("daemon.status")  # every event was sent before this
        assert status["subscriptions"] <= 2
        assert stream._queue.qsize() <= 10 and other._queue.qsize() <= 10
        for s in (stream, other):  # read now: every event once, in order
            got = [await next_event(s) for _ in range(50)]
            assert [e.data for e in got] == created
            assert [e.seq for e in got] == sorted({e.seq for e in got})
        last = await client.call("workspace.create", {"name": "live"})
        assert (await next_event(stream)).data == last
        assert (await client.call("daemon.status"))["subscriptions"] == 2


async def test_a_stream_whose_big_events_fill_its_byte_bound_catches_up_too(
    tmp_path: Path, store: Store, make_bridge: MakeBridge
) -> None:
    await make_bridge()
    async with await connect(data_dir=tmp_path, max_queue_bytes=64 * 1024) as client:
        stream = await client.subscribe(["workspace.*"])
        created = [await store.workspaces.create(name="x" * 10_000) for _ in range(30)]
        await client.call("daemon.ping")  # every event was sent before this answer
        assert stream._queue.qsize() < 30
        assert [(await next_event(stream)).data for _ in range(30)] == created


async def test_a_stream_that_fell_behind_the_changelog_raises_refetch(
    short_store: Store, tmp_path: Path
) -> None:
    server = BridgeServer(BridgeSettings(port=0), store=short_store, data_dir=tmp_path, version="t")
    await server.start()
    try:
        async with await connect(data_dir=tmp_path, max_queue=5) as client:
            stream = await client.subscribe(["workspace.*"])
            for i in range(30):  # the changelog keeps 10 entries
                await short_store.workspaces.create(name=f"w{i}")
            await client.call("daemon.ping")
            assert [(await next_event(stream)).data["name"] for _ in range(5)] == [
                f"w{i}" for i in range(5)
            ]
            with pytest.raises(RefetchRequired):
                await next_event(stream)
    finally:
        await server.stop()


async def test_cancelled_subscribes_leave_no_subscription_on_the_daemon(
    bridge: object, tmp_path: Path
) -> None:
    async with await connect(data_dir=tmp_path) as client:
        for i in range(300):  # more than the 256 subscriptions a connection may hold
            subscribing = asyncio.create_task(client.subscribe(["**"]))
            for _ in range(i % 8):  # cancelled sending, sent, answered, registered...
                await asyncio.sleep(0)
            if not subscribing.cancel():  # too late: it is the caller's stream to close
                await (await subscribing).close()
            with contextlib.suppress(asyncio.CancelledError):
                await subscribing

        async def subscriptions() -> int:
            return int((await client.call("daemon.status"))["subscriptions"])

        await wait_for(lambda: _is_zero(subscriptions()), message="no subscription left")
        stream = await client.subscribe(["workspace.*"])  # not refused: at most 256
        created = await client.call("workspace.create", {"name": "w"})
        assert (await next_event(stream)).data == created


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0
