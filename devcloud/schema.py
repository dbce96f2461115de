"""The cloud schema: devcloud's bootstrap (what a Supabase project has out of the box: roles, the
``auth`` schema) followed by every ``migrations/cloud/NNNN_*.sql`` file, in name order.

Every file is idempotent, so ``apply_all`` runs at every start. Concurrent appliers on one
database (several devcloud processes, parallel tests) are serialised by a transaction-level
advisory lock; each call applies everything in one transaction, so a failure changes nothing.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

logger = logging.getLogger(__name__)

# Any fixed 64-bit number: the key of the advisory lock that serialises schema appliers.
SCHEMA_LOCK_KEY = 0x73796E6364_01  # "syncd" + 1

_MIGRATION_NAME = re.compile(r"^\d{4}_[A-Za-z0-9_]+\.sql$")


def bootstrap_sql() -> str:
    """The text of ``devcloud/sql/bootstrap.sql``."""
    return resources.files("devcloud").joinpath("sql", "bootstrap.sql").read_text("utf-8")


def migration_files() -> list[Traversable]:
    """Every ``migrations/cloud/NNNN_*.sql`` file, in name order."""
    folder = resources.files("migrations").joinpath("cloud")
    files = [f for f in folder.iterdir() if f.is_file() and _MIGRATION_NAME.match(f.name)]
    return sorted(files, key=lambda f: f.name)


def schema_scripts() -> list[tuple[str, str]]:
    """``(name, sql)`` of every script ``apply_all`` runs, in order."""
    scripts = [("devcloud/sql/bootstrap.sql", bootstrap_sql())]
    scripts += [(f"migrations/cloud/{f.name}", f.read_text("utf-8")) for f in migration_files()]
    return scripts


async def apply_all(conn: asyncpg.Connection) -> None:
    """Apply the bootstrap and every cloud migration on ``conn`` (a superuser connection).

    Idempotent and safe to call at every start, also from several processes at once.
    """
    scripts = schema_scripts()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_KEY)
        for name, sql in scripts:
            logger.debug("schema.apply %s", name)
            try:
                await conn.execute(sql)
            except asyncpg.PostgresError as exc:
                raise SchemaError(name, exc) from exc
    logger.info("schema.applied %d scripts", len(scripts))


class SchemaError(Exception):
    """A schema script failed; nothing was applied."""

    def __init__(self, script: str, cause: asyncpg.PostgresError) -> None:
        super().__init__(f"{script}: {type(cause).__name__}: {cause}")
        self.script = script
