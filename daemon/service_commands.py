"""The service manager's commands that install, remove and inspect a data dir's service
(``daemon/service_files.py``), and how to read its answers. I/O-free: ``daemon/cli_service.py``
runs them (argument lists, never a shell line).

systemd: ``daemon-reload``, ``enable`` (which only links files, so it works even when no user
manager runs: the service then starts at the next login), ``start``/``restart``. launchd:
``bootout`` (when loaded), ``enable``, ``bootstrap gui/<uid>``. Task Scheduler: ``/Create /XML``
and ``/Run``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Final

from daemon.service_files import Service

__all__ = [
    "ManagerState",
    "Step",
    "install_steps",
    "is_unreachable",
    "parse_launchctl_print",
    "parse_schtasks_query",
    "parse_systemctl_show",
    "status_steps",
    "uninstall_steps",
]

#: What the manager's tools say when there is no manager to talk to (a container, an ssh or
#: ``su`` session without a user bus, a macOS session without a GUI domain).
_UNREACHABLE: Final = (
    "failed to connect to bus",
    "no medium found",
    "$dbus_session_bus_address",
    "$xdg_runtime_dir",
    "not been booted with systemd",
    "failed to connect to user scope bus",
    "could not find domain",
    "domain does not support specified action",
)


@dataclass(frozen=True)
class Step:
    """One command to run. ``offline``: it works without the manager (``systemctl enable``
    only links files); ``may_fail``: its failure is expected and harmless (stopping a service
    that is not loaded)."""

    argv: tuple[str, ...]
    does: str  #: what it does, for the user: "enabled at login" ("": not worth saying)
    offline: bool = False
    may_fail: bool = False


@dataclass(frozen=True)
class ManagerState:
    """What the service manager says about the service."""

    reachable: bool
    loaded: bool = False  #: the manager knows the service
    enabled: str | None = None  #: "enabled"/"disabled" (systemd's words), "loaded" (launchd)
    active: str | None = None  #: "active (running)", "failed (exit-code)", "running", ...
    running: bool = False
    pid: int | None = None
    error: str | None = None  #: why it could not be asked


def _launchd_target(service: Service, uid: int) -> str:
    return f"gui/{uid}/{service.name}"


def install_steps(
    service: Service, *, changed: bool, state: ManagerState, uid: int = 0
) -> list[Step]:
    """After the file is written (``changed``: it was new or different): load it, enable it
    at login and start it; a changed definition restarts a running service, an unchanged one
    is only started if it is not running."""
    name = service.name
    if service.platform == "systemd":
        start = "restart" if changed else "start"
        # reset-failed: after a crash loop systemd refuses to start the unit for a while
        return [
            Step(("systemctl", "--user", "daemon-reload"), "reloaded the unit files"),
            Step(("systemctl", "--user", "enable", name), "enabled at login", offline=True),
            Step(("systemctl", "--user", "reset-failed", name), "", may_fail=True),
            Step(("systemctl", "--user", start, name), f"{start}ed"),
        ]
    if service.platform == "launchd":
        target, domain = _launchd_target(service, uid), f"gui/{uid}"
        if state.loaded and not changed:
            return [Step(("launchctl", "kickstart", target), "started (if it was not running)")]
        steps = []
        if state.loaded:
            steps.append(Step(("launchctl", "bootout", target), "unloaded the old definition"))
        return [
            *steps,
            Step(("launchctl", "enable", target), "enabled at login"),
            Step(("launchctl", "bootstrap", domain, service.path), "loaded and started"),
        ]
    steps = []
    if changed:
        if state.running:
            steps.append(Step(("schtasks", "/End", "/TN", name), "stopped", may_fail=True))
        create = ("schtasks", "/Create", "/TN", name, "/XML", service.path, "/F")
        steps.append(Step(create, "registered to run at logon"))
    if not state.running or changed:
        steps.append(Step(("schtasks", "/Run", "/TN", name), "started"))
    return steps


def uninstall_steps(service: Service, *, uid: int = 0) -> tuple[list[Step], list[Step]]:
    """(before the file is removed, after): stop and disable it, then forget it."""
    name = service.name
    if service.platform == "systemd":
        before = [
            Step(("systemctl", "--user", "stop", name), "stopped", may_fail=True),  # not loaded
            Step(("systemctl", "--user", "disable", name), "disabled at login", offline=True),
        ]
        return before, [Step(("systemctl", "--user", "daemon-reload"), "reloaded the unit files")]
    if service.platform == "launchd":
        bootout = Step(
            ("launchctl", "bootout", _launchd_target(service, uid)), "stopped and unloaded",
            may_fail=True,
        )  # fmt: skip
        return [bootout], []
    return [
        Step(("schtasks", "/End", "/TN", name), "stopped", may_fail=True),
        Step(("schtasks", "/Delete", "/TN", name, "/F"), "unregistered", may_fail=True),
    ], []


def status_steps(service: Service, *, uid: int = 0) -> list[Step]:
    """The query whose answer ``parse_*`` reads; systemd's ``is-enabled`` answers offline."""
    name = service.name
    if service.platform == "systemd":
        props = "--property=LoadState,UnitFileState,ActiveState,SubState,MainPID,Result"
        return [
            Step(("systemctl", "--user", "show", name, props), "asked systemd"),
            Step(("systemctl", "--user", "is-enabled", name), "asked systemd", offline=True),
        ]
    if service.platform == "launchd":
        return [Step(("launchctl", "print", _launchd_target(service, uid)), "asked launchd")]
    return [Step(("schtasks", "/Query", "/TN", name, "/FO", "CSV", "/NH"), "asked schtasks")]


def is_unreachable(stderr: str) -> bool:
    """Whether a manager tool's error says there is no manager to talk to (not that the
    command failed)."""
    text = stderr.lower()
    return any(marker in text for marker in _UNREACHABLE)


def _pid(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and int(text) > 0 else None


def parse_systemctl_show(output: str) -> ManagerState:
    """``systemctl --user show UNIT --property=…`` (``Key=value`` lines)."""
    props = dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)
    active, sub = props.get("ActiveState") or None, props.get("SubState")
    if active and props.get("Result") not in (None, "", "success") and active == "failed":
        sub = props["Result"]
    return ManagerState(
        reachable=True,
        loaded=props.get("LoadState") == "loaded",
        enabled=props.get("UnitFileState") or None,
        active=f"{active} ({sub})" if active and sub else active,
        running=active == "active" and sub == "running",
        pid=_pid(props.get("MainPID")),
    )


def parse_launchctl_print(output: str, returncode: int) -> ManagerState:
    """``launchctl print gui/<uid>/<label>``: 0 with ``state = …``/``pid = …`` lines when the
    agent is loaded; non-zero (113: "Could not find service") when it is not."""
    if returncode != 0:
        return ManagerState(reachable=True, enabled="not loaded", active="not loaded")
    fields: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and key in ("state", "pid", "last exit code") and key not in fields:
            fields[key] = value.strip()  # the first: nested blocks come later
    state = fields.get("state")
    return ManagerState(
        reachable=True,
        loaded=True,
        enabled="loaded",
        active=state,
        running=state == "running",
        pid=_pid(fields.get("pid")),
    )


def parse_schtasks_query(output: str, returncode: int) -> ManagerState:
    """``schtasks /Query /TN NAME /FO CSV /NH``: one row ``"\\name","next run","Status"``
    (Ready, Running, Disabled, ...); non-zero when there is no such task."""
    rows = [row for row in csv.reader(output.splitlines()) if len(row) >= 3]
    if returncode != 0 or not rows:
        return ManagerState(reachable=True, enabled="not registered", active="not registered")
    status = rows[0][2].strip()
    return ManagerState(
        reachable=True,
        loaded=True,
        enabled="disabled" if status.lower() == "disabled" else "enabled",
        active=status,
        running=status.lower() == "running",
    )
