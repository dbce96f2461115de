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

from daemon.store.sync_outbox import file_rejected
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
        stored = {"fields": None, "hlc": bad.hlc, "origin": bad.origin, "stored": bad.stored}
        file_rejected(
            ctx,
            ctx.stamp(),
            (bad.table, bad.row_id, bad.workspace_id),
            stored,
            reason=LOCAL_CORRUPT,
            detail=f"outbox entry {bad.entry_id}: its {bad.column} {bad.problem}",
        )
        logger.warning(
            "sync.outbox_corrupt entry=%d table=%s id=%s column=%s problem=%s",
            bad.entry_id, bad.table, bad.row_id, bad.column, bad.problem,
        )  # fmt: skip
        return True

    return op
