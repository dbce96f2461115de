"""The cloud account this device last loaded (``store.account``), kept in ``meta``.

The cloud service loads the logged-in user's profile, first organisation and role from the
cloud at every login (daemon/sync/service.py). It keeps the last one here, as JSON under one
``meta`` key, so that after a restart ``cloud.status`` shows it at once, marked as not yet
confirmed, while the cloud cannot be reached; the next load replaces it and a logout removes
it. The store only keeps the text: the service checks what it reads back.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

import aiosqlite
import orjson

from daemon.store.engine import Writer, run_in_thread
from daemon.store.sql import meta_delete_sql, meta_get_sql, meta_put_sql
from daemon.store.txn import WriteContext

__all__ = ["AccountStore"]

KEY: Final = "cloud_account"


class AccountStore:
    """``load`` / ``save`` / ``clear`` the last loaded cloud account (a JSON object)."""

    def __init__(self, writer: Writer, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader

    async def load(self) -> Any:
        """The account last saved, decoded (None: none, or text that is not JSON)."""
        return await run_in_thread(self._reader, _read)

    async def save(self, account: dict[str, Any]) -> None:
        value = orjson.dumps(account).decode()

        def op(ctx: WriteContext) -> None:
            ctx.conn.execute(meta_put_sql(), {"key": KEY, "value": value})

        await self._writer.submit(op, small=True)

    async def clear(self) -> None:
        def op(ctx: WriteContext) -> None:
            ctx.conn.execute(meta_delete_sql(), {"key": KEY})

        await self._writer.submit(op, small=True)


def _read(conn: sqlite3.Connection) -> Any:
    found = conn.execute(meta_get_sql(), {"key": KEY}).fetchone()
    if found is None:
        return None
    try:
        return orjson.loads(found[0])
    except orjson.JSONDecodeError:
        return None
