"""Outbox entries this device cannot read: set aside as rejected, so they never hold back the
entries behind them.

An entry whose ``fields`` (or ``field_hlc``) text is not a JSON object (a damaged file, a bad
manual edit) cannot be pushed, ever. ``read_outbox`` raises ``CorruptEntry`` for it;
``SyncRepo.take_outbox`` then moves it to ``rejected`` (reason ``local_corrupt``, ``detail``
saying which column and what is wrong; the stored text kept as it was, in the change's
``stored``, so nothing is lost) and takes again. The log names the entry, never its content.
"""

from __future__ import annotations

import logging
from typing import Final

from daemon.store.codec import dump_json_text
from daemon.store.ids import uuid7
from daemon.store.sql import insert_sql
from daemon.store.sync_outbox import rejected_view
from daemon.store.sync_types import CorruptEntry
from daemon.store.txn import WriteContext, WriteOp

logger = logging.getLogger(__name__)

LOCAL_CORRUPT: Final = "local_corrupt"


def set_aside_op(bad: CorruptEntry) -> WriteOp:
    """Move the entry to ``rejected`` (announced on ``sync.rejected``); nothing if it is gone
    already (e.g. unlinked meanwhile)."""

    def op(ctx: WriteContext) -> bool:
        gone = ctx.conn.execute("DELETE FROM outbox WHERE id = ?", (bad.entry_id,)).rowcount
        if not gone:
            return False
        stamp = ctx.stamp()
        record = {
            "id": uuid7(stamp.ms),
            "table_name": bad.table,
            "row_id": bad.row_id,
            "workspace_id": bad.workspace_id,
            "change": dump_json_text(
                {"fields": None, "hlc": bad.hlc, "origin": bad.origin, "stored": bad.stored}
            ),
            "reason": LOCAL_CORRUPT,
            "detail": f"outbox entry {bad.entry_id}: its {bad.column} {bad.problem}",
            "created_at": stamp.iso,
        }
        ctx.conn.execute(insert_sql("rejected", tuple(record)), record)
        view = rejected_view(record)
        ctx.emit(
            table="rejected", op="insert", topic="sync.rejected", row=view, fields={},
            stamp=stamp, outbox=False,
        )  # fmt: skip
        logger.warning(
            "sync.outbox_corrupt entry=%d table=%s id=%s column=%s problem=%s",
            bad.entry_id, bad.table, bad.row_id, bad.column, bad.problem,
        )  # fmt: skip
        return True

    return op
