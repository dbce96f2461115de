"""Changes the cloud refused for ``clock_skew``: sent again, whole, once their time has come.

The cloud refuses a change whose clock is more than an hour ahead of its own (``clock_skew``,
cloud migration 0005), e.g. one written after the wall clock ran fast and was set back (the
clock never goes back). That clears by itself as time passes, so such a refusal is not final:
``complete_push`` files it in ``rejected`` like any other (the rows behind it are not held
back; it is shown, ``sync.rejected``) with a ``retry_at`` (hlc.py ``skew_retry_at``: when the
cloud's clock will have caught up, never sooner than ``SKEW_RETRY_FLOOR_MS`` after the refusal,
and a row refused again waits twice as long as the time before, up to ``SKEW_RETRY_CAP_MS``:
its entry's ``attempts`` carries how often, ``hlc.skew_attempt``).
Each linked workspace's sync calls ``requeue_due_op`` when the earliest ``retry_at`` of its
rejections has come (and after a push that filed rejections); it takes the rows all of whose
``clock_skew`` rejections are due, removes those rejections (each announced once more on
``sync.rejected`` with ``retried_at``) and queues the row again whole (its stored state, every
field under its own clock: nothing it was refused with is lost, whatever the refused change
held), as a rejected create's next edit is sent (sync_outbox.py). A document's update goes as
the document's whole content. If it carried the row's create, the rows rejected under it (its
messages, …, refused for the missing parent) follow it whole. A retry the cloud refuses again
is filed again with a new ``retry_at``, later each time: never a hot loop (a wall clock that
runs fast, with no ``Date`` in the cloud's answers, used to be retried every 5 s for ever).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa

from daemon.hlc import skew_attempt
from daemon.store.codec import iso_ms, load_json
from daemon.store.row_log import RowLog
from daemon.store.schema import rejected as rejected_table
from daemon.store.sql import OUTBOX_KEYS, compile_statement, insert_sql
from daemon.store.sync_docs import content_entry, document_metadata, metadata_entry, snapshot_entry
from daemon.store.sync_outbox import (
    REJECTED_COLUMNS,
    rejected_view,
    requeue_children,
    row_fields,
)
from daemon.store.sync_rows import SHAPES
from daemon.store.txn import Stamp, WriteContext, WriteOp, workspace_of
from daemon.types import LOCAL_ONLY_ROLES

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Requeued:
    """What ``requeue_due_op`` did: rows queued again, and when (wall time, ms) the next of
    the workspace's rejections is due (None: none waits)."""

    rows: int
    next_at_ms: int | None


@cache
def _due_rows_sql() -> str:
    """(table_name, row_id) of the workspace's rows whose every retried rejection is due, in
    the order they were first refused."""
    r = rejected_table
    stmt = (
        sa.select(r.c.table_name, r.c.row_id)
        .where(r.c.workspace_id == sa.bindparam("ws"), r.c.retry_at.is_not(None))
        .group_by(r.c.table_name, r.c.row_id)
        .having(sa.func.max(r.c.retry_at) <= sa.bindparam("now"))
        .order_by(sa.func.min(r.c.id))
    )
    return compile_statement(stmt).sql


@cache
def _next_due_sql() -> str:
    """When the workspace's next row is due: the least, over its rows, of their latest
    ``retry_at``."""
    r = rejected_table
    rows = (
        sa.select(sa.func.max(r.c.retry_at).label("due"))
        .where(r.c.workspace_id == sa.bindparam("ws"), r.c.retry_at.is_not(None))
        .group_by(r.c.table_name, r.c.row_id)
        .subquery()
    )
    return compile_statement(sa.select(sa.func.min(rows.c.due))).sql


@cache
def _retried_of_row_sql() -> str:
    r = rejected_table
    stmt = sa.select(r).where(
        r.c.table_name == sa.bindparam("table_name"),
        r.c.row_id == sa.bindparam("row_id"),
        r.c.retry_at.is_not(None),
    )
    return compile_statement(stmt.order_by(r.c.id)).sql


@cache
def _delete_sql() -> str:
    r = rejected_table
    return compile_statement(sa.delete(r).where(r.c.id == sa.bindparam("_id"))).sql


def requeue_due_op(workspace_id: str, now_ms: int) -> WriteOp:
    """Queue again, whole, the rows of ``workspace_id`` whose ``clock_skew`` refusals are due
    at wall time ``now_ms`` (module docstring)."""

    def op(ctx: WriteContext) -> Requeued:
        rows = 0
        if ctx.syncs(workspace_id):  # (unlinked meanwhile: its sync is going away)
            params = {"ws": workspace_id, "now": iso_ms(now_ms)}
            due = ctx.conn.execute(_due_rows_sql(), params).fetchall()
            stamp = ctx.stamp()
            docs: set[str] = set()
            log = RowLog(logger, logging.INFO, "sync.skew_requeued")
            for table, row_id in due:
                rows += _requeue_row(ctx, table, row_id, stamp, docs, log)
            log.flush()
            if rows:
                ctx.queue_push(workspace_id)
        found = ctx.conn.execute(_next_due_sql(), {"ws": workspace_id}).fetchone()
        return Requeued(rows, None if found[0] is None else _ms(found[0]))

    return op


def _requeue_row(
    ctx: WriteContext, table: str, row_id: str, stamp: Stamp, docs: set[str], log: RowLog
) -> int:
    """Remove the row's retried rejections and queue it whole (``docs``: the documents whose
    content is queued already); how many entries were queued."""
    found = ctx.conn.execute(_retried_of_row_sql(), {"table_name": table, "row_id": row_id})
    records = [dict(zip(REJECTED_COLUMNS, values, strict=True)) for values in found]
    for record in records:
        ctx.conn.execute(_delete_sql(), {"_id": record["id"]})
        ctx.emit(
            table="rejected", op="delete", topic="sync.rejected",
            row={**rejected_view(record), "retried_at": stamp.iso}, fields={}, stamp=stamp,
            outbox=False,
        )  # fmt: skip
    entry = _whole_entry(ctx, table, row_id, records, stamp, docs)
    if entry is not None:
        waited = max((_ms(r["retry_at"]) - _ms(r["created_at"]) for r in records), default=0)
        entry["attempts"] = skew_attempt(waited)  # refused again: it waits longer
        ctx.conn.execute(insert_sql("outbox", OUTBOX_KEYS), entry)
    log.add({"table": table}, row_id, rejections=len(records))
    if any(_carries_create(record) for record in records):
        requeue_children(ctx, table, row_id, stamp)  # refused for it missing: after it
    return 1


def _whole_entry(
    ctx: WriteContext,
    table: str,
    row_id: str,
    records: list[dict[str, Any]],
    stamp: Stamp,
    docs: set[str],
) -> dict[str, Any] | None:
    """The outbox entry sending the row's stored state (None: nothing of it to send)."""
    if table == "documents":
        doc = document_metadata(ctx.conn, row_id)
        return None if doc is None else metadata_entry(doc, stamp.iso)
    if table == "doc_updates":  # its document's whole content carries it
        fields = load_json(records[-1]["change"]).get("fields") or {}
        doc_id = fields.get("doc_id")
        if not isinstance(doc_id, str) or doc_id in docs:
            return None
        docs.add(doc_id)
        return content_entry(ctx, doc_id, stamp.iso)
    if table not in SHAPES:
        return None
    row = ctx.fetch(table, row_id)
    if row is None or (table == "messages" and row["role"] in LOCAL_ONLY_ROLES):
        return None
    return snapshot_entry(table, workspace_of(table, row), row_fields(row), row, stamp.iso)


def _carries_create(record: dict[str, Any]) -> bool:
    """As sync_sql ``_carries_create``: the refused change held ``created_at``."""
    fields = load_json(record["change"]).get("fields")
    return isinstance(fields, dict) and fields.get("created_at") is not None


def _ms(iso: str) -> int:
    """``iso_ms``'s text back to ms (a malformed one: 0; the caller waits a while anyway)."""
    try:
        return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0
