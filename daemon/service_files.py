"""Start at login (``syncd service``): each platform's service definition for one data dir
and its name.

I/O-free: ``daemon/cli_service.py`` writes the files and runs the commands that
``daemon/service_commands.py`` plans. A service runs
``<python> -m daemon run --data-dir <dir>`` (absolute paths) and nothing else: no secret and no
other setting is copied into its definition; the daemon reads ``config.toml`` (and the
manager's environment) when it starts.

Names: the default data dir's service has the plain name (``syncd.service``, launchd label
``dev.syncd.daemon``, task ``syncd``); another data dir's adds ``-<folder>-<hash of the
path>`` (``syncd-work-3fa2c1d9e0.service``), so every data dir can have its own service and
installing one again finds the same name.

Restarts: on failure only, never after a clean exit (``syncd run`` exits 0 on SIGTERM), and
never in a tight loop: systemd waits ``RESTART_DELAY_S`` between starts and gives up after
``START_BURST`` starts within ``START_INTERVAL_S``; launchd waits ``THROTTLE_S``; Task
Scheduler retries ``TASK_RESTARTS`` times a minute apart. Exit 2 (bad configuration) is not
restarted by systemd: it would fail the same way until the user fixes ``config.toml``.

Windows: a Task Scheduler task (per user, logon trigger, created from XML) rather than a
shortcut in the Startup folder: only the task can restart the daemon after a crash, runs it
without a console window (pythonw) and without the default 72-hour time limit or the stop on
battery power, and can be started, stopped and queried by name (``schtasks``).
"""

from __future__ import annotations

import hashlib
import plistlib
import re
import subprocess
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Final, Literal
from xml.sax.saxutils import escape as xml_escape

from daemon.errors import ConfigError

__all__ = [
    "DEFAULT_LABEL",
    "DEFAULT_NAME",
    "Platform",
    "Service",
    "Target",
    "build_service",
    "launchd_plist",
    "service_suffix",
    "systemd_unit",
    "task_xml",
]

Platform = Literal["systemd", "launchd", "schtasks"]

DEFAULT_NAME: Final = "syncd"
DEFAULT_LABEL: Final = "dev.syncd.daemon"
# Restarts
RESTART_DELAY_S: Final = 5
START_INTERVAL_S: Final = 300
START_BURST: Final = 5
THROTTLE_S: Final = 10
TASK_RESTARTS: Final = 3
#: ``syncd run``'s exit code for bad usage or configuration (daemon/cli.py EXIT_USAGE)
EXIT_CONFIG: Final = 2
LAUNCHD_LOG: Final = "launchd.log"

#: a word systemd reads as it is: no quote, escape, specifier, variable or space
_PLAIN_WORD: Final = re.compile(r"[A-Za-z0-9_./:+,@=-]+")


@dataclass(frozen=True)
class Target:
    """What a service runs: ``python -m daemon run --data-dir data_dir``."""

    python: str  #: the interpreter, absolute (a venv's own, not the file it links to)
    data_dir: str  #: absolute
    is_default: bool  #: the platform's default data dir: the service gets the plain name
    #: where the ``daemon`` package is when that interpreter cannot import it by itself (a
    #: checkout run with PYTHONPATH); None when it is installed
    import_root: str | None = None

    def argv(self) -> list[str]:
        return [self.python, "-m", "daemon", "run", "--data-dir", self.data_dir]


@dataclass(frozen=True)
class Service:
    """One data dir's service on one platform: its name and its definition file."""

    platform: Platform
    name: str  #: systemd unit, launchd label or scheduled task
    path: str  #: the definition file
    text: str  #: the definition file's content
    target: Target


def service_suffix(data_dir: str, *, is_default: bool) -> str:
    """``""`` for the default data dir, else ``-<folder>-<10 hex digits of the path's hash>``:
    readable, stable for one path, distinct for two."""
    if is_default:
        return ""
    digest = hashlib.sha256(data_dir.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    folder = PurePosixPath(data_dir.replace("\\", "/")).name
    ascii_name = unicodedata.normalize("NFKD", folder).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:24].strip("-")
    return f"-{slug}-{digest}" if slug else f"-{digest}"


def build_service(
    platform: Platform,
    target: Target,
    *,
    home: str,
    environ: Mapping[str, str],
    user: str = "",
) -> Service:
    """The service of ``target`` on ``platform``; ``home`` and ``environ`` locate its file
    (``XDG_CONFIG_HOME``, ``LOCALAPPDATA``); ``user`` is the Windows account (DOMAIN\\name)."""
    _check_path("the interpreter", target.python)
    _check_path("--data-dir", target.data_dir)
    if target.import_root is not None:
        _check_path("the daemon package's folder", target.import_root)
    suffix = service_suffix(target.data_dir, is_default=target.is_default)
    if platform == "systemd":
        config = environ.get("XDG_CONFIG_HOME", "")
        base = PurePosixPath(config) if config.startswith("/") else PurePosixPath(home, ".config")
        name = f"{DEFAULT_NAME}{suffix}.service"
        path: PurePath = base / "systemd" / "user" / name
        text = systemd_unit(target)
    elif platform == "launchd":
        name = DEFAULT_LABEL + (f".{suffix[1:]}" if suffix else "")
        path = PurePosixPath(home, "Library", "LaunchAgents", f"{name}.plist")
        text = launchd_plist(target, label=name)
    else:
        name = f"{DEFAULT_NAME}{suffix}"
        local = environ.get("LOCALAPPDATA") or str(PureWindowsPath(home, "AppData", "Local"))
        path = PureWindowsPath(local, "syncd", "service", f"{name}.xml")
        text = task_xml(target, user=user)
    return Service(platform=platform, name=name, path=str(path), text=text, target=target)


def _check_path(what: str, path: str) -> None:
    # A line break would end the unit's line; no service manager takes control characters.
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        raise ConfigError(what, f"{path!r} contains a control character; a service cannot run it")


def _systemd_quoted(arg: str, *, variables: bool) -> str:
    """One word for ``ExecStart=``/``Environment=``, double-quoted unless it is plain. systemd
    decodes C escapes (``\\\\``, ``\\"``) in it and expands ``%`` specifiers; an argument of
    ``ExecStart`` (not its command) also expands ``$NAME``, so ``$`` is written ``$$`` there."""
    if _PLAIN_WORD.fullmatch(arg):
        return arg
    text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (text.replace("$", "$$") if variables else text) + '"'


def _systemd_exec(argv: list[str]) -> str:
    """``ExecStart=``'s value. systemd refuses a command whose path holds a quote or a
    backslash ("Executable name contains special characters"): say so before writing it."""
    if any(ch in argv[0] for ch in "\"'\\"):
        raise ConfigError(
            "the interpreter", f"systemd cannot run {argv[0]!r}: its path holds a quote or a "
            "backslash; install syncd with a Python whose path has none",
        )  # fmt: skip
    args = (_systemd_quoted(a, variables=True) for a in argv[1:])
    return " ".join([_systemd_quoted(argv[0], variables=False), *args])


def systemd_unit(target: Target) -> str:
    """The systemd user unit: started at login (``default.target``), restarted on failure;
    its stderr goes to the journal (``journalctl --user -u <unit>``), its JSON log to
    ``<data-dir>/logs/syncd.log`` as always."""
    exec_start = _systemd_exec(target.argv())
    environment = ""
    if target.import_root is not None:
        pythonpath = _systemd_quoted(f"PYTHONPATH={target.import_root}", variables=False)
        environment = f"Environment={pythonpath}\n"
    description = target.data_dir.replace("%", "%%")
    return (
        "# Written by `syncd service install`; `syncd service uninstall` removes it.\n"
        "[Unit]\n"
        f"Description=syncd local-first sync daemon ({description})\n"
        f"StartLimitIntervalSec={START_INTERVAL_S}\n"
        f"StartLimitBurst={START_BURST}\n"
        "\n"
        "[Service]\n"
        "Type=exec\n"  # `systemctl start` fails when the interpreter cannot be run
        f"ExecStart={exec_start}\n"
        f"{environment}"
        "Restart=on-failure\n"
        f"RestartSec={RESTART_DELAY_S}\n"
        f"RestartPreventExitStatus={EXIT_CONFIG}\n"
        "TimeoutStopSec=30\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def launchd_plist(target: Target, *, label: str) -> str:
    """The LaunchAgent: loaded at login (RunAtLoad), started again only after an unsuccessful
    exit and at most every ``THROTTLE_S`` seconds; stdout/stderr in the data dir's logs."""
    log = str(PurePosixPath(target.data_dir, "logs", LAUNCHD_LOG))
    agent: dict[str, object] = {
        "Label": label,
        "ProgramArguments": target.argv(),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_S,
        "StandardOutPath": log,
        "StandardErrorPath": log,
    }
    if target.import_root is not None:
        agent["EnvironmentVariables"] = {"PYTHONPATH": target.import_root}
    return plistlib.dumps(agent, sort_keys=False).decode("utf-8")


def _windowless(python: str) -> str:
    """``pythonw.exe`` next to ``python.exe``: no console window at every login."""
    path = PureWindowsPath(python)
    return str(path.with_name("pythonw.exe")) if path.name.lower() == "python.exe" else python


def task_xml(target: Target, *, user: str) -> str:
    """The Task Scheduler task (``schtasks /Create /XML``): at the logon of ``user`` only
    (which a user may create without elevation), restarted on failure, no time limit."""
    argv = target.argv()
    command = xml_escape(_windowless(argv[0]))
    arguments = xml_escape(subprocess.list2cmdline(argv[1:]))
    workdir = ""  # ``-m`` imports from the working directory: the checkout, when not installed
    if target.import_root is not None:
        workdir = f"\n      <WorkingDirectory>{xml_escape(target.import_root)}</WorkingDirectory>"
    who = xml_escape(user)
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>syncd local-first sync daemon ({xml_escape(target.data_dir)})</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>{who}</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{who}</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>{TASK_RESTARTS}</Count>
    </RestartOnFailure>
    <Enabled>true</Enabled>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
      <Arguments>{arguments}</Arguments>{workdir}
    </Exec>
  </Actions>
</Task>
"""
