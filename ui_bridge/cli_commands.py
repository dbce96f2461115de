"""``syncd call``: what ``daemon/cli.py`` runs for it. ``daemon/cli_cloud.py`` (the other
commands that talk to the daemon) shares its exit codes and its "no daemon" report.

Exit codes: 0 ok; 1 the daemon answered with an error (or dropped the connection); 2 bad
command-line input; 3 no daemon runs for the data dir (with a hint on stderr).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

import orjson

from ui_bridge.client import ConnectionLost, DaemonNotRunning, connect
from ui_bridge.jsonrpc import ErrorCode, RpcError

if TYPE_CHECKING:
    from daemon.config import Settings

__all__ = [
    "CONNECT_TIMEOUT",
    "EXIT_ERROR",
    "EXIT_NO_DAEMON",
    "EXIT_OK",
    "EXIT_USAGE",
    "call",
    "report_no_daemon",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NO_DAEMON: Final = 3
CONNECT_TIMEOUT: Final = 5.0


def _dump(value: Any, out: TextIO) -> None:
    out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def report_no_daemon(settings: Settings, exc: DaemonNotRunning) -> int:
    """Say that no daemon runs (and how to start one); the exit code to return."""
    sys.stderr.write(
        f"syncd: {exc}\nhint: start it with `syncd run --data-dir {settings.data_dir}`\n"
    )
    return EXIT_NO_DAEMON


async def _call_once(settings: Settings, method: str, params: Any) -> Any:
    client = await connect(
        data_dir=settings.data_dir, reconnect=False, connect_timeout=CONNECT_TIMEOUT
    )
    try:
        return await client.call(method, params)
    finally:
        await client.close()


def call(settings: Settings, method: str, params_json: str | None) -> int:
    """One JSON-RPC call: the result as JSON on stdout (0), or the error object on stderr (1)."""
    params: Any = None
    if params_json is not None and params_json.strip():
        try:
            params = orjson.loads(params_json)
        except orjson.JSONDecodeError as exc:
            error = RpcError(ErrorCode.PARSE_ERROR, data={"reason": f"PARAMS_JSON: {exc}"})
            _dump(error.to_object(), sys.stderr)
            return EXIT_USAGE
    try:
        result = asyncio.run(_call_once(settings, method, params))
    except DaemonNotRunning as exc:
        return report_no_daemon(settings, exc)
    except RpcError as exc:
        _dump(exc.to_object(), sys.stderr)
        return EXIT_ERROR
    except ConnectionLost as exc:
        sys.stderr.write(f"syncd: connection to the daemon lost: {exc}\n")
        return EXIT_ERROR
    _dump(result, sys.stdout)
    return EXIT_OK
