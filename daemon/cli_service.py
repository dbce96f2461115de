"""``syncd service install|uninstall|status``: writes a data dir's start-at-login service
(``daemon/service_files.py`` says what it is) and runs the service manager's commands
(``daemon/service_commands.py`` plans them and reads the answers).

Exit codes: install 0 installed, enabled and started; 1 a command failed, or the service
manager could not be reached (the file is in place; the message says how to start the daemon
otherwise). Uninstall 0 removed, or nothing was installed; 1 a command failed (nothing was
removed). Status 0 installed and the data dir's daemon runs; 3 installed but no daemon runs;
4 not installed. All: 2 bad usage or configuration.
"""

from __future__ import annotations

import os
import shlex
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import daemon
from daemon.config import default_data_dir, make_private_dir
from daemon.errors import ConfigError
from daemon.service_commands import (
    ManagerState,
    Step,
    install_steps,
    is_unreachable,
    parse_launchctl_print,
    parse_schtasks_query,
    parse_systemctl_show,
    status_steps,
    uninstall_steps,
)
from daemon.service_files import Platform, Service, Target, build_service

if TYPE_CHECKING:
    from daemon.config import Settings

__all__ = ["install", "service_for", "status", "uninstall"]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_NO_DAEMON: Final = 3
EXIT_NOT_INSTALLED: Final = 4
#: a service manager's command answers in well under a second; one that hangs is an error
COMMAND_TIMEOUT: Final = 30.0


def current_platform() -> Platform:
    if sys.platform == "darwin":
        return "launchd"
    return "schtasks" if sys.platform == "win32" else "systemd"


def _import_root() -> str | None:
    """The folder to import ``daemon`` from when it is not installed in a site directory (a
    checkout run with PYTHONPATH or from its folder): the service has neither."""
    root = Path(daemon.__file__).resolve().parent.parent
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    return None if root in {Path(p).resolve() for p in sites} else str(root)


def service_for(settings: Settings) -> Service:
    """The service of ``settings.data_dir`` run by this interpreter."""
    if not sys.executable:  # an embedded interpreter: nothing a service could run
        raise ConfigError("the interpreter", "Python does not know its own executable")
    data_dir = settings.data_dir.resolve()  # one name per folder, however it was written
    user = os.environ.get("USERNAME", "")
    if os.environ.get("USERDOMAIN"):
        user = f"{os.environ['USERDOMAIN']}\\{user}"
    target = Target(
        python=os.path.abspath(sys.executable),  # not resolved: a venv's python is a link
        data_dir=str(data_dir),
        is_default=data_dir == default_data_dir().resolve(),
        import_root=_import_root(),
    )
    home = str(Path.home())
    return build_service(current_platform(), target, home=home, environ=os.environ, user=user)


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    stdout: str
    stderr: str
    unreachable: bool


def _run(step: Step) -> _Outcome:
    """Run one command (an argument list, never a shell line), output captured."""
    try:
        done = subprocess.run(
            list(step.argv),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            encoding="utf-8",
            errors="replace",
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        return _Outcome(127, "", f"{step.argv[0]} is not installed", unreachable=True)
    except subprocess.TimeoutExpired:
        text = f"no answer within {COMMAND_TIMEOUT:.0f} s"
        return _Outcome(124, "", text, unreachable=False)
    except OSError as exc:
        return _Outcome(126, "", str(exc), unreachable=False)
    failed = done.returncode != 0
    return _Outcome(
        done.returncode, done.stdout, done.stderr, failed and is_unreachable(done.stderr)
    )


@dataclass
class _Progress:
    done: list[str]
    unreachable: str | None = None  #: the manager's answer when it could not be reached
    error: str | None = None


def _execute(steps: list[Step], progress: _Progress) -> None:
    """Run ``steps`` in order; once the manager is unreachable only the offline ones; stop at
    the first failure that is neither expected nor the manager's absence."""
    for step in steps:
        if progress.error or (progress.unreachable and not step.offline):
            continue
        out = _run(step)
        if out.returncode == 0:
            progress.done.extend([step.does] if step.does else [])
        elif out.unreachable:
            progress.unreachable = _one_line(out.stderr)
        elif not step.may_fail:
            why = _one_line(out.stderr or out.stdout) or "no message"
            progress.error = f"`{shlex.join(step.argv)}` failed (exit {out.returncode}): {why}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _query(service: Service) -> ManagerState:
    steps = status_steps(service, uid=_uid())
    out = _run(steps[0])
    if out.unreachable or (out.returncode != 0 and service.platform == "systemd"):
        enabled = None
        if len(steps) > 1:  # systemctl is-enabled reads the unit files without the manager
            offline = _run(steps[1])
            enabled = offline.stdout.strip() or None
        return ManagerState(reachable=False, enabled=enabled, error=_one_line(out.stderr))
    if service.platform == "systemd":
        return parse_systemctl_show(out.stdout)
    if service.platform == "launchd":
        return parse_launchctl_print(out.stdout, out.returncode)
    return parse_schtasks_query(out.stdout, out.returncode)


def _uid() -> int:
    getuid = getattr(os, "getuid", None)
    return int(getuid()) if getuid is not None else 0


def _encoding(service: Service) -> str:
    return "utf-16" if service.platform == "schtasks" else "utf-8"  # as its XML declares


def _installed_text(service: Service) -> str | None:
    try:
        return Path(service.path).read_text(encoding=_encoding(service))
    except FileNotFoundError:
        return None
    except UnicodeError:  # not ours as written: installed, and rewritten by the next install
        return ""


def _write(service: Service) -> None:
    path = Path(service.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(service.text, encoding=_encoding(service), newline="\n")
    os.replace(temporary, path)  # never a half-written definition


def _start_hint(service: Service) -> str:
    run = f"syncd run --data-dir {shlex.quote(service.target.data_dir)}"
    later = {
        "systemd": "once your user's systemd runs (a desktop login, or `loginctl enable-linger`"
        f"), `systemctl --user daemon-reload && systemctl --user start {service.name}` starts"
        " the service",
        "launchd": "from a desktop session of this user, `syncd service install` loads it",
        "schtasks": f"`schtasks /Run /TN {service.name}` starts the task",
    }[service.platform]
    return f"hint: start the daemon now with `{run}`; {later}\n"


def install(settings: Settings) -> int:
    service = service_for(settings)
    changed = _installed_text(service) != service.text
    if changed:
        _write(service)
        print(f"wrote {service.path}")
    else:
        print(f"{service.path} is up to date")
    if service.platform == "launchd":  # launchd opens the log file; it makes no folder
        make_private_dir(Path(service.target.data_dir) / "logs")
    progress = _Progress(done=[])
    state = _query(service)
    _execute(install_steps(service, changed=changed, state=state, uid=_uid()), progress)
    for done in progress.done:
        print(f"  {service.name}: {done}")
    _note_environment(settings)
    if progress.error:
        sys.stderr.write(f"syncd service: {progress.error}\n")
        return EXIT_ERROR
    if progress.unreachable:
        enabled = " and enabled at login" if "enabled at login" in progress.done else ""
        sys.stderr.write(
            f"syncd service: {service.path} is in place{enabled}, but the service manager "
            f"could not be reached ({progress.unreachable}), so the daemon was not started\n"
            + _start_hint(service)
        )
        return EXIT_ERROR
    print(f"{service.name} runs the daemon of {service.target.data_dir} now and at every login")
    return EXIT_OK


def _note_environment(settings: Settings) -> None:
    """The service does not get this shell's environment: say which settings it misses."""
    names = sorted(k for k in os.environ if k.startswith("SYNCD_") and k != "SYNCD_DATA_DIR")
    if names:
        sys.stderr.write(
            f"note: the service does not get this shell's {', '.join(names)}; put those "
            f"settings in {settings.data_dir.resolve() / 'config.toml'}\n"
        )


def uninstall(settings: Settings) -> int:
    service = service_for(settings)
    path = Path(service.path)
    if not path.is_file():
        print(f"no service is installed for {service.target.data_dir} ({path})")
        return EXIT_OK
    before, after = uninstall_steps(service, uid=_uid())
    progress = _Progress(done=[])
    _execute(before, progress)
    if progress.error:
        sys.stderr.write(f"syncd service: {progress.error}; {path} is kept\n")
        return EXIT_ERROR
    path.unlink(missing_ok=True)
    progress.done.append(f"removed {path}")
    _execute(after, progress)
    for done in progress.done:
        print(f"  {service.name}: {done}")
    if progress.unreachable:
        sys.stderr.write(
            f"note: the service manager could not be reached ({progress.unreachable}): the "
            "service no longer starts at login; if the manager runs it now, it was not stopped\n"
        )
    daemon_state = _daemon(Path(service.target.data_dir))
    if daemon_state["running"]:
        pid = daemon_state["pid"]
        sys.stderr.write(f"note: a daemon still runs for the data dir (pid {pid}): kill {pid}\n")
    print(f"uninstalled {service.name}")
    return EXIT_OK


def _daemon(data_dir: Path) -> dict[str, Any]:
    """Whether a daemon runs for ``data_dir``, as ``syncd status`` tells: it holds the lock."""
    from ui_bridge.discovery import DAEMON_ROLE, is_data_dir_locked, lock_owner, read_discovery

    if not is_data_dir_locked(data_dir):
        return {"running": False, "pid": None, "url": None}
    pid, role = lock_owner(data_dir)
    if role != DAEMON_ROLE:  # syncd compact holds it
        return {"running": False, "pid": pid, "url": None, "held_by": role}
    info = read_discovery(data_dir)
    return {"running": True, "pid": pid, "url": info.url if info and info.pid == pid else None}


def status(settings: Settings, *, as_json: bool) -> int:
    from ui_bridge.cli_commands import write_json

    service = service_for(settings)
    installed_text = _installed_text(service)
    state = _query(service)
    daemon_state = _daemon(Path(service.target.data_dir))
    report = {
        "installed": installed_text is not None,
        "up_to_date": installed_text == service.text,
        "name": service.name,
        "path": service.path,
        "platform": service.platform,
        "command": service.target.argv(),
        "data_dir": service.target.data_dir,
        "manager": {
            "reachable": state.reachable,
            "enabled": state.enabled,
            "active": state.active,
            "pid": state.pid,
            "error": state.error,
        },
        "daemon": daemon_state,
    }
    if as_json:
        write_json(report, sys.stdout)
    else:
        sys.stdout.write(_status_text(report, state))
    if installed_text is None:
        return EXIT_NOT_INSTALLED
    return EXIT_OK if daemon_state["running"] else EXIT_NO_DAEMON


def _status_text(report: dict[str, Any], state: ManagerState) -> str:
    installed = "installed" if report["installed"] else "not installed"
    if report["installed"] and not report["up_to_date"]:
        installed += " (differs from what `syncd service install` would write now)"
    if state.reachable:
        manager = ", ".join(str(v) for v in (state.enabled, state.active) if v) or "unknown"
        manager += f", pid {state.pid}" if state.pid else ""
    else:
        enabled = f"{state.enabled}; " if state.enabled else ""
        manager = f"{enabled}the service manager could not be reached ({state.error})"
    daemon_state = report["daemon"]
    if daemon_state["running"]:
        where = f", {daemon_state['url']}" if daemon_state["url"] else ""
        by = ", started by the service" if state.pid == daemon_state["pid"] else ""
        daemon_text = f"running (pid {daemon_state['pid']}{where}){by}"
    else:
        daemon_text = "not running"
    return (
        f"service:  {report['name']} {installed}\n"
        f"file:     {report['path']}\n"
        f"runs:     {shlex.join(report['command'])}\n"
        f"manager:  {manager}\n"
        f"daemon:   {daemon_text}\n"
        f"data dir: {report['data_dir']}\n"
    )
