"""`syncd` as a user runs it: real subprocesses, real data dirs, real signals."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MS, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("run", "status", "call", "login", "logout", "link", "unlink", "push", "pull",
            "devcloud", "service", "compact")  # fmt: skip
STOP_BUDGET = 5.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env.update(extra)
    return env


def syncd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=ROOT,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Running:
    """One `syncd run` process with its stderr captured in a file."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--data-dir", str(data_dir), "--port", "0"],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )

    def discovery(self) -> dict[str, object] | None:
        try:
            return dict(json.loads((self.data_dir / "daemon.json").read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def wait_ready(self) -> dict[str, object]:
        wait_for_sync(
            lambda: (
                self.proc.poll() is not None or (self.discovery() or {}).get("pid") == self.proc.pid
            ),
            timeout=30_000 * MS,
            message="the daemon to publish daemon.json",
        )
        assert self.proc.poll() is None, self.log.read_text()
        info = self.discovery()
        assert info is not None
        return info

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for daemon in started:
        daemon.close()


def start(running: list[Running], data_dir: Path) -> Running:
    daemon = Running(data_dir, data_dir.parent / f"{data_dir.name}.stderr")
    running.append(daemon)
    return daemon


@pytest.mark.parametrize("entry", ["module", "script"])
def test_help_lists_every_command(entry: str) -> None:
    if entry == "module":
        out = syncd("--help")
    else:
        script = Path(sys.executable).with_name("syncd")
        out = subprocess.run(
            [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert f"\n    {command} " in out.stdout, command


def test_call_and_status_help_explain_their_arguments_and_exit_codes() -> None:
    call, status = syncd("call", "--help"), syncd("status", "--help")
    assert call.returncode == 0 and status.returncode == 0, call.stderr + status.stderr
    text = " ".join(call.stdout.split())  # as argparse wraps it
    assert "METHOD a JSON-RPC method name, e.g. workspace.create" in text
    assert "`syncd call rpc.discover` lists them" in text
    assert "PARAMS_JSON the call's params: a JSON object (by name) or array" in text
    assert "The result is printed as JSON on stdout" in text
    for out in (call.stdout, status.stdout):
        assert (
            "\nexit codes:\n  0  ok\n  1  the daemon answered an error (printed on stderr)" in out
        )
        assert "\n  2  bad usage\n  3  no daemon runs for the data dir" in out


def test_run_starts_refuses_a_second_daemon_and_stops_cleanly(
    tmp_path: Path, running: list[Running]
) -> None:
    data_dir = tmp_path / "d"
    first = start(running, data_dir)
    info = first.wait_ready()
    assert info["url"] == f"ws://127.0.0.1:{info['port']}/"
    assert (data_dir / "syncd.db").exists()

    second = syncd("run", "--data-dir", str(data_dir), "--port", "0")
    assert second.returncode == 1
    assert f"pid {first.proc.pid}" in second.stderr
    assert first.proc.poll() is None  # the first one is unharmed
    assert syncd("status", "--data-dir", str(data_dir)).returncode == 0

    code, elapsed = first.stop(signal.SIGTERM)
    assert code == 0 and elapsed < STOP_BUDGET, first.log.read_text()
    assert not (data_dir / "daemon.json").exists()
    assert syncd("status", "--data-dir", str(data_dir)).returncode == 3

    logs = (data_dir / "logs" / "syncd.log").read_text().splitlines()
    entries = [json.loads(line) for line in logs]
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert any(e["msg"].startswith("daemon.stopped") for e in entries)
    assert info["token"] not in "\n".join(logs) + first.log.read_text()


def test_two_daemons_with_different_data_dirs_run_side_by_side(
    tmp_path: Path, running: list[Running]
) -> None:
    a = start(running, tmp_path / "a")
    b = start(running, tmp_path / "b")
    info_a, info_b = a.wait_ready(), b.wait_ready()
    assert info_a["port"] != info_b["port"]
    code, elapsed = a.stop(signal.SIGINT)
    assert code == 0 and elapsed < STOP_BUDGET
    assert b.proc.poll() is None
    assert b.stop()[0] == 0


def test_data_dir_from_the_environment(tmp_path: Path) -> None:
    out = syncd("status", env=clean_env(SYNCD_DATA_DIR=str(tmp_path)))
    assert out.returncode == 3  # looked in tmp_path, found no daemon


def test_python_m_daemon_cli_runs_the_command() -> None:
    """``python -m daemon.cli run …`` did nothing and exited 0 (the module had no main guard):
    a script or service that started the daemon so believed it ran."""
    out = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "status", "--data-dir", "/nonexistent/syncd"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3, out  # as `syncd status`: no daemon runs there
    assert "no daemon is running" in out.stderr, out


def test_bad_setting_fails_naming_the_key(tmp_path: Path) -> None:
    out = syncd("run", env=clean_env(SYNCD_DATA_DIR=str(tmp_path), SYNCD_PORT="http"))
    assert out.returncode == 2
    assert "SYNCD_PORT" in out.stderr
    assert not (tmp_path / "syncd.db").exists()


def test_a_config_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"\xff\xfe\x00")
    for command in (("run", "--port", "0"), ("status",)):
        out = syncd(*command, "--data-dir", str(tmp_path))
        assert out.returncode == 2, out.stderr
        assert "config.toml" in out.stderr and "Traceback" not in out.stderr


def test_a_lock_file_that_is_a_symbolic_link_is_refused_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("important\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "syncd.lock").symlink_to(victim)
    out = syncd("run", "--data-dir", str(data_dir), "--port", "0")
    assert out.returncode == 2, out.stderr
    assert "syncd.lock is a symbolic link" in out.stderr
    assert victim.read_text() == "important\n"
    assert not (data_dir / "syncd.db").exists()


def test_an_allowed_origin_that_is_not_an_origin_stops_the_daemon(tmp_path: Path) -> None:
    env = clean_env(SYNCD_DATA_DIR=str(tmp_path), SYNCD_ALLOWED_ORIGINS="https://app.example/x")
    out = syncd("run", "--port", "0", env=env)
    assert out.returncode == 2
    assert "SYNCD_ALLOWED_ORIGINS" in out.stderr and "'https://app.example/x'" in out.stderr
    assert not (tmp_path / "syncd.db").exists()


def test_data_dir_and_files_are_private(tmp_path: Path, running: list[Running]) -> None:
    """syncd creates its data dir 0700 and every file in it 0600, whatever the umask allows."""
    data_dir = tmp_path / "new" / "d"
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    old = os.umask(0o022)  # the usual one: 0644 files and 0755 dirs unless syncd says otherwise
    try:
        daemons = [Running(data_dir, tmp_path / "d.stderr"), start(running, shared)]
        running.append(daemons[0])
    finally:
        os.umask(old)
    for daemon in daemons:
        info = daemon.wait_ready()
        out = syncd("call", "--data-dir", str(daemon.data_dir), "workspace.create", '{"name": "w"}')
        assert out.returncode == 0, out.stderr
        assert (daemon.data_dir / "syncd.db-wal").exists()
        modes = {
            path.relative_to(daemon.data_dir).as_posix(): stat.S_IMODE(path.stat().st_mode)
            for path in daemon.data_dir.rglob("*")
        }
        assert modes == {
            "daemon.json": 0o600,
            "syncd.lock": 0o600,
            "syncd.db": 0o600,
            "syncd.db-wal": 0o600,
            "syncd.db-shm": 0o600,
            "logs": 0o700,
            "logs/syncd.log": 0o600,
        }, info
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(data_dir.parent.stat().st_mode) == 0o755  # a parent: as mkdir -p
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # chosen by the user: left as it is
    for daemon in daemons:
        assert daemon.stop()[0] == 0


def test_a_data_dir_that_is_not_utf8_logs_every_line(
    tmp_path: Path, running: list[Running]
) -> None:
    """Bytes that are not UTF-8 in the data dir's path (b"\\xff"): it works as any other, its
    log lines reach the file (the byte escaped) and the checkpointer runs; lines naming the
    path used to be dropped with a "Logging error" traceback, and the checkpointer was off."""
    data_dir = tmp_path / os.fsdecode(b"data\xff")
    daemon = start(running, data_dir)
    daemon.wait_ready()
    out = syncd("call", "--data-dir", str(data_dir), "workspace.create", '{"name": "w"}')
    assert out.returncode == 0, out.stderr
    assert daemon.stop()[0] == 0
    stderr = daemon.log.read_text(errors="backslashreplace")
    assert "Logging error" not in stderr and "Traceback" not in stderr, stderr
    entries = [
        json.loads(line) for line in (data_dir / "logs" / "syncd.log").read_text().splitlines()
    ]
    messages = [e["msg"] for e in entries]
    escaped = str(tmp_path / "data\\udcff")
    assert f"store.opened path={escaped}/syncd.db" in " ".join(messages)
    assert any(m.startswith("daemon.started") and escaped in m for m in messages), messages
    assert not [m for m in messages if "unavailable" in m], messages
    assert messages[-1].startswith("daemon.stopped")


def test_a_log_file_that_stops_taking_writes_costs_one_line_on_stderr(tmp_path: Path) -> None:
    """Mid-run, the log file cannot grow (its size limit is set to its size: every write
    fails, EFBIG, as on a full disk): stderr says so once, not a "--- Logging error ---"
    traceback per line; once it can grow again, the log says how many lines were dropped.
    (The daemon's stderr is a pipe here: the limit does not apply to it.)"""
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--data-dir", str(data_dir), "--port", "0"],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_sync(
            lambda: proc.poll() is not None or _seq(data_dir) >= 2,  # (the limit is the
            timeout=30_000 * MS,  # process's: the store must be done with its start's writes)
            message="the start's cloud and sync status events",
        )
        log = data_dir / "logs" / "syncd.log"
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (log.stat().st_size, hard))
        for _ in range(3):  # each logs its connection's lines
            assert syncd("call", "--data-dir", str(data_dir), "daemon.ping").returncode == 0
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (soft, hard))
        assert syncd("call", "--data-dir", str(data_dir), "daemon.ping").returncode == 0
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Logging error" not in stderr and "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith("syncd: logging to")]
    assert said == [
        f"syncd: logging to {log} failed: File too large; log lines are dropped until it can"
        " be written again",
        f"syncd: logging to {log} works again",
    ]
    messages = [json.loads(line)["msg"] for line in log.read_text().splitlines()]
    dropped = [m for m in messages if m.startswith("log.lines_dropped")]
    assert len(dropped) == 1 and int(dropped[0].split()[1].removeprefix("count=")) >= 3
    assert messages[-1].startswith("daemon.stopped")


def _seq(data_dir: Path) -> int:
    """The running daemon's last seq (-1 while it does not answer yet)."""
    out = syncd("call", "--data-dir", str(data_dir), "daemon.status")
    return int(json.loads(out.stdout)["seq"]) if out.returncode == 0 else -1


def test_newer_database_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "syncd.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    out = syncd("run", "--data-dir", str(tmp_path), "--port", "0")
    assert out.returncode == 1
    assert "newer than this syncd" in out.stderr


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_a_database_that_is_a_directory_fails_cleanly_every_time(
    tmp_path: Path, event_loop: str
) -> None:
    """Only the error, never a thread's "Event loop is closed" traceback after it (the
    connection's thread used to report to the loop the failed start had already closed)."""
    db = tmp_path / "syncd.db"
    db.mkdir()
    env = clean_env(SYNCD_EVENT_LOOP=event_loop)
    for _ in range(5):  # the race it had was lost about one start in seven
        out = syncd("run", "--data-dir", str(tmp_path), "--port", "0", env=env)
        assert out.returncode == 1
        message = f"cannot open {db}: it is a directory, not a database file"
        lines = out.stderr.splitlines()
        assert lines[-1] == f"syncd: {message}", out.stderr
        assert [line for line in lines if "daemon.start.failed" not in line
                and "daemon.stopped" not in line] == [lines[-1]], out.stderr  # fmt: skip


def test_a_file_that_cannot_be_written_at_start_is_named(tmp_path: Path) -> None:
    """No file may grow (a file size limit of 0: every write fails, EFBIG, as writes on a
    full disk fail with ENOSPC): the first file written, the lock's pid, is named with the
    reason; the error used to be a bare "[Errno 28] No space left on device"."""
    out = subprocess.run(
        ["sh", "-c", 'ulimit -f 0 && exec "$@"', "sh", sys.executable, "-m", "daemon", "run",
         "--data-dir", str(tmp_path), "--port", "0"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines()[-1] == (
        f"syncd: cannot write {tmp_path / 'syncd.lock'}: File too large"
    ), out.stderr
    assert "Traceback" not in out.stderr and "Logging error" not in out.stderr, out.stderr
    assert not (tmp_path / "syncd.db").exists()


def test_a_directory_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("not a directory\n")
    out = syncd("run", "--data-dir", str(tmp_path), "--port", "0")
    assert out.returncode == 1, out.stderr
    assert out.stderr == f"syncd: cannot use {tmp_path / 'logs'}: File exists\n"


def test_a_port_in_use_is_explained_on_stderr_and_in_the_log(tmp_path: Path) -> None:
    """A daemon started at login has no terminal: its log says why it stopped, with a hint."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = syncd("run", "--data-dir", str(tmp_path), "--port", str(port))
    assert out.returncode == 1
    reason = f"another program uses port {port} on 127.0.0.1: choose another with --port, "
    hint = "SYNCD_PORT or [bridge] port in config.toml, or --port 0 for any free one"
    assert reason + hint in out.stderr and "Traceback" not in out.stderr
    log = (tmp_path / "logs" / "syncd.log").read_text().splitlines()
    entries = [json.loads(line) for line in log]
    errors = [e for e in entries if e["level"] == "ERROR"]
    assert [e["msg"] for e in errors] == [f"daemon.start.failed {reason}{hint}"]
    assert "exc" not in errors[0]
    assert entries[-1]["msg"].startswith("daemon.stopped")


def test_devcloud_is_delegated() -> None:
    out = syncd("devcloud", "--help")
    assert out.returncode == 0, out.stderr
    assert "--database-url" in out.stdout
