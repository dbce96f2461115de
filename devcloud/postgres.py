"""Where devcloud's PostgreSQL comes from: an embedded server (the pgserver wheel) or a URL."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@dataclass
class Postgres:
    """A reachable PostgreSQL server; ``url`` is a libpq/asyncpg URL of its maintenance database."""

    url: str
    _embedded: Any = None

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.cleanup()
            self._embedded = None


def start_embedded(data_dir: Path) -> Postgres:
    """Start (or attach to) an embedded PostgreSQL whose files live in ``data_dir``.

    pgserver keeps one server per directory and shares it between processes, so a second
    ``syncd devcloud`` command on the same data dir (e.g. ``user create``) attaches to the
    running one. It listens on a unix socket only.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    # pgserver asks platformdirs for a runtime dir at import; without a private (0700) one it
    # warns. The data dir itself cannot serve: initdb wants it to itself.
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = data_dir.with_name(data_dir.name + ".run")
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    from pgserver.postgres_server import get_server  # heavy import: only when embedding

    server = get_server(str(data_dir), cleanup_mode="stop")
    return Postgres(url=server.get_uri(), _embedded=server)


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def random_database_name(prefix: str = "syncd_test") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"
