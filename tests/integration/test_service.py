"""``syncd service install|uninstall|status`` as a user runs it, on this Linux machine: real
unit files in a temporary home (never the real one), the real ``syncd`` command, and either
no reachable systemd user manager (as in a container: ``XDG_RUNTIME_DIR`` is an empty folder)
or a recording ``systemctl`` first on PATH that stands in for one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.service_files import Target, systemd_unit
from tests.helpers import MS, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]

FAKE_SYSTEMCTL = """\
import json, os, sys
with open(os.environ["FAKE_SYSTEMCTL_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[2] == "show":
    print("LoadState=loaded\\nUnitFileState=enabled\\nActiveState=active\\nSubState=running")
    print("MainPID=0\\nResult=success")
if sys.argv[2] == os.environ.get("FAKE_SYSTEMCTL_FAIL"):
    print("Job for x.service failed because the control process exited with error code.",
          file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True, mode=0o700)
    return home


def env_of(home: Path, **extra: str) -> dict[str, str]:
    """A user whose home is ``home`` and whose systemd user manager cannot be reached."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "XDG_", "DBUS_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_RUNTIME_DIR=str(home / "run"))  # fmt: skip
    env.update(extra)
    return env


def syncd(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=ROOT,
        env=env_of(home, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def units(home: Path) -> Path:
    return home / ".config" / "systemd" / "user"


def exec_start(unit: Path) -> str:
    return next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))


def test_install_status_uninstall_without_a_service_manager(home: Path) -> None:
    unit = units(home) / "syncd.service"
    data_dir = home / ".local" / "share" / "syncd"  # the platform's default, in this home
    out = syncd(home, "service", "install")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"{unit} is in place" in out.stderr
    assert "the service manager could not be reached" in out.stderr
    assert f"start the daemon now with `syncd run --data-dir {data_dir}`" in out.stderr
    python = os.path.abspath(sys.executable)
    assert exec_start(unit) == f"ExecStart={python} -m daemon run --data-dir {data_dir}"
    if shutil.which("systemctl"):  # `systemctl --user enable` links files without a manager
        assert (units(home) / "default.target.wants" / "syncd.service").is_symlink()
    written = unit.stat().st_mtime_ns, unit.read_text()

    again = syncd(home, "service", "install")
    assert again.returncode == 1 and f"{unit} is up to date" in again.stdout
    assert (unit.stat().st_mtime_ns, unit.read_text()) == written

    status = syncd(home, "service", "status", "--json")
    assert status.returncode == 3, status.stderr  # installed, no daemon runs
    report = json.loads(status.stdout)
    assert report["installed"] and report["up_to_date"] and report["path"] == str(unit)
    assert report["name"] == "syncd.service" and report["command"][0] == python
    assert report["manager"]["reachable"] is False and report["manager"]["error"]
    assert report["daemon"]["running"] is False
    text = syncd(home, "service", "status")
    assert text.returncode == 3 and "syncd.service installed" in text.stdout

    gone = syncd(home, "service", "uninstall")
    assert gone.returncode == 0, gone.stderr
    assert "uninstalled syncd.service" in gone.stdout
    assert (
        not unit.exists() and not (units(home) / "default.target.wants" / "syncd.service").exists()
    )
    nothing = syncd(home, "service", "uninstall")
    assert nothing.returncode == 0 and "no service is installed" in nothing.stdout
    assert syncd(home, "service", "status").returncode == 4


def test_each_data_dir_gets_its_own_service(home: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b dir é $x %h"
    assert syncd(home, "service", "install", "--data-dir", str(a)).returncode == 1
    assert syncd(home, "service", "install", SYNCD_DATA_DIR=str(b)).returncode == 1
    files = sorted(units(home).glob("*.service"))
    assert len(files) == 2 and "syncd.service" not in [f.name for f in files]
    by_dir = {str(a): "-a-", str(b): "-b-dir-e-x-h-"}
    for data_dir, infix in by_dir.items():
        unit = next(f for f in files if infix in f.name)
        expected = Target(python=os.path.abspath(sys.executable), data_dir=data_dir,
                          is_default=False)  # fmt: skip
        assert exec_start(unit) == next(
            line for line in systemd_unit(expected).splitlines() if line.startswith("ExecStart=")
        )
    assert '"' in exec_start(next(f for f in files if "-b-dir-" in f.name))  # quoted
    # the same folder by another spelling is the same service
    again = syncd(home, "service", "install", "--data-dir", f"{tmp_path}/./a")
    assert "is up to date" in again.stdout and len(list(units(home).glob("*.service"))) == 2


def test_the_unit_holds_no_setting_or_secret(home: Path) -> None:
    out = syncd(home, "service", "install", SYNCD_CLOUD_URL="http://127.0.0.1:9",
                SYNCD_CLOUD_ANON_KEY="anon-key-secret-123")  # fmt: skip
    text = (units(home) / "syncd.service").read_text()
    assert "anon-key-secret-123" not in text and "SYNCD_" not in text
    assert "anon-key-secret-123" not in out.stdout + out.stderr
    assert "does not get this shell's SYNCD_CLOUD_ANON_KEY, SYNCD_CLOUD_URL" in out.stderr


@pytest.fixture
def systemctl(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A recording ``systemctl`` first on PATH: a user manager that says yes."""
    bin_dir, log = tmp_path / "bin", tmp_path / "systemctl.log"
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
    script.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    yield {"PATH": path, "FAKE_SYSTEMCTL_LOG": str(log)}, log


def calls(log: Path) -> list[list[str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return [json.loads(line)[1:] for line in lines if '"show"' not in line]


def test_install_enables_and_starts_it_with_a_service_manager(
    home: Path, systemctl: tuple[dict[str, str], Path]
) -> None:
    env, log = systemctl
    out = syncd(home, "service", "install", FAKE_SYSTEMCTL_FAIL="reset-failed", **env)
    assert out.returncode == 0, out.stderr
    assert calls(log) == [
        ["daemon-reload"],
        ["enable", "syncd.service"],
        ["reset-failed", "syncd.service"],
        ["restart", "syncd.service"],
    ]
    assert "syncd.service runs the daemon of" in out.stdout
    again = syncd(home, "service", "install", **env)
    assert again.returncode == 0 and calls(log)[-1] == ["start", "syncd.service"]
    failed = syncd(home, "service", "install", FAKE_SYSTEMCTL_FAIL="start", **env)
    assert (
        failed.returncode == 1 and "`systemctl --user start syncd.service` failed" in failed.stderr
    )
    calls(log)
    status = syncd(home, "service", "status", **env)
    assert status.returncode == 3 and "manager:  enabled, active (running)" in status.stdout
    gone = syncd(home, "service", "uninstall", FAKE_SYSTEMCTL_FAIL="stop", **env)  # not loaded
    assert gone.returncode == 0, gone.stderr
    assert calls(log) == [["stop", "syncd.service"], ["disable", "syncd.service"],
                          ["daemon-reload"]]  # fmt: skip
    assert not (units(home) / "syncd.service").exists()


def test_status_sees_the_data_dirs_daemon(home: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert syncd(home, "service", "install", "--data-dir", str(data_dir)).returncode == 1
    daemon = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--data-dir", str(data_dir), "--port", "0"],
        cwd=ROOT, env=env_of(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        discovery = data_dir / "daemon.json"

        def published() -> bool:
            try:
                return bool(json.loads(discovery.read_text())["pid"] == daemon.pid)
            except (OSError, ValueError, KeyError):
                return daemon.poll() is not None

        wait_for_sync(published, timeout=30_000 * MS, message="the daemon to start")
        out = syncd(home, "service", "status", "--data-dir", str(data_dir), "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        report: dict[str, Any] = json.loads(out.stdout)
        assert report["daemon"]["running"] and report["daemon"]["pid"] == daemon.pid
        assert report["daemon"]["url"].startswith("ws://127.0.0.1:")
        gone = syncd(home, "service", "uninstall", "--data-dir", str(data_dir))
        assert gone.returncode == 0
        assert f"a daemon still runs for the data dir (pid {daemon.pid})" in gone.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_reads_an_odd_interpreter_path(tmp_path: Path) -> None:
    """systemd itself finds the interpreter in a path with spaces, unicode, ``$`` and ``%``."""
    python = tmp_path / "my py é $x %h" / "python"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    target = Target(python=str(python), data_dir=str(tmp_path / "d $HOME %n"), is_default=False)
    unit = tmp_path / "syncd-probe.service"
    unit.write_text(systemd_unit(target))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    if "Failed to initialize manager" in out.stderr:
        pytest.skip(out.stderr)
    assert out.returncode == 0, out.stderr
