"""The Python client, the discovery file, and the `status` / `call` CLI commands."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from daemon import cli_cloud
from daemon.app import DataDirLock
from daemon.config import BridgeSettings, StoreSettings, load_settings
from daemon.store import Store
from daemon.sync.live import DisabledLive
from daemon.sync.local import DisabledCloud
from tests.helpers import MS
from ui_bridge import cli_commands
from ui_bridge.client import (
    DaemonNotAnswering,
    DaemonNotRunning,
    Event,
    RefetchRequired,
    RpcError,
    connect,
)
from ui_bridge.discovery import (
    DaemonAlreadyRunning,
    DiscoveryInfo,
    discovery_path,
    read_discovery,
    write_discovery,
)
from ui_bridge.methods import build_method_table
from ui_bridge.server import BridgeServer

from .conftest import MakeBridge


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def leftover_temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".daemon.json")]


async def test_discovery_file_is_private_complete_and_removed(tmp_path: Path, store: Store) -> None:
    server = BridgeServer(BridgeSettings(port=0), store=store, data_dir=tmp_path, version="9.9")
    await server.start()
    path = discovery_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = orjson.loads(path.read_bytes())
    assert set(content) == {"pid", "port", "url", "token", "version", "started_at"}
    assert content["pid"] == os.getpid() and content["port"] == server.port
    assert content["url"] == server.url and content["token"] == server.token
    assert content["version"] == "9.9"
    assert leftover_temp_files(tmp_path) == []
    await server.stop()
    assert not path.exists()


_WRITE_WHERE_NOTHING_GROWS = """
import resource, sys
from pathlib import Path
from ui_bridge.discovery import DiscoveryInfo, write_discovery
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    write_discovery(Path(sys.argv[1]), DiscoveryInfo(1, 2, "ws://x/", "t", "0", "now"))
except OSError as exc:
    print(exc.strerror, exc.filename, sep="\\n")
"""


def test_a_discovery_file_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """Its write fails (a file size limit of 0 here, EFBIG; ENOSPC on a full disk) with an
    error naming no file: it is said about daemon.json (app.py names it to the user)."""
    out = subprocess.run(
        [sys.executable, "-c", _WRITE_WHERE_NOTHING_GROWS, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.splitlines() == ["File too large", str(discovery_path(tmp_path))]
    assert list(tmp_path.iterdir()) == []  # nor is its temporary file left


async def test_each_start_gets_a_new_token(make_bridge: MakeBridge) -> None:
    first = await make_bridge()
    token = first.token
    await first.stop()
    second = await make_bridge()
    assert second.token != token and len(token) >= 40


async def test_stale_discovery_file_is_replaced(tmp_path: Path, make_bridge: MakeBridge) -> None:
    stale = DiscoveryInfo(dead_pid(), 1, "ws://127.0.0.1:1/", "old", "0", "then")
    write_discovery(tmp_path, stale)
    server = await make_bridge()
    info = read_discovery(tmp_path)
    assert info is not None and info.pid == os.getpid() and info.token == server.token


async def test_live_daemon_is_not_replaced(tmp_path: Path, make_bridge: MakeBridge) -> None:
    other = sleeper()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        port = listener.getsockname()[1]
        write_discovery(tmp_path, DiscoveryInfo(other.pid, port, "ws://x/", "t", "0", "now"))
        with pytest.raises(DaemonAlreadyRunning):
            await make_bridge()
        assert read_discovery(tmp_path) is not None  # left alone
    finally:
        listener.close()
        other.kill()
        other.wait()


async def test_client_calls_and_errors(bridge: BridgeServer, tmp_path: Path) -> None:
    async with await connect(data_dir=tmp_path) as client:
        assert await client.call("daemon.ping") == {"pong": True}
        row = await client.call("workspace.create", {"name": "w"})
        assert row["name"] == "w"
        with pytest.raises(RpcError) as info:
            await client.call("workspace.create", {"name": 3})
        assert info.value.code == -32602 and info.value.data["field"] == "name"
        with pytest.raises(RpcError) as info:
            await client.call("no.such.method")
        assert info.value.code == -32601


async def test_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning):
        await connect(data_dir=tmp_path)
    write_discovery(tmp_path, DiscoveryInfo(dead_pid(), 1, "ws://127.0.0.1:1/", "t", "0", "x"))
    with pytest.raises(DaemonNotRunning):
        await connect(data_dir=tmp_path)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_live_pid_is_a_daemon_only_while_it_holds_the_lock(tmp_path: Path) -> None:
    """A discovery file left by a crash whose pid now names another process is no daemon;
    a daemon that holds the data dir's lock but does not answer is not "no daemon"."""
    other = sleeper()
    try:
        url = f"ws://127.0.0.1:{closed_port()}/"
        write_discovery(tmp_path, DiscoveryInfo(other.pid, 1, url, "t", "0", "x"))
        with pytest.raises(DaemonNotRunning):
            await connect(data_dir=tmp_path, reconnect=False)
    finally:
        other.kill()
        other.wait()
    write_discovery(tmp_path, DiscoveryInfo(os.getpid(), 1, url, "t", "0", "x"))
    lock = DataDirLock.acquire(tmp_path)  # this process is the daemon, and refuses connections
    try:
        with pytest.raises(DaemonNotAnswering) as info:
            await connect(data_dir=tmp_path, reconnect=False)
        assert info.value.pid == os.getpid() and "does not answer" in str(info.value)
    finally:
        lock.release()


async def next_event(stream: object) -> Event:
    return await asyncio.wait_for(anext(stream), 5_000 * MS)  # type: ignore[call-overload]


async def test_stream_resumes_across_a_daemon_restart(
    tmp_path: Path, store: Store, make_bridge: MakeBridge
) -> None:
    server = await make_bridge()
    client = await connect(data_dir=tmp_path)
    try:
        stream = await client.subscribe(["workspace.*"])
        everything = await client.subscribe(["**"])
        first = await client.call("workspace.create", {"name": "before"})
        assert (await next_event(stream)).data == first
        assert (await next_event(everything)).data == first
        seq = 1
        for _restart in range(2):
            await server.stop()
            missed = [await store.workspaces.create(name=f"down {i}") for i in range(100)]
            server = await make_bridge()  # new port and token, found through daemon.json
            for s in (stream, everything):
                got = [await next_event(s) for _ in range(100)]
                assert [e.data for e in got] == missed
                assert [e.seq for e in got] == list(range(seq + 1, seq + 101))
            seq += 100
        live = await client.call("workspace.create", {"name": "after"})
        event = await next_event(stream)
        assert event.data == live and event.seq == seq + 1
        assert (await next_event(everything)).seq == seq + 1
    finally:
        await client.close()


async def test_stream_reports_refetch_when_events_are_gone(
    tmp_path: Path, make_bridge: MakeBridge
) -> None:
    await make_bridge()
    async with await connect(data_dir=tmp_path) as client:
        with pytest.raises(RefetchRequired) as info:  # (no such event yet)
            await client.subscribe(["**"], since=50)
        assert info.value.data["reason"] == "refetch"
        stream = await client.subscribe(["**"], since=0)
        await client.call("workspace.create", {"name": "x"})
        assert (await next_event(stream)).seq == 1
        await stream.close()


async def test_a_stream_whose_replay_cannot_read_the_changelog_raises_that_not_refetch(
    tmp_path: Path, make_bridge: MakeBridge, store: Store
) -> None:
    await make_bridge()
    async with await connect(data_dir=tmp_path) as client:
        for name in "ab":
            await client.call("workspace.create", {"name": name})
        with sqlite3.connect(store.path, isolation_level=None) as raw:
            raw.execute("UPDATE changelog SET data = '{bad' WHERE seq = 1")
        stream = await client.subscribe(["**"], since=0)
        with pytest.raises(RpcError) as info:
            await next_event(stream)
        assert not isinstance(info.value, RefetchRequired)
        assert (info.value.code, info.value.data["reason"]) == (-32603, "damaged")
        assert "could not read its changelog" in info.value.message


@pytest.fixture
async def short_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose changelog keeps 10 entries."""
    store = await Store.open(tmp_path / "syncd.db", StoreSettings(changelog_retain=10))
    yield store
    await store.close()


async def test_subscribing_from_a_pruned_seq_raises_refetch_as_a_reconnect_does(
    short_store: Store, tmp_path: Path
) -> None:
    store = short_store
    server = BridgeServer(BridgeSettings(port=0), store=store, data_dir=tmp_path, version="t")
    await server.start()
    try:
        for i in range(30):  # far more than the 10 entries the changelog keeps
            await store.workspaces.create(name=f"w{i}")
        async with await connect(data_dir=tmp_path) as client:
            with pytest.raises(RefetchRequired) as info:
                await client.subscribe(["**"], since=0)
            assert isinstance(info.value, RpcError)  # `except RpcError` callers still catch it
            assert info.value.code == -32001 and info.value.data["reason"] == "refetch"
            stream = await client.subscribe(["**"])  # after a refetch: from now on
            created = await client.call("workspace.create", {"name": "after"})
            assert (await next_event(stream)).data == created
    finally:
        await server.stop()


async def test_stream_raises_refetch_when_a_reconnect_finds_its_events_pruned(
    short_store: Store, tmp_path: Path
) -> None:
    data_dir, store = tmp_path, short_store
    settings = BridgeSettings(port=0)
    server = BridgeServer(settings, store=store, data_dir=data_dir, version="t")
    await server.start()
    client = await connect(data_dir=data_dir)
    try:
        stream = await client.subscribe(["**"])
        await client.call("workspace.create", {"name": "seen"})
        assert (await next_event(stream)).seq == 1
        await server.stop()
        for i in range(30):  # far more than the 10 entries the changelog keeps
            await store.workspaces.create(name=f"missed {i}")
        server = BridgeServer(settings, store=store, data_dir=data_dir, version="t")
        await server.start()  # the client reconnects and resubscribes with since=1
        with pytest.raises(RefetchRequired):
            await next_event(stream)
    finally:
        await client.close()
        await server.stop()


async def test_cli_status_and_call(
    make_bridge: MakeBridge, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bridge = await make_bridge(build_method_table(DisabledCloud(store), DisabledLive()))
    settings = load_settings(data_dir=tmp_path, environ={})
    assert await asyncio.to_thread(cli_cloud.status, settings, as_json=True) == 0
    status = orjson.loads(capsys.readouterr().out)
    assert status["pid"] == os.getpid() and status["port"] == bridge.port
    assert status["cloud"]["configured"] is False
    assert await asyncio.to_thread(cli_cloud.status, settings, as_json=False) == 0
    text = capsys.readouterr().out
    assert f"pid {os.getpid()}" in text and "cloud        not configured" in text

    code = await asyncio.to_thread(cli_commands.call, settings, "workspace.create", '{"name":"w"}')
    out = capsys.readouterr()
    assert code == 0 and orjson.loads(out.out)["name"] == "w"

    code = await asyncio.to_thread(cli_commands.call, settings, "workspace.get", '{"id":"x"}')
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert orjson.loads(out.err)["code"] in (-32001, -32602)

    code = await asyncio.to_thread(cli_commands.call, settings, "daemon.ping", "{nope")
    out = capsys.readouterr()
    assert code == 2 and orjson.loads(out.err)["code"] == -32700


def test_cli_without_daemon_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(data_dir=tmp_path, environ={})
    assert cli_cloud.status(settings, as_json=False) == 3
    assert "syncd run" in capsys.readouterr().err
    assert cli_commands.call(settings, "daemon.ping", None) == 3
    assert "hint" in capsys.readouterr().err


async def test_stream_delivers_ephemeral_events_without_moving_its_seq(
    bridge: BridgeServer, tmp_path: Path
) -> None:
    async with await connect(data_dir=tmp_path) as client:
        stream = await client.subscribe(["**"])
        created = await client.call("workspace.create", {"name": "w"})
        durable = await next_event(stream)
        assert durable.data == created and not durable.ephemeral
        # Live-only events carry the last durable seq: a seq filter alone would drop them.
        assert bridge.hub.publish_live("broadcast.received", {"event": "typing"}) == 1
        live = await next_event(stream)
        assert live.ephemeral and live.topic == "broadcast.received"
        assert live.seq == durable.seq and stream.last_seq == durable.seq
        again = await client.call("workspace.create", {"name": "v"})
        after = await next_event(stream)
        assert after.data == again and after.seq == durable.seq + 1
