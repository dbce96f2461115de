"""``syncd call``: what ``daemon/cli.py`` runs for it. ``daemon/cli_cloud.py`` (the other
commands that talk to the daemon) shares its exit codes and its report of a daemon it cannot
talk to.

Exit codes: 0 ok; 1 the daemon answered with an error (or dropped the connection), or a daemon
runs but does not answer or refuses the discovery file's token; 2 bad command-line input; 3 no
daemon runs for the data dir. A daemon that cannot be talked to (1, 3) comes with a hint.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

import orjson

from daemon.logs import LOG_FILE
from ui_bridge.client import (
    ConnectionLost,
    DaemonNotRunning,
    DaemonUnavailable,
    TokenRefused,
    connect,
)
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
    "lost_text",
    "report_unavailable",
    "write_json",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NO_DAEMON: Final = 3
CONNECT_TIMEOUT: Final = 5.0


def write_json(value: Any, out: TextIO) -> None:
    """``value`` as indented JSON in UTF-8 (RFC 8259), whatever the locale's encoding: a
    terminal in Latin-1 or ``PYTHONIOENCODING=ascii`` must not turn an answered call (a
    write that committed) into a traceback and exit 1."""
    data = orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a StringIO
        out.write(data.decode())
        return
    out.flush()
    buffer.write(data)
    buffer.flush()


def report_unavailable(settings: Settings, exc: DaemonUnavailable) -> int:
    """Say why the daemon cannot be talked to, and what to do; the exit code to return: 3
    only when no daemon runs (starting one would not help otherwise: the data dir is taken)."""
    start = f"`syncd run --data-dir {settings.data_dir}`"
    if isinstance(exc, DaemonNotRunning):
        hint, code = f"start it with {start}", EXIT_NO_DAEMON
    elif isinstance(exc, TokenRefused):
        hint, code = f"restart the daemon (kill {exc.pid}, then {start})", EXIT_ERROR
    else:
        log = settings.data_dir / "logs" / LOG_FILE
        process = "" if exc.pid is None else f"the process (ps -p {exc.pid}) and "
        hint = f"it may be stopped or busy: check {process}its log {log}"
        code = EXIT_ERROR
    sys.stderr.write(f"syncd: {exc}\nhint: {hint}\n")
    return code


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
            write_json(error.to_object(), sys.stderr)
            return EXIT_USAGE
        reason = None
        if not isinstance(params, dict | list | None):  # (null: no params, as left out)
            reason = "PARAMS_JSON must be a JSON object or array"
        else:
            try:
                orjson.dumps(params)  # as the request will be written
            except TypeError:  # orjson reads 1024 levels deep but writes at most 254
                reason = "PARAMS_JSON is nested too deeply to send (at most 254 levels)"
        if reason is not None:
            write_json(
                RpcError(ErrorCode.INVALID_REQUEST, data={"reason": reason}).to_object(), sys.stderr
            )
            return EXIT_USAGE
    try:
        result = asyncio.run(_call_once(settings, method, params))
    except DaemonUnavailable as exc:
        return report_unavailable(settings, exc)
    except RpcError as exc:
        write_json(exc.to_object(), sys.stderr)
        return EXIT_ERROR
    except ConnectionLost as exc:
        sys.stderr.write(lost_text(exc))
        return EXIT_ERROR
    write_json(result, sys.stdout)
    return EXIT_OK


LOST: Final = "connection to the daemon lost"


def lost_text(exc: ConnectionLost) -> str:
    """``syncd: connection to the daemon lost``, then the cause when it says more (the
    client's own ``ConnectionLost`` begins with those words: they were printed twice)."""
    detail = str(exc)
    if not detail.startswith(LOST):
        detail = f"{LOST}: {detail}" if detail else LOST
    return f"syncd: {detail}\n"
