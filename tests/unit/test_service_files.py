"""The start-at-login service's definitions and names (service_files) and the commands that
install, remove and inspect it and their answers (service_commands), for the three platforms."""

from __future__ import annotations

import plistlib
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

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
from daemon.service_files import (
    Target,
    build_service,
    launchd_plist,
    service_suffix,
    systemd_unit,
    task_xml,
)

PLAIN = Target(python="/home/u/.venv/bin/python", data_dir="/home/u/.local/share/syncd",
               is_default=True)  # fmt: skip
ODD_DIR = '/home/u/my data/é $HOME %h "q" \\x & <y>'
ODD = Target(python="/opt/my py/é $x %n/python", data_dir=ODD_DIR, is_default=False,
             import_root="/src/sync d %i")  # fmt: skip
TASK = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def systemd_words(line: str) -> list[str]:
    """``ExecStart=``'s words as systemd reads them (systemd.service(5), "Command lines"):
    double-quoted words with C escapes, ``%%`` for ``%``, and ``$$`` for ``$`` in arguments."""
    words = []
    for n, match in enumerate(re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)):
        quoted, plain = match.groups()
        word = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
        assert "%" not in word.replace("%%", ""), f"an unescaped specifier in {word!r}"
        word = word.replace("%%", "%")
        words.append(word if n == 0 else word.replace("$$", "$"))
    return words


def exec_start(unit: str) -> str:
    return next(line for line in unit.splitlines() if line.startswith("ExecStart="))[10:]


def test_the_default_data_dir_gets_the_plain_names() -> None:
    env: dict[str, str] = {}
    systemd = build_service("systemd", PLAIN, home="/home/u", environ=env)
    launchd = build_service("launchd", PLAIN, home="/Users/u", environ=env)
    task = build_service("schtasks", PLAIN, home="C:\\Users\\u", environ=env, user="PC\\u")
    assert (systemd.name, systemd.path) == (
        "syncd.service",
        "/home/u/.config/systemd/user/syncd.service",
    )
    assert (launchd.name, launchd.path) == (
        "dev.syncd.daemon",
        "/Users/u/Library/LaunchAgents/dev.syncd.daemon.plist",
    )
    assert (task.name, task.path) == (
        "syncd",
        "C:\\Users\\u\\AppData\\Local\\syncd\\service\\syncd.xml",
    )


def test_xdg_config_home_is_used_when_absolute() -> None:
    service = build_service("systemd", PLAIN, home="/h", environ={"XDG_CONFIG_HOME": "/c"})
    assert service.path == "/c/systemd/user/syncd.service"
    relative = build_service("systemd", PLAIN, home="/h", environ={"XDG_CONFIG_HOME": "c"})
    assert relative.path == "/h/.config/systemd/user/syncd.service"  # the spec ignores it


def test_another_data_dir_gets_a_stable_distinct_name() -> None:
    a = service_suffix("/srv/work", is_default=False)
    assert re.fullmatch(r"-work-[0-9a-f]{10}", a)
    assert service_suffix("/srv/work", is_default=False) == a
    assert service_suffix("/home/work", is_default=False) != a  # same folder name, other path
    assert re.fullmatch(
        r"-donnees-ete-[0-9a-f]{10}", service_suffix("/x/Données Été", is_default=False)
    )
    assert re.fullmatch(r"-[0-9a-f]{10}", service_suffix("/x/数据", is_default=False))
    odd = build_service("launchd", ODD, home="/Users/u", environ={})
    assert re.fullmatch(r"dev\.syncd\.daemon\.x-y-[0-9a-f]{10}", odd.name)
    unit = build_service("systemd", ODD, home="/h", environ={})
    assert re.fullmatch(r"syncd-x-y-[0-9a-f]{10}\.service", unit.name)


def test_systemd_unit_runs_the_daemon_and_restarts_it_on_failure_only() -> None:
    unit = systemd_unit(PLAIN)
    assert exec_start(unit) == (
        "/home/u/.venv/bin/python -m daemon run --data-dir /home/u/.local/share/syncd"
    )
    for line in ("Type=exec", "Restart=on-failure", "RestartSec=5", "StartLimitBurst=5",
                 "StartLimitIntervalSec=300", "RestartPreventExitStatus=2",
                 "WantedBy=default.target"):  # fmt: skip
        assert f"\n{line}\n" in unit
    assert "Environment" not in unit  # no setting, no secret: config.toml is read at start


def test_systemd_quoting_of_odd_paths_round_trips() -> None:
    unit = systemd_unit(ODD)
    assert systemd_words(exec_start(unit)) == ODD.argv()
    assert exec_start(unit).startswith('"/opt/my py/é $x %%n/python" -m daemon run')
    env = next(line for line in unit.splitlines() if line.startswith("Environment="))
    assert env == 'Environment="PYTHONPATH=/src/sync d %%i"'  # no $ expansion there
    description = next(line for line in unit.splitlines() if line.startswith("Description="))
    assert "%%h" in description and "%h" not in description.replace("%%h", "")


@pytest.mark.parametrize("python", ['/opt/a"b/python', "/opt/a'b/python", "/opt/a\\b/python"])
def test_systemd_refuses_an_interpreter_path_it_cannot_run(python: str) -> None:
    with pytest.raises(ConfigError, match="quote or a backslash"):
        systemd_unit(Target(python=python, data_dir="/d", is_default=False))


@pytest.mark.parametrize("platform", ["systemd", "launchd", "schtasks"])
def test_a_control_character_in_a_path_is_refused(platform: str) -> None:
    target = Target(python="/p", data_dir="/d\nExecStartPre=/bin/evil", is_default=False)
    with pytest.raises(ConfigError, match="control character"):
        build_service(platform, target, home="/h", environ={})  # type: ignore[arg-type]


def test_launchd_plist_escapes_paths_and_keeps_alive_after_failures_only() -> None:
    text = launchd_plist(ODD, label="dev.syncd.daemon.x")
    assert "&amp; &lt;y&gt;" in text and "& <y>" not in text
    agent = plistlib.loads(text.encode())
    assert agent["ProgramArguments"] == ODD.argv()
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ThrottleInterval"] == 10
    assert agent["StandardErrorPath"] == f"{ODD_DIR}/logs/launchd.log"
    assert agent["EnvironmentVariables"] == {"PYTHONPATH": "/src/sync d %i"}
    assert "EnvironmentVariables" not in plistlib.loads(launchd_plist(PLAIN, label="l").encode())


def test_task_xml_runs_pythonw_at_the_users_logon_without_time_limit() -> None:
    target = Target(python="C:\\Program Files\\Py\\python.exe", data_dir="C:\\Users\\u\\a & b é",
                    is_default=False)  # fmt: skip
    text = task_xml(target, user="PC\\u")
    root = ET.fromstring(text.encode("utf-16"))
    exec_ = root.find(f"{TASK}Actions/{TASK}Exec")
    assert exec_ is not None
    assert exec_.findtext(f"{TASK}Command") == "C:\\Program Files\\Py\\pythonw.exe"
    arguments = exec_.findtext(f"{TASK}Arguments")
    assert arguments == '-m daemon run --data-dir "C:\\Users\\u\\a & b é"'
    assert arguments == subprocess.list2cmdline(target.argv()[1:])
    assert root.findtext(f"{TASK}Triggers/{TASK}LogonTrigger/{TASK}UserId") == "PC\\u"
    assert root.findtext(f"{TASK}Settings/{TASK}ExecutionTimeLimit") == "PT0S"
    assert root.findtext(f"{TASK}Settings/{TASK}RestartOnFailure/{TASK}Count") == "3"
    assert root.findtext(f"{TASK}Settings/{TASK}StopIfGoingOnBatteries") == "false"
    assert exec_.find(f"{TASK}WorkingDirectory") is None


def argvs(steps: list[Step]) -> list[tuple[str, ...]]:
    return [step.argv for step in steps]


def test_systemd_plans() -> None:
    service = build_service("systemd", PLAIN, home="/h", environ={})
    off = ManagerState(reachable=False)
    changed = install_steps(service, changed=True, state=off)
    assert argvs(changed) == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "syncd.service"),
        ("systemctl", "--user", "reset-failed", "syncd.service"),
        ("systemctl", "--user", "restart", "syncd.service"),
    ]
    assert [step.offline for step in changed] == [False, True, False, False]
    same = install_steps(service, changed=False, state=off)
    assert same[-1].argv == ("systemctl", "--user", "start", "syncd.service")
    before, after = uninstall_steps(service)
    assert argvs(before) == [
        ("systemctl", "--user", "stop", "syncd.service"),
        ("systemctl", "--user", "disable", "syncd.service"),
    ]
    assert argvs(after) == [("systemctl", "--user", "daemon-reload")]
    assert status_steps(service)[1].argv == ("systemctl", "--user", "is-enabled", "syncd.service")


def test_launchd_plans() -> None:
    service = build_service("launchd", PLAIN, home="/Users/u", environ={})
    target = "gui/501/dev.syncd.daemon"
    fresh = install_steps(service, changed=True, state=ManagerState(reachable=True), uid=501)
    assert argvs(fresh) == [
        ("launchctl", "enable", target),
        ("launchctl", "bootstrap", "gui/501", service.path),
    ]
    loaded = ManagerState(reachable=True, loaded=True, running=True)
    changed = install_steps(service, changed=True, state=loaded, uid=501)
    assert argvs(changed)[0] == ("launchctl", "bootout", target)
    assert argvs(install_steps(service, changed=False, state=loaded, uid=501)) == [
        ("launchctl", "kickstart", target)
    ]
    before, after = uninstall_steps(service, uid=501)
    assert argvs(before) == [("launchctl", "bootout", target)] and before[0].may_fail
    assert after == []


def test_schtasks_plans() -> None:
    service = build_service("schtasks", PLAIN, home="C:\\Users\\u", environ={})
    running = ManagerState(reachable=True, loaded=True, running=True)
    assert argvs(install_steps(service, changed=True, state=running)) == [
        ("schtasks", "/End", "/TN", "syncd"),
        ("schtasks", "/Create", "/TN", "syncd", "/XML", service.path, "/F"),
        ("schtasks", "/Run", "/TN", "syncd"),
    ]
    assert install_steps(service, changed=False, state=running) == []
    idle = ManagerState(reachable=True, loaded=True)
    assert argvs(install_steps(service, changed=False, state=idle)) == [
        ("schtasks", "/Run", "/TN", "syncd")
    ]
    before, _ = uninstall_steps(service)
    assert before[-1].argv == ("schtasks", "/Delete", "/TN", "syncd", "/F")


@pytest.mark.parametrize(
    ("stderr", "unreachable"),
    [
        ("Failed to connect to bus: No medium found", True),
        ("Failed to connect to bus: $DBUS_SESSION_BUS_ADDRESS and $XDG_RUNTIME_DIR not defined "
         "(consider using --machine=<user>@.host --user to connect to bus of other user)", True),
        ("System has not been booted with systemd as init system (PID 1). Can't operate.", True),
        ("Bootstrap failed: 125: Domain does not support specified action", True),
        ("Job for syncd.service failed because the control process exited with error code.",
         False),
        ("Failed to enable unit: Unit file syncd.service does not exist.", False),
    ],
)  # fmt: skip
def test_is_unreachable(stderr: str, unreachable: bool) -> None:
    assert is_unreachable(stderr) is unreachable


def test_parse_systemctl_show() -> None:
    running = parse_systemctl_show(
        "LoadState=loaded\nUnitFileState=enabled\nActiveState=active\nSubState=running\n"
        "MainPID=4242\nResult=success\n"
    )
    assert (running.loaded, running.enabled, running.active) == (
        True,
        "enabled",
        "active (running)",
    )
    assert (running.running, running.pid) == (True, 4242)
    failed = parse_systemctl_show(
        "LoadState=loaded\nUnitFileState=enabled\nActiveState=failed\nSubState=failed\n"
        "MainPID=0\nResult=exit-code\n"
    )
    assert (failed.active, failed.running, failed.pid) == ("failed (exit-code)", False, None)
    missing = parse_systemctl_show("LoadState=not-found\nActiveState=inactive\nSubState=dead\n")
    assert not missing.loaded and missing.active == "inactive (dead)"


def test_parse_launchctl_print() -> None:
    output = """gui/501/dev.syncd.daemon = {
	active count = 1
	path = /Users/u/Library/LaunchAgents/dev.syncd.daemon.plist
	state = running
	program = /usr/bin/python3
	pid = 812
	last exit code = (never exited)
	endpoints = {
		state = active
	}
}
"""
    state = parse_launchctl_print(output, 0)
    assert (state.loaded, state.active, state.running, state.pid) == (True, "running", True, 812)
    gone = parse_launchctl_print("Could not find service", 113)
    assert not gone.loaded and not gone.running


def test_parse_schtasks_query() -> None:
    state = parse_schtasks_query('"\\syncd","N/A","Running"\r\n', 0)
    assert (state.loaded, state.running, state.enabled) == (True, True, "enabled")
    disabled = parse_schtasks_query('"\\syncd","N/A","Disabled"\r\n', 0)
    assert (disabled.enabled, disabled.running) == ("disabled", False)
    missing = parse_schtasks_query("", 1)
    assert not missing.loaded
