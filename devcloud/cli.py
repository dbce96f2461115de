"""``syncd devcloud …`` / ``python -m devcloud …``: run the local cloud, or seed users into it.

    devcloud [--port 54321] [--database-url URL] [--data-dir DIR] [--jwt-secret S]
             [--jwt-expiry N] [--max-rows N] [--ai-upstream URL] [--max-events-per-second N]
    devcloud user create --email E --password P [--org NAME] [--role owner|admin|member]
             [--database-url URL] [--data-dir DIR]

The server runs until SIGINT or SIGTERM and then stops cleanly (exit 0). ``user create`` works
while a server runs on the same data dir: pgserver shares one PostgreSQL per directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import platformdirs

from devcloud import _seed
from devcloud._gotrue import AuthError
from devcloud.context import DevcloudConfig
from devcloud.keys import DEFAULT_JWT_SECRET
from devcloud.schema import SchemaError, apply_all
from devcloud.server import RunningDevcloud, database, running_devcloud

logger = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32


def default_data_dir() -> Path:
    """``$SYNCD_DATA_DIR/devcloud``, else the platform's user data dir of syncd + ``devcloud``."""
    base = os.environ.get("SYNCD_DATA_DIR")
    root = Path(base) if base else Path(platformdirs.user_data_dir("syncd"))
    return root / "devcloud"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd devcloud", description="Run the local Supabase-compatible cloud."
    )
    _add_storage_options(parser)
    parser.add_argument("--port", type=int, default=54321, help="0: any free port")
    parser.add_argument("--jwt-secret", default=DEFAULT_JWT_SECRET, help="HS256 secret")
    parser.add_argument("--jwt-expiry", type=int, default=3600, help="access-token seconds")
    parser.add_argument(
        "--max-rows",
        type=int,
        default=DevcloudConfig.max_rows,
        help="the most rows one REST read answers, as PostgREST's db-max-rows "
        "(Supabase's default: 1000; 0: no cap)",
    )
    parser.add_argument("--ai-upstream", help="an OpenAI-compatible base URL for the AI functions")
    parser.add_argument(
        "--max-events-per-second",
        type=int,
        default=100,
        help="Realtime's project message rate (broadcasts; 100 as on Supabase)",
    )
    commands = parser.add_subparsers(dest="command", metavar="{user}")
    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="user_command", metavar="{create}", required=True
    )
    create = user.add_parser("create", help="create a confirmed user (and organisation)")
    _add_storage_options(create)
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--org", help="organisation name (created if missing)")
    create.add_argument("--role", choices=_seed.ORG_ROLES, default="owner")
    return parser


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given before or after ``user create``, the option lands in the namespace once.
    parser.add_argument("--database-url", default=argparse.SUPPRESS, help="use this PostgreSQL")
    parser.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="embedded PG")


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    database_url: str | None = getattr(args, "database_url", None)
    data_dir: Path = getattr(args, "data_dir", None) or default_data_dir()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "user":
        return asyncio.run(_create_user(args, database_url=database_url, data_dir=data_dir))
    if len(args.jwt_secret) < MIN_SECRET_LENGTH:
        parser.error(f"--jwt-secret must be at least {MIN_SECRET_LENGTH} characters")
    if not 0 <= args.port <= 65535 or args.jwt_expiry <= 0 or args.max_events_per_second <= 0:
        parser.error("--port must be 0..65535, --jwt-expiry and --max-events-per-second positive")
    if args.max_rows < 0:
        parser.error("--max-rows must be 0 (no cap) or positive")
    config = DevcloudConfig(
        jwt_secret=args.jwt_secret,
        jwt_expiry=args.jwt_expiry,
        max_rows=args.max_rows or None,
        ai_upstream=args.ai_upstream,
        max_events_per_second=args.max_events_per_second,
        port=args.port,
    )
    return _run(_serve(config, database_url=database_url, data_dir=data_dir))


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Serve on uvloop when it is installed (as uvicorn would by itself: asyncpg and the HTTP
    stack run markedly faster on it), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _serve(config: DevcloudConfig, *, database_url: str | None, data_dir: Path) -> int:
    stop = asyncio.Event()
    _on_signals(stop)
    try:
        async with running_devcloud(config, database_url=database_url, data_dir=data_dir) as dc:
            print(banner(dc), flush=True)
            await stop.wait()
            logger.info("devcloud.stopping")
    except (OSError, asyncpg.PostgresError, SchemaError, RuntimeError) as exc:
        print(f"devcloud: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def banner(dc: RunningDevcloud) -> str:
    """What ``supabase status`` prints, for the parts devcloud has."""
    return "\n".join(
        [
            "devcloud started.",
            f"API URL: {dc.url}",
            f"anon key: {dc.anon_key}",
            f"service_role key: {dc.service_role_key}",
        ]
    )


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: no loop signal handlers
            signal.signal(sig, lambda _sig, _frame: loop.call_soon_threadsafe(stop.set))


async def _create_user(
    args: argparse.Namespace, *, database_url: str | None, data_dir: Path
) -> int:
    try:
        async with database(database_url, data_dir) as url:
            conn = await asyncpg.connect(url)
            try:
                await apply_all(conn)
                user_id = await _seed.create_user(
                    conn, args.email, args.password, org=args.org, role=args.role
                )
            finally:
                await conn.close()
    except AuthError as exc:
        print(f"devcloud: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    except (ValueError, OSError, asyncpg.PostgresError, SchemaError) as exc:
        print(f"devcloud: cannot create the user: {exc}", file=sys.stderr)
        return 1
    print(user_id, flush=True)
    return 0
