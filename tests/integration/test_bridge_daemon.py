"""The local API of a real `syncd run` process: discovery, calls, events, CLI, clean shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from daemon.app import DataDirLock
from tests.helpers import MS, wait_for_sync
from ui_bridge.client import DaemonNotAnswering, connect
from ui_bridge.discovery import discovery_path, read_discovery, write_discovery

ROOT = Path(__file__).resolve().parents[2]


def syncd(*args: str, data_dir: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=ROOT,
        env={**os.environ, "SYNCD_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--data-dir", str(tmp_path), "--port", "0"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_sync(
            lambda: read_discovery(tmp_path) is not None or proc.poll() is not None,
            timeout=30_000 * MS,
            message="daemon.json",
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


async def test_run_serves_the_api_and_shuts_down_cleanly(
    daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    info = read_discovery(tmp_path)
    assert info is not None and info.pid == daemon.pid
    assert stat.S_IMODE(discovery_path(tmp_path).stat().st_mode) == 0o600
    async with await connect(data_dir=tmp_path) as client:
        # without a cloud, cloud.status is the daemon's last event of its own (published
        # just after it starts listening): after it, the seqs are this test's alone
        events = await client.subscribe(["workspace.*", "cloud.status"])
        first = await anext(events)
        assert first.topic == "cloud.status" and first.data["configured"] is False
        row = await client.call("workspace.create", {"name": "through syncd run"})
        event = await anext(events)
        assert event.data == row and event.topic == "workspace.created"
        status = await client.call("daemon.status")
        assert status["pid"] == daemon.pid and status["seq"] == event.seq
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    assert not discovery_path(tmp_path).exists()
    stderr = daemon.stderr.read() if daemon.stderr else b""
    assert b"Traceback" not in stderr and info.token.encode() not in stderr
    for log in logs_of(tmp_path):
        assert info.token not in log.read_text(errors="replace"), log


def logs_of(data_dir: Path) -> list[Path]:
    logs = data_dir / "logs"
    return [p for p in logs.rglob("*") if p.is_file()] if logs.is_dir() else []


def test_cli_status_and_call_against_a_running_daemon(
    daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    status = syncd("status", "--json", data_dir=tmp_path)
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["pid"] == daemon.pid
    created = syncd("call", "workspace.create", '{"name": "cli"}', data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["name"] == "cli"
    failed = syncd("call", "workspace.create", '{"name": 1}', data_dir=tmp_path)
    assert failed.returncode == 1 and orjson.loads(failed.stderr)["code"] == -32602


def test_cli_status_without_daemon_exits_3(tmp_path: Path) -> None:
    result = syncd("status", data_dir=tmp_path)
    assert result.returncode == 3
    assert "syncd run" in result.stderr


async def test_without_a_cloud_a_ui_still_gets_the_status_when_it_subscribes(
    daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """A UI renders the cloud and sync state from the same two status events whether a cloud
    is configured or not (was: none without a cloud, so such a UI showed nothing)."""
    async with await connect(data_dir=tmp_path) as client:
        stream = await client.subscribe(["cloud.status", "sync.*"])
        first = await asyncio.wait_for(anext(stream), 10_000 * MS)
        second = await asyncio.wait_for(anext(stream), 10_000 * MS)
        await stream.close()
    statuses = {e.topic: e.data for e in (first, second)}
    assert statuses["cloud.status"]["configured"] is False
    assert statuses["cloud.status"]["logged_in"] is False
    assert statuses["sync.status"]["configured"] is False
    assert statuses["sync.status"]["state"] == "offline"
    assert first.seq < second.seq <= stream.last_seq


def test_cli_says_a_stopped_daemon_does_not_answer(
    daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """A daemon that runs (its pid holds the data dir's lock) but does not answer is no
    "no daemon": `syncd run` would fail, so no start hint and not exit 3."""
    commands = [["status"], ["call", "daemon.ping"]]
    daemon.send_signal(signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(2) as pool:  # each waits out the CLI's connect timeout
            results = list(pool.map(lambda args: syncd(*args, data_dir=tmp_path), commands))
    finally:
        daemon.send_signal(signal.SIGCONT)
    for result in results:
        err = result.stderr
        assert result.returncode == 1, err
        assert f"the daemon (pid {daemon.pid}) at ws://127.0.0.1:" in err
        assert "does not answer" in err and "hint: it may be stopped or busy" in err
        assert f"ps -p {daemon.pid}" in err and "start it with" not in err
    assert syncd("status", data_dir=tmp_path).returncode == 0  # answering again


def test_cli_says_the_daemon_refused_a_changed_token(
    daemon: subprocess.Popen[bytes], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A discovery file whose token the daemon it names refuses (another start's). The daemon
    writes its own data dir's file again within a second of a change (daemon/watch.py), so the
    file is put in another data dir whose lock this test holds, as a daemon would: the CLI
    meets the real daemon's 401, and no repair can race with it."""
    info = read_discovery(tmp_path)
    assert info is not None
    other = tmp_path_factory.mktemp("other-data-dir")
    write_discovery(other, dataclasses.replace(info, token="from-another-start"))
    lock = DataDirLock.acquire(other)
    try:
        results = [syncd(*args, data_dir=other) for args in (["status"], ["call", "daemon.ping"])]
    finally:
        lock.release()
    for result in results:
        err = result.stderr
        assert result.returncode == 1, err
        assert f"the daemon (pid {daemon.pid}) refused the token in {discovery_path(other)}" in err
        assert "the file was changed, or it belongs to another start" in err
        assert f"hint: restart the daemon (kill {daemon.pid}" in err and "start it with" not in err


def test_a_removed_or_damaged_discovery_file_is_written_again(
    daemon: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    info = read_discovery(tmp_path)
    assert info is not None
    for damage in (b"", b"{not json", b"x" * 300_000):
        discovery_path(tmp_path).write_bytes(damage)
        wait_for_sync(
            lambda: read_discovery(tmp_path) == info, timeout=10_000 * MS, message="restored"
        )
    discovery_path(tmp_path).unlink()
    wait_for_sync(lambda: read_discovery(tmp_path) == info, timeout=10_000 * MS, message="again")
    assert stat.S_IMODE(discovery_path(tmp_path).stat().st_mode) == 0o600
    status = syncd("status", "--json", data_dir=tmp_path)
    assert status.returncode == 0 and orjson.loads(status.stdout)["pid"] == daemon.pid


async def test_a_client_finds_a_daemon_that_lost_its_discovery_file_unavailable(
    tmp_path: Path,
) -> None:
    # The lock held (by this test, as a daemon would) and no discovery file: a daemon runs.
    lock = DataDirLock.acquire(tmp_path)
    try:
        with pytest.raises(DaemonNotAnswering) as info:
            await connect(data_dir=tmp_path, reconnect=False)
        assert "missing or damaged" in str(info.value)
        status = syncd("status", data_dir=tmp_path)
        assert status.returncode == 1 and "missing or damaged" in status.stderr
    finally:
        lock.release()
    assert syncd("status", data_dir=tmp_path).returncode == 3


@pytest.mark.parametrize("lost", ["syncd.db-wal", "syncd.db", "."])
def test_a_file_deleted_under_the_daemon_stops_it(
    daemon: subprocess.Popen[bytes], tmp_path: Path, lost: str
) -> None:
    created = syncd("call", "workspace.create", '{"name": "before"}', data_dir=tmp_path)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "syncd.db-wal").exists()
    if lost == ".":
        shutil.rmtree(tmp_path)
    else:
        (tmp_path / lost).unlink()
    assert daemon.wait(timeout=30) == 1
    stderr = daemon.stderr.read().decode() if daemon.stderr else ""
    what = {"syncd.db-wal": "write-ahead log", "syncd.db": "the database", ".": "data dir"}[lost]
    assert what in stderr and "was deleted" in stderr and "Traceback" not in stderr
