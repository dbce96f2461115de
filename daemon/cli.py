"""The ``syncd`` command (also ``python -m daemon``): parses arguments, then calls app or
client code; no logic of its own."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon import __version__
from daemon.config import Settings, load_settings
from daemon.errors import ConfigError, DaemonError, FileFailed

EXIT_ERROR = 1
EXIT_USAGE = 2

#: The exit codes of the commands that ask the running daemon (ui_bridge/cli_commands.py).
_EXIT_CODES = """\
exit codes:
  0  ok
  1  the daemon answered an error (printed on stderr), or a daemon runs but does not
     answer (stopped or busy) or refuses the token in daemon.json
  2  bad usage
  3  no daemon runs for the data dir (start one with `syncd run`)
"""

_CALL_EPILOG = f"""\
The result is printed as JSON on stdout; an error the daemon answers, as its JSON-RPC
error object on stderr. Example:
  syncd call workspace.create '{{"name": "notes"}}'

{_EXIT_CODES}"""

_SERVICE_DESCRIPTION = """\
Start the daemon at login, as a per-user service of the platform's service manager:
a systemd user unit (~/.config/systemd/user/), a launchd agent (~/Library/LaunchAgents/)
or a Task Scheduler logon task (Windows). The service runs this Python with
`-m daemon run --data-dir DIR` (absolute paths), is restarted after a failure (not after
a clean stop), and copies no setting or secret: the daemon reads DIR/config.toml when it
starts. One service per data dir: the default data dir's is named syncd (launchd:
dev.syncd.daemon), another's syncd-<folder>-<hash of its path>."""

_SERVICE_EPILOG = """\
exit codes:
  install    0 installed, enabled and started; 1 a command failed, or the service
             manager could not be reached (the file is in place: start the daemon
             with `syncd run`)
  uninstall  0 removed, or nothing was installed; 1 a command failed
  status     0 installed and the data dir's daemon runs; 3 installed, no daemon runs;
             4 not installed
  all        2 bad usage or configuration
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (default: $SYNCD_DATA_DIR or the platform's user data dir)",
    )
    parser = argparse.ArgumentParser(
        prog="syncd", description="A local-first sync daemon: SQLite store, cloud sync, local API."
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    run.add_argument("--port", type=int, default=None, help="local API port (0: any free port)")

    _add_status_and_call(sub, common)
    _add_cloud_commands(sub, common)
    _add_compact(sub, common)
    _add_service(sub, common)
    sub.add_parser(
        "devcloud",
        add_help=False,
        help="run the local Supabase-compatible cloud (see `syncd devcloud --help`)",
    )
    return parser


def _add_status_and_call(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """The commands that ask the running daemon directly; their help lists the exit codes."""

    def add(name: str, summary: str, description: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=summary,
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's lines
        )

    description = "Print the state of the running daemon: pid, port, connections, cloud, sync."
    status = add("status", "state of the running daemon", description, _EXIT_CODES)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    description = "Make one JSON-RPC call to the running daemon."
    call = add("call", "one JSON-RPC call to the daemon", description, _CALL_EPILOG)
    call.add_argument(
        "method",
        metavar="METHOD",
        help="a JSON-RPC method name, e.g. workspace.create (`syncd call rpc.discover` lists them)",
    )
    call.add_argument(
        "params",
        metavar="PARAMS_JSON",
        nargs="?",
        default=None,
        help="the call's params: a JSON object (by name) or array (by position); none if left out",
    )


def _add_cloud_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Cloud commands: each asks the running daemon (which owns the session and the sync)."""
    login = sub.add_parser("login", parents=[common], help="log in to the cloud")
    login.add_argument("--email", required=True)
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    sub.add_parser("logout", parents=[common], help="log out of the cloud")
    link = sub.add_parser("link", parents=[common], help="link a folder's workspace to the cloud")
    link.add_argument("path", metavar="PATH")
    link.add_argument(
        "--cloud-workspace", metavar="ID", help="clone this cloud workspace into PATH"
    )
    unlink = sub.add_parser("unlink", parents=[common], help="stop syncing a folder's workspace")
    unlink.add_argument("path", metavar="PATH")
    sub.add_parser("push", parents=[common], help="push local changes now and wait")
    sub.add_parser("pull", parents=[common], help="pull cloud changes now and wait")


_COMPACT_DESCRIPTION = """\
Give the disk space of freed pages back to the file system: checkpoint the
write-ahead log and run SQLite's VACUUM on syncd.db, then print its size before
and after. SQLite reuses the pages that deletes free but never shrinks the file.
Deleted rows are kept (sync may still need them): only free pages are given back.

Offline: stop the daemon first (it refuses, exit 1, while a daemon runs for the
data dir); it holds the data dir's lock meanwhile, so no daemon starts.

Like any VACUUM it needs free disk space of up to twice the database's size: a
temporary copy (in $SQLITE_TMPDIR, else $TMPDIR, else /var/tmp or /tmp) and the
write-ahead log that writes it back. VACUUM is one transaction: when it fails
(a full disk, a read-only file) the database is left as it was."""

_COMPACT_EPILOG = """\
exit codes:
  0  compacted
  1  a daemon runs for the data dir, there is no database, or the compaction
     failed (the database is as it was)
  2  bad usage
"""


def _add_compact(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    compact = sub.add_parser(
        "compact",
        parents=[common],
        help="shrink the database file (VACUUM) while no daemon runs",
        description=_COMPACT_DESCRIPTION,
        epilog=_COMPACT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compact.add_argument("--json", action="store_true", help="print the sizes as JSON")


def _add_service(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    service = sub.add_parser(
        "service",
        help="start the daemon at login: install, uninstall or show its service",
        description=_SERVICE_DESCRIPTION,
        epilog=_SERVICE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, summary in (
        ("install", "write the data dir's service, enable it at login and start it"),
        ("uninstall", "stop and disable the data dir's service and remove its file"),
        ("status", "whether it is installed, what the manager says, whether the daemon runs"),
    ):
        action = actions.add_parser(
            name,
            parents=[common],
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}.",
            epilog=_SERVICE_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "status":
            action.add_argument("--json", action="store_true", help="print the status as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "devcloud":
        from devcloud.cli import main as devcloud_main

        return devcloud_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    handler = _HANDLERS[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"syncd: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DaemonError, OSError) as exc:  # e.g. AlreadyRunning; the log dir cannot be created
        if isinstance(exc, OSError) and exc.filename is not None:
            exc = FileFailed.from_os_error(exc, "use")
        print(f"syncd: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _settings(args: argparse.Namespace, *, port: int | None = None) -> Settings:
    return load_settings(data_dir=args.data_dir, port=port)


def _run(args: argparse.Namespace) -> int:
    from daemon import loop
    from daemon.app import run_daemon
    from daemon.logs import configure_logging

    settings = _settings(args, port=args.port)
    configure_logging(settings.data_dir, settings.log_level)
    loop.tune_gc()
    try:
        code = loop.run(run_daemon(settings), settings.event_loop)
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        code = 130
    _exit_now_if_threads_linger(code)
    return code


def _exit_now_if_threads_linger(code: int) -> None:
    """A database thread stuck past the shutdown budget must not keep the process alive:
    everything acknowledged is committed, so exiting without waiting for it loses nothing."""
    lingering = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon
                 and t is not threading.main_thread()]  # fmt: skip
    if lingering:
        logging.getLogger(__name__).warning("daemon.exit threads still running: %s", lingering)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _status(args: argparse.Namespace) -> int:
    from daemon.cli_cloud import status

    return status(_settings(args), as_json=args.json)


def _login(args: argparse.Namespace) -> int:
    from daemon.cli_cloud import login

    return login(_settings(args), args.email, password_stdin=args.password_stdin)


def _logout(args: argparse.Namespace) -> int:
    from daemon.cli_cloud import logout

    return logout(_settings(args))


def _link(args: argparse.Namespace) -> int:
    from daemon.cli_cloud import link

    return link(_settings(args), args.path, cloud_workspace=args.cloud_workspace)


def _unlink(args: argparse.Namespace) -> int:
    from daemon.cli_cloud import unlink

    return unlink(_settings(args), args.path)


def _push(args: argparse.Namespace) -> int:
    from daemon.cli_cloud import sync_now

    return sync_now(_settings(args), "push")


def _pull(args: argparse.Namespace) -> int:
    from daemon.cli_cloud import sync_now

    return sync_now(_settings(args), "pull")


def _call(args: argparse.Namespace) -> int:
    from ui_bridge.cli_commands import call

    return call(_settings(args), args.method, args.params)


def _compact(args: argparse.Namespace) -> int:
    from daemon.cli_compact import compact

    return compact(_settings(args), as_json=args.json)


def _service(args: argparse.Namespace) -> int:
    from daemon import cli_service

    settings = _settings(args)
    if args.action == "install":
        return cli_service.install(settings)
    if args.action == "uninstall":
        return cli_service.uninstall(settings)
    return cli_service.status(settings, as_json=args.json)


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "status": _status,
    "call": _call,
    "login": _login,
    "logout": _logout,
    "link": _link,
    "unlink": _unlink,
    "push": _push,
    "pull": _pull,
    "compact": _compact,
    "service": _service,
}

# `python -m daemon.cli …` runs the command as `python -m daemon …` does (not a silent exit 0).
if __name__ == "__main__":
    raise SystemExit(main())
