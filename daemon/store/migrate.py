"""Forward-only schema migrations of the local database.

Migrations are files ``migrations/local/NNNN_name.sql`` (statements separated by ``;``) or
``NNNN_name.py`` (a ``migrate(conn: sqlite3.Connection) -> None`` function), numbered from 1
without gaps. The schema version is ``PRAGMA user_version`` (mirrored in ``meta``). All pending
migrations run in one transaction at start; a failure rolls every one back. A database whose
version is newer than the newest migration is refused and left untouched.

These functions are synchronous: the store calls them in its connection thread.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import migrations.local
from daemon.errors import MigrationError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(migrations.local.__file__).parent
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def apply(self, conn: sqlite3.Connection) -> None:
        if self.path.suffix == ".sql":
            for statement in split_statements(self.path.read_text("utf-8")):
                conn.execute(statement)
        else:
            _load_python(self.path)(conn)


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory``, in order; MigrationError on gaps or duplicates."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d} in {directory}")
        found[version] = Migration(version, match.group(2), path)
    ordered = [found[v] for v in sorted(found)]
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing in {directory}")
    return ordered


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (comments and blanks dropped)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise MigrationError(f"incomplete SQL statement at the end: {buffer.strip()[:60]!r}")
    return statements


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def refuse_newer(conn: sqlite3.Connection, available: list[Migration]) -> int:
    """The database's schema version; MigrationError if it is newer than ``available``."""
    current = schema_version(conn)
    if current > len(available):
        raise MigrationError(
            f"the database is at schema version {current}, newer than this syncd "
            f"(which knows up to {len(available)}); upgrade syncd or use another data dir"
        )
    return current


def migrate(
    conn: sqlite3.Connection, available: list[Migration] | None = None, *, target: int | None = None
) -> int:
    """Bring the database to the newest (or ``target``) version; return the version reached.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    migrations = discover() if available is None else available
    newest = len(migrations) if target is None else target
    current = refuse_newer(conn, migrations)
    if current >= newest:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)  # another process may have migrated meanwhile
        for migration in migrations[current:newest]:
            logger.info("migration.apply version=%d name=%s", migration.version, migration.name)
            migration.apply(conn)
        conn.execute(f"PRAGMA user_version = {int(newest)}")
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(newest),),
        )
        conn.execute("COMMIT")
    except BaseException as exc:
        conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise MigrationError(f"migration failed, nothing changed: {exc}") from exc
        raise
    return newest


def _load_python(path: Path) -> Callable[[sqlite3.Connection], None]:
    spec = importlib.util.spec_from_file_location(f"_syncd_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise MigrationError(f"cannot load migration {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, "migrate", None)
    if not callable(fn):
        raise MigrationError(f"{path} has no migrate(conn) function")
    return fn  # type: ignore[no-any-return]
