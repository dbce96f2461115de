"""The SQL of the document store: statements and the operations the writer runs for it.

Every function here runs in the writer's connection thread, inside its transaction (see
txn.py), except ``read_stored`` which also serves the read-only connection. The DDL is
migrations/local/0004_documents.sql (tests/component/store/test_documents.py checks these
tables against it).

Local updates are written in batches (``LocalBatch``): the updates that arrive while the writer
is busy share ONE operation, so one savepoint and a few multi-row INSERTs serve them all;
each update still gets its own row, id, clock and changelog entry, and its outbox entry when its
workspace is linked (``WriteContext.syncs``: an unlinked workspace's updates are local-only).
"""

from __future__ import annotations

import base64
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa

from daemon.errors import InvalidInput
from daemon.events import ChangeEvent
from daemon.store.base import require_live_workspace_of, require_workspace
from daemon.store.codec import dump_json_text, iso_ms, now_ms
from daemon.store.ids import is_uuid, uuid7
from daemon.store.sql import (
    CHANGELOG_KEYS,
    LAST_SEQ_SQL,
    OUTBOX_KEYS,
    compile_statement,
    insert_many,
    insert_sql,
)
from daemon.store.txn import Stamp, WriteContext, WriteOp

_metadata = sa.MetaData()
documents = sa.Table(
    "documents",
    _metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("snapshot", sa.LargeBinary),
    sa.Column("snapshot_seq", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Column("deleted_at", sa.Text),
    sa.Column("hlc", sa.Text, nullable=False),
    sa.Column("field_hlc", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
)
doc_updates = sa.Table(
    "doc_updates",
    _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("doc_id", sa.Text, nullable=False),
    sa.Column("workspace_id", sa.Text),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("hlc", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
)

#: The columns of a document row as the API returns it (no snapshot, no clocks).
ROW_COLUMNS: Final = ("id", "workspace_id", "name", "created_at", "updated_at", "deleted_at")
_D, _U = documents.c, doc_updates.c
_SELECT_DOC: Final = compile_statement(
    sa.select(*(_D[c] for c in ROW_COLUMNS), _D.snapshot, _D.snapshot_seq).where(
        _D.id == sa.bindparam("_id")
    )
).sql
_SELECT_UPDATES: Final = compile_statement(
    sa.select(_U.seq, _U.data).where(_U.doc_id == sa.bindparam("_id")).order_by(_U.seq)
).sql
_UPDATE_EXISTS: Final = compile_statement(
    sa.select(sa.literal_column("1")).select_from(doc_updates).where(_U.id == sa.bindparam("_id"))
).sql
_INSERT_DOC: Final = compile_statement(
    sa.insert(documents), [c.name for c in documents.c if c.name != "snapshot"]
).sql
_UPDATE_KEYS: Final = ("id", "doc_id", "workspace_id", "data", "created_at", "hlc", "origin")
INSERT_UPDATE: Final = (  # positional: the values in _UPDATE_KEYS order
    f"INSERT INTO doc_updates ({', '.join(_UPDATE_KEYS)}) VALUES ({', '.join('?' * 7)})"
)
_WRITE_SNAPSHOT: Final = compile_statement(
    sa.update(documents)
    .where(_D.id == sa.bindparam("_id"), _D.snapshot_seq == sa.bindparam("_old"))
    .values(snapshot=sa.bindparam("snapshot"), snapshot_seq=sa.bindparam("snapshot_seq"))
).sql
_DELETE_UPTO: Final = compile_statement(
    sa.delete(doc_updates).where(_U.doc_id == sa.bindparam("_id"), _U.seq <= sa.bindparam("_upto"))
).sql
_DELETE_ONE: Final = compile_statement(
    sa.delete(doc_updates).where(_U.seq == sa.bindparam("_seq"))
).sql
_INSERT_OUTBOX: Final = insert_sql("outbox", OUTBOX_KEYS)
_UPDATED: Final = "doc.updated"
_UNNAMED: Final = ("workspace_id", "deleted_at")  # the clocked fields of a document without a name


@dataclass(frozen=True)
class Stored:
    """A document as stored: its row, snapshot and the ``(seq, update)`` rows after it."""

    row: dict[str, Any]
    snapshot: bytes | None
    snapshot_seq: int
    updates: list[tuple[int, bytes]]


@dataclass(frozen=True)
class Create:
    """How to create a missing document (``outbox``: a local creation, pushed to the cloud;
    ``name`` "": none given, so the name has no clock and is not pushed)."""

    workspace_id: str | None
    name: str
    outbox: bool


def read_stored(conn: sqlite3.Connection, doc_id: str) -> Stored | None:
    """The stored document, or None: snapshot and updates as of one moment."""
    if conn.in_transaction:  # the writer's
        return _read_stored(conn, doc_id)
    conn.execute("BEGIN")  # both reads in one transaction: a compaction may commit meanwhile
    try:
        return _read_stored(conn, doc_id)
    finally:
        conn.execute("COMMIT")


def _read_stored(conn: sqlite3.Connection, doc_id: str) -> Stored | None:
    values = conn.execute(_SELECT_DOC, {"_id": doc_id}).fetchone()
    if values is None:
        return None
    row = dict(zip(ROW_COLUMNS, values, strict=False))
    updates = conn.execute(_SELECT_UPDATES, {"_id": doc_id}).fetchall()
    return Stored(row, values[-2], values[-1], updates)


def load_op(doc_id: str, create: Create | None) -> WriteOp:
    """Read the document (queued behind every write already queued); create it if asked."""

    def op(ctx: WriteContext) -> Stored | None:
        stored = read_stored(ctx.conn, doc_id)
        if stored is not None or create is None:
            return stored
        return Stored(_create_row(ctx, doc_id, create), None, 0, [])

    return op


def _create_row(ctx: WriteContext, doc_id: str, create: Create) -> dict[str, Any]:
    if not is_uuid(doc_id):
        raise InvalidInput("id", "a new document's id must be a lower-case UUID string")
    workspace_id = create.workspace_id
    if workspace_id is not None:
        require_workspace(ctx, workspace_id)
    stamp = ctx.tick()
    row: dict[str, Any] = {
        "id": doc_id,
        "workspace_id": workspace_id,
        "name": create.name,
        "created_at": stamp.iso,
        "updated_at": stamp.iso,
        "deleted_at": None,
    }
    # Without a name, ``name`` gets no clock and is not pushed: a device that joins a document
    # before its row arrives must not rename it to "" (an empty clock loses to every clock).
    named = ("workspace_id", "name", "deleted_at") if create.name else _UNNAMED
    clocks = dict.fromkeys(named, stamp.hlc)
    params = {**row, "snapshot_seq": 0, "hlc": stamp.hlc, "origin": ctx.device_id}
    ctx.conn.execute(_INSERT_DOC, {**params, "field_hlc": dump_json_text(clocks)})
    if create.outbox and workspace_id is not None and ctx.syncs(workspace_id):
        fields = row if create.name else {k: v for k, v in row.items() if k != "name"}
        entry = ctx.outbox_entry("documents", "insert", doc_id, workspace_id, fields, stamp)
        ctx.conn.execute(_INSERT_OUTBOX, entry)
        ctx.queue_push(workspace_id)  # no changelog entry announces a new document
    return row


@dataclass(eq=False)
class LocalBatch:
    """Local updates that share one write. The loop thread ``add``s to it until the writer's
    thread ``take``s it (both under ``lock``); then it is closed and a new batch starts.

    The write is a handful of statements whatever the batch's size: multi-row INSERTs
    (``insert_many``) of the update rows, their changelog entries and their outbox entries. The
    changelog entries get consecutive seqs (AUTOINCREMENT under the one writer), read back once.
    Before them, one read per document of a workspace in the batch: is that workspace deleted?
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    items: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    closed: bool = False

    def add(self, row: dict[str, Any], data: bytes) -> int | None:
        """Append an update of document ``row``; its index, or None once the batch is taken."""
        with self.lock:
            if self.closed:
                return None
            self.items.append((row, data))
            return len(self.items) - 1

    def take(self) -> list[tuple[dict[str, Any], bytes]]:
        with self.lock:
            self.closed = True
            return self.items

    def op(self, ctx: WriteContext) -> list[dict[str, Any] | InvalidInput]:
        """Write every update of the batch; ``{id, update_id}`` per update, in order, or the
        InvalidInput that refuses it (its document's workspace is deleted: base.py)."""
        ms = now_ms()
        iso = iso_ms(ms)
        device, tick = ctx.device_id, ctx.clock.now
        rows: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        outbox: list[tuple[Any, ...]] = []
        events: list[dict[str, Any]] = []
        results: list[dict[str, Any] | InvalidInput] = []
        refused: dict[str, InvalidInput | None] = {}  # per document, checked once a batch
        for row, data in self.take():
            doc_id, workspace_id = row["id"], row["workspace_id"]
            if doc_id not in refused:
                refused[doc_id] = _refusal(ctx, row)
            refusal = refused[doc_id]
            if refusal is not None:
                results.append(refusal)
                continue
            stamp = Stamp(tick(ms), ms, iso)
            update_id = uuid7(ms)
            rows.append((update_id, doc_id, workspace_id, data, iso, stamp.hlc, device))
            event = update_event(doc_id, workspace_id, update_id, data, device)
            entries.append((_UPDATED, doc_id, workspace_id, dump_json_text(event), iso))
            events.append(event)
            results.append({"id": doc_id, "update_id": update_id})
            if workspace_id is not None and ctx.syncs(workspace_id):
                fields = {
                    "id": update_id,
                    "doc_id": doc_id,
                    "workspace_id": workspace_id,
                    "data": event["update"],
                    "created_at": iso,
                }
                outbox.append(
                    ctx.outbox_values(
                        "doc_updates", "insert", update_id, workspace_id, fields, stamp
                    )
                )
        if not events:
            return results
        conn = ctx.conn
        insert_many(conn, "doc_updates", _UPDATE_KEYS, rows)
        insert_many(conn, "changelog", CHANGELOG_KEYS, entries)
        insert_many(conn, "outbox", OUTBOX_KEYS, outbox)
        # AUTOINCREMENT under the one writer: the entries got consecutive seqs, in order.
        first = int(conn.execute(LAST_SEQ_SQL).fetchone()[0]) - len(events) + 1
        chars = sum(len(entry[3]) for entry in entries)  # their data (CHANGELOG_KEYS order)
        ctx.add_events([ChangeEvent(first + i, _UPDATED, e) for i, e in enumerate(events)], chars)
        return results


def _refusal(ctx: WriteContext, row: dict[str, Any]) -> InvalidInput | None:
    """Why a local update of document ``row`` is refused (its workspace is deleted), or None.
    Updates pulled from the cloud are applied whatever their workspace (sync_docs.py)."""
    try:
        require_live_workspace_of(ctx, row, "document")
    except InvalidInput as exc:
        return exc
    return None


def remote_update_op(
    row: dict[str, Any], data: bytes, update_id: str | None, origin: str
) -> WriteOp:
    """Store an update that came from the cloud (no outbox entry); None if already stored."""
    doc_id, workspace_id = row["id"], row["workspace_id"]

    def op(ctx: WriteContext) -> dict[str, Any] | None:
        if (
            update_id is not None
            and ctx.conn.execute(_UPDATE_EXISTS, {"_id": update_id}).fetchone()
        ):
            return None
        stamp = ctx.tick()
        new_id = update_id or uuid7(stamp.ms)
        params = (new_id, doc_id, workspace_id, data, stamp.iso, stamp.hlc, origin)
        ctx.conn.execute(INSERT_UPDATE, params)
        _emit_update(ctx, doc_id, workspace_id, new_id, data, stamp, origin)
        return {"id": doc_id, "update_id": new_id}

    return op


def _emit_update(
    ctx: WriteContext,
    doc_id: str,
    workspace_id: str | None,
    update_id: str,
    data: bytes,
    stamp: Stamp,
    origin: str,
) -> None:
    """The ``doc.updated`` changelog entry of a remote update (no outbox entry)."""
    event = update_event(doc_id, workspace_id, update_id, data, origin)
    ctx.emit(
        table="doc_updates",
        op="insert",
        topic=_UPDATED,
        row=event,
        fields={},
        stamp=stamp,
        outbox=False,
    )


def update_event(
    doc_id: str, workspace_id: str | None, update_id: str, data: bytes, origin: str
) -> dict[str, Any]:
    """The data of a ``doc.updated`` event (and changelog entry): the update in base64."""
    return {
        "id": doc_id,
        "workspace_id": workspace_id,
        "update_id": update_id,
        "update": base64.b64encode(data).decode("ascii"),
        "origin": origin,
    }


def compact_op(
    doc_id: str, old_seq: int, upto: int, snapshot: bytes, folded: Iterable[int] | None
) -> WriteOp:
    """Write the new snapshot and delete the folded updates, in the same transaction.

    ``folded``: the seqs to delete, or None for every update up to ``upto``. Returns how many
    were deleted; 0 (and nothing written) if the snapshot changed since it was read.
    """

    def op(ctx: WriteContext) -> int:
        params = {"_id": doc_id, "_old": old_seq, "snapshot": snapshot, "snapshot_seq": upto}
        if ctx.conn.execute(_WRITE_SNAPSHOT, params).rowcount != 1:
            return 0
        return delete_folded(ctx.conn, doc_id, upto, folded)

    return op


def delete_folded(
    conn: sqlite3.Connection, doc_id: str, upto: int, folded: Iterable[int] | None
) -> int:
    if folded is None:
        return int(conn.execute(_DELETE_UPTO, {"_id": doc_id, "_upto": upto}).rowcount)
    return int(conn.executemany(_DELETE_ONE, ({"_seq": seq} for seq in folded)).rowcount)
