"""The push side of sync in the store: reading the outbox as coalesced changes, completing a
push, and linking (snapshotting a workspace's whole history into the outbox) or unlinking.

Outbox entries are written only by local changes in LINKED workspaces (txn.py ``emit`` and
``syncs``): an unlinked workspace is local-only data (I6), so its writes cost no entry and its
outbox cannot grow without bound. Linking snapshots the workspace's whole state into the outbox
(nothing before the link is lost), then adds it to the writer's set of linked workspaces, so the
next write (in the same batch too) gets its entry; unlinking drops its entries and removes it
from the set. System and tool messages never get an entry (I6), and ``read_outbox`` refuses
them again should one appear. ``drop_unlinked_entries`` removes, at store open, the entries a
store written before this rule holds for unlinked workspaces (in chunks, one short transaction
each).

Snapshot ranges. A link's snapshot writes an entry per row of the workspace, save its messages
(the bulk of a big workspace): those get ONE entry, a snapshot range (``q.SNAPSHOT_ROW`` as its
row id), that stands for every message of the conversations that held some at
the link, read from the messages table as the push goes (no copy of each message written,
taken and deleted again). Its ``fields`` hold those conversations' ids (in id order), where
the settled part ends (``at``: the conversation's index; ``after``: its last message settled)
and how many messages are ``left`` (what the count shows). It sits where the messages' entries
would: after the workspace and conversation entries it depends on, before the tasks and every
later write; it is taken in batches of its own (a batch ends before it, and with it), each
message as the one-clock change a message's own entry gives, so the entries after it still go
out after every row it stands for. ``complete_push`` moves it past the settled messages (a
repeated completion finds them settled and changes nothing) and deletes it with its last one;
a crash or failed push resumes from where it stands. A message written after the link has an
entry of its own (pushed again by the range when in one of its conversations: the cloud
applies a change once, I2); one of a conversation created after the link is not in the range,
so it never goes before its conversation. Messages have no ``manual`` field, so the merge has
no use for their unpushed fields (``unpushed``), which a range does not list.

A row whose create the cloud rejected is not in the cloud, so a later edit's entry (only the
fields it changed) must not go alone: the cloud would create the row from its column defaults
and every other device would get that other row, for good. So ``read_outbox`` pushes such a
row whole, as a link's snapshot does (its stored state: every field with its clock), until the
cloud takes it; then ``complete_push`` settles the row's rejections (deleted, each announced
once more on ``sync.rejected`` with ``settled_at``) and queues again, whole, the rows whose
creates were rejected under it (a conversation's messages, a workspace's conversations and
tasks: refused for the missing parent, they have no edit of their own to carry them).
Documents too (``DOC_CHILDREN``): a document's metadata goes whole like a row, and once the
cloud takes it, its whole content goes as one update, which settles the updates refused under
it (one of them may have been folded into the document's snapshot since).
A create is known by ``created_at`` in the rejected change (sync_sql.py ``rejected_creates``),
so rejections filed before this rule count too.

A change the cloud answers ``superseded`` lost to a write this device has not seen yet when the
row still holds the pushed values. Those values are kept as a lost entry (``_keep_lost``; a
negative id, sync_sql.py ``LOST_BELOW``: never taken, not counted), which the merge of a pulled
page counts as an unpushed edit (sync_rows.py ``Unpushed``) until the row no longer holds them,
so a lost edit of a ``manual`` field records its conflict when the winner arrives (R5, I9), as
an edit that never left does; the page then drops the entry.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import orjson

from daemon.hlc import skew_retry_at
from daemon.store import sync_sql as q
from daemon.store.codec import RowCodec, dump_json, dump_json_text, iso_ms, load_json, now_ms
from daemon.store.ids import uuid7
from daemon.store.row_log import RowLog
from daemon.store.schema import CLOCK_COLUMNS, ENTITY_TABLES
from daemon.store.schema import rejected as rejected_table
from daemon.store.sql import OUTBOX_KEYS, OUTBOX_ONE_CLOCK, get_sql, insert_sql, update_sql
from daemon.store.sync_docs import (
    content_entry,
    document_metadata,
    metadata_entry,
    metadata_fields,
    snapshot_documents,
    snapshot_entry,
)
from daemon.store.sync_rows import SHAPES
from daemon.store.sync_types import CorruptEntry, Link, OutboxChange, PushOutcome, SnapshotRef
from daemon.store.txn import Stamp, WriteContext, WriteOp, workspace_of
from daemon.types import LOCAL_ONLY_ROLES

logger = logging.getLogger(__name__)

PUSH_STATUSES = frozenset({"applied", "superseded", "rejected"})
#: What a one-clock entry's clock adds to a batch beside its hlc: it is sent in the compact
#: form (mapping.cloud_change), as ``,"hlc":"<hlc>"``.
COMPACT_CLOCK_BYTES: Final = len(',"hlc":""')
SNAPSHOT_CHUNK = 2000
REJECTED_COLUMNS: Final = tuple(str(c.name) for c in rejected_table.columns)
#: parent table -> (child table, column naming the parent): each table under its nearest
#: parent (a message under its conversation), so a settled parent queues its children again
#: and they, once settled, theirs.
CHILDREN: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    parent: tuple(
        (child, shape.parents[-1][1])
        for child, shape in SHAPES.items()
        if shape.parents and shape.parents[-1][0] == parent
    )
    for parent in SHAPES
}
#: The same for documents (sync_docs.py), whose rows are no ``SHAPES``: a document under its
#: workspace, its updates under it. A document settled after a rejected create queues its
#: whole content as one update (``requeue_children``), which carries every update rejected
#: under it.
DOC_CHILDREN: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "workspaces": (("documents", "workspace_id"),),
    "documents": (("doc_updates", "doc_id"),),
}


def pull_scope(workspace_id: str) -> str:
    """The ``sync_state`` scope of a linked workspace's pull cursor (dropped by unlink)."""
    return f"workspace:{workspace_id}"


# -- take_outbox ------------------------------------------------------------------------------


@dataclass
class _Coalesced:
    ids: list[int]
    table: str
    row_id: str
    workspace_id: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    clocks: dict[str, str] = field(default_factory=dict)
    origin: str = ""
    one_clock: bool = False

    def add(
        self,
        entry_id: int,
        fields: dict[str, Any],
        clocks: dict[str, str],
        hlc: str,
        *,
        one_clock: bool = False,
    ) -> None:
        """Fold one entry in: per field the value with the newest clock, per clock the max.

        A JSON map the entry carries with clocks per key only (a local edit's patch: R3 of
        daemon/sync/merge.py) is folded key by key into the map taken so far. ``one_clock``:
        the entry is in the one-clock form (every field under ``hlc``); a change of more than
        one entry is never taken as one-clock."""
        self.ids.append(entry_id)
        if len(self.ids) == 1 and all(clocks.values()):  # the first entry: taken as it is
            self.fields, self.clocks, self.one_clock = fields, clocks, one_clock
            return
        self.one_clock = False
        for name, value in fields.items():
            if name not in clocks and isinstance(value, dict):
                self.fields[name] = self._fold_patch(name, value, clocks, hlc)
                continue
            clock = clocks.get(name, hlc)
            if name not in self.fields or clock >= self.clocks.get(name, ""):
                self.fields[name] = value
        for name, clock in clocks.items():
            if clock > self.clocks.get(name, ""):
                self.clocks[name] = clock

    def _fold_patch(
        self, name: str, patch: dict[str, Any], clocks: dict[str, str], hlc: str
    ) -> dict[str, Any]:
        taken = self.fields.get(name)
        folded = dict(taken) if isinstance(taken, dict) else {}
        for key, value in patch.items():
            clock = clocks.get(f"{name}.{key}", hlc)
            if key not in folded or clock >= self.clocks.get(f"{name}.{key}", ""):
                folded[key] = value
        return folded

    def change(self) -> OutboxChange:
        return OutboxChange(
            outbox_ids=tuple(self.ids),
            table=self.table,
            row_id=self.row_id,
            workspace_id=self.workspace_id,
            fields=self.fields,
            field_hlc=self.clocks,
            hlc=max(self.clocks.values(), default=""),
            origin=self.origin,
            one_clock=self.one_clock,
        )


def read_outbox(
    conn: sqlite3.Connection,
    workspace_ids: list[str],
    limit: int,
    max_bytes: int,
    after: int = 0,
    leaves: frozenset[str] = frozenset(),
    within: tuple[int, str] | None = None,
) -> list[OutboxChange]:
    """Up to ``limit`` coalesced changes of the linked workspaces, oldest first, whose entries
    total at most ``max_bytes`` of JSON (always at least one change), made of the entries with
    an id above ``after`` (a push in flight took the ones up to it). With ``leaves`` (tables
    whose rows no row references), changes that begin with a row of another table end before
    the first entry of a leaf: the rows others reference go out first and alone. A snapshot
    range is taken in batches of its own; ``within`` (conversation index, message id): ``after``
    is a range a push in flight took up to that message, and the take goes on there."""
    compiled = q.outbox_take_sql()
    window = min(limit * 4, 20_000)
    start = after - 1 if within is not None else after
    cursors = [
        conn.execute(compiled.sql, compiled.params({"ws": ws, "_limit": window, "_after": start}))
        for ws in workspace_ids
    ]
    try:
        return _take(conn, cursors, limit, max_bytes, after, leaves, within)
    finally:  # now: a CorruptEntry's traceback must not hold them (and the reader's snapshot)
        for cursor in cursors:
            cursor.close()


def _take(
    conn: sqlite3.Connection,
    cursors: list[sqlite3.Cursor],
    limit: int,
    max_bytes: int,
    after: int,
    leaves: frozenset[str],
    within: tuple[int, str] | None,
) -> list[OutboxChange]:
    groups: dict[tuple[str, str], _Coalesced] = {}
    used = 0
    first_leaf: bool | None = None  # whether the first entry is a leaf's
    # Oldest first across workspaces; stop at the first new row past the limit (the entries
    # of taken rows seen before it are coalesced into them).
    entries = cursors[0] if len(cursors) == 1 else heapq.merge(*cursors)
    for entry in entries:
        entry_id, table, row_id, ws, fields_text, clocks_text, hlc, origin = entry
        if row_id == q.SNAPSHOT_ROW:
            if groups:
                break  # a range goes in batches of its own
            taken = _take_range(
                conn, entry, within if entry_id == after else None, limit, max_bytes
            )
            if taken:
                return _whole_after_rejection(conn, taken)
            continue  # (nothing left in it: only a broken store has such a range)
        if first_leaf is None:
            first_leaf = table in leaves
        elif not first_leaf and table in leaves:
            break
        fields, clocks = _decoded(entry)
        one_clock = clocks_text == OUTBOX_ONE_CLOCK
        size = sent_size(fields_text, clocks_text, hlc)
        if groups and used + size > max_bytes:
            break
        acc = groups.get((table, row_id))
        if acc is None:
            if len(groups) >= limit:
                break
            acc = groups[(table, row_id)] = _Coalesced([], table, row_id, ws)
        used += size
        acc.add(entry_id, fields, clocks, hlc, one_clock=one_clock)
        acc.origin = origin
    changes = [
        acc.change()
        for acc in groups.values()
        if not (acc.table == "messages" and acc.fields.get("role") in LOCAL_ONLY_ROLES)
    ]
    return _whole_after_rejection(conn, changes)


def _decoded(entry: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """An entry's fields and clocks; CorruptEntry if either is no JSON object
    (sync_corrupt.py)."""
    fields_text, clocks_text, hlc = entry[4], entry[5], entry[6]
    try:
        fields = orjson.loads(fields_text)
    except orjson.JSONDecodeError as exc:
        raise CorruptEntry(entry, "fields", f"is not valid JSON ({exc})") from None
    if type(fields) is not dict:
        raise CorruptEntry(entry, "fields", "is not a JSON object")
    try:
        clocks = entry_clocks(fields, clocks_text, hlc)
    except orjson.JSONDecodeError as exc:
        raise CorruptEntry(entry, "field_hlc", f"is not valid JSON ({exc})") from None
    if type(clocks) is not dict:
        raise CorruptEntry(entry, "field_hlc", "is not a JSON object")
    return fields, clocks


def _range_state(entry: tuple[Any, ...]) -> tuple[list[str], int, str]:
    """A snapshot range's conversations and where it stands; CorruptEntry if unreadable."""
    try:
        state = orjson.loads(entry[4])
        return list(state["conversations"]), int(state["at"]), str(state["after"])
    except orjson.JSONDecodeError as exc:
        raise CorruptEntry(entry, "fields", f"is not valid JSON ({exc})") from None
    except (TypeError, KeyError, ValueError):
        raise CorruptEntry(entry, "fields", "is not a snapshot range's state") from None


def _take_range(
    conn: sqlite3.Connection,
    entry: tuple[Any, ...],
    within: tuple[int, str] | None,
    limit: int,
    max_bytes: int,
) -> list[OutboxChange]:
    """Up to ``limit`` messages (``max_bytes`` of JSON, at least one) of the snapshot range
    ``entry`` (an outbox row) after where it stands (``within``, else where it was settled),
    each a one-clock change as a message's own entry gives it; the range's last row says so."""
    entry_id, workspace_id = entry[0], entry[3]
    conversations, at, after = _range_state(entry)
    if within is not None:
        at, after = within
    compiled = q.snapshot_range_sql()
    changes: list[OutboxChange] = []
    used = 0
    while at < len(conversations) and len(changes) < limit:
        want = limit - len(changes)
        params = {"conversation": conversations[at], "after": after, "_limit": want + 1}
        rows = conn.execute(compiled.sql, compiled.params(params)).fetchall()
        ends = len(rows) <= want  # the conversation's last row is among them
        for row_id, text, hlc, origin in rows[:want]:
            used += sent_size(text, OUTBOX_ONE_CLOCK, hlc)
            if changes and used > max_bytes:
                return changes
            fields = orjson.loads(text)
            changes.append(
                OutboxChange(
                    outbox_ids=(),
                    table="messages",
                    row_id=row_id,
                    workspace_id=workspace_id,
                    fields=fields,
                    field_hlc=entry_clocks(fields, OUTBOX_ONE_CLOCK, hlc),
                    hlc=hlc,
                    origin=origin,
                    one_clock=True,
                    snapshot=SnapshotRef(entry_id, at),
                )
            )
            after = row_id
        if not ends:
            break
        at, after = at + 1, ""
    if changes and at >= len(conversations):  # the range's last row is taken
        last = changes[-1]
        assert last.snapshot is not None
        ref = dataclasses.replace(last.snapshot, last=True)
        changes[-1] = dataclasses.replace(last, snapshot=ref)
    return changes


def _whole_after_rejection(
    conn: sqlite3.Connection, changes: list[OutboxChange]
) -> list[OutboxChange]:
    """``changes``, each of a row whose create the cloud rejected made the row's whole stored
    state (``OutboxChange.rejected_create``): the cloud does not have the row, and an edit's
    fields alone would make it from its defaults. One query (the ``rejected`` table, usually
    empty) when no such row is among them."""
    ids = [c.row_id for c in changes if c.table in SHAPES or c.table == "documents"]
    if not ids:
        return changes
    found = set(conn.execute(q.rejected_creates_sql(), {"_ids": q.json_ids(ids)}))
    if not found:
        return changes
    return [_whole(conn, c) if (c.table, c.row_id) in found else c for c in changes]


@cache
def _codec(table: str) -> RowCodec:
    return RowCodec(table)


def _whole(conn: sqlite3.Connection, change: OutboxChange) -> OutboxChange:
    """The change as the row's stored state, as a link's snapshot sends it (``_snapshot``;
    a document: its metadata, as ``snapshot_documents``)."""
    if change.table == "documents":
        row = document_metadata(conn, change.row_id)
        if row is None:  # (rows are never deleted: only a broken store has none)
            return change
        fields = metadata_fields(row)
    else:
        values = conn.execute(get_sql(change.table), {"_id": change.row_id}).fetchone()
        if values is None:
            return change
        row = _codec(change.table).decode(values)
        fields = row_fields(row)
    clocks = dict.fromkeys(fields, row["hlc"])  # (as snapshot_entry gives them)
    clocks.update(row.get("field_hlc") or {})
    return dataclasses.replace(
        change,
        fields=fields,
        field_hlc=clocks,
        hlc=max(clocks.values(), default=change.hlc),
        rejected_create=True,
        one_clock=False,
    )


def sent_size(fields_text: str, clocks_text: str, hlc: str) -> int:
    """What an entry weighs in a batch: its fields and its clocks as they are sent (a
    one-clock entry's as ``hlc`` alone: mapping.cloud_change's compact form)."""
    if clocks_text == OUTBOX_ONE_CLOCK:
        return len(fields_text) + len(hlc) + COMPACT_CLOCK_BYTES
    return len(fields_text) + len(clocks_text)


def entry_clocks(fields: dict[str, Any], clocks_text: str, hlc: str) -> dict[str, str]:
    """An outbox entry's clock per field: its ``field_hlc`` as stored, or, in the one-clock
    form (``OUTBOX_ONE_CLOCK``), its ``hlc`` for every field it carries."""
    if clocks_text == OUTBOX_ONE_CLOCK:
        return dict.fromkeys(fields, hlc)
    clocks: dict[str, str] = orjson.loads(clocks_text)
    return clocks


# -- complete_push ----------------------------------------------------------------------------


def complete_push_op(changes: Sequence[OutboxChange], results: Sequence[dict[str, Any]]) -> WriteOp:
    def op(ctx: WriteContext) -> PushOutcome:
        conn = ctx.conn
        counts = dict.fromkeys(PUSH_STATUSES, 0)
        done: list[dict[str, int]] = []
        landed: list[OutboxChange] = []
        stamp = ctx.stamp()
        ranges = _Ranges(conn)
        refusals = RowLog(logger, logging.WARNING, "sync.rejected")
        for change, result in zip(changes, results, strict=True):
            status = result["status"]
            counts[status] += 1
            if change.rejected_create and status != "rejected":
                landed.append(change)  # the row is in the cloud now, whole
            attempt = _skew_attempt(conn, change, result)  # (read before its entries go)
            if change.snapshot is not None:
                if not ranges.settle(change.snapshot, change.row_id) or status == "applied":
                    continue  # (settled already: a repeated completion)
            elif status == "applied":
                done.extend({"_id": i} for i in change.outbox_ids)
                continue
            elif not sum(
                conn.execute(q.outbox_delete_sql(), {"_id": i}).rowcount for i in change.outbox_ids
            ):  # a repeated completion must not file or keep anything twice
                continue
            if status == "rejected" and change.rejected_create and change.fields.get("deleted_at"):
                _settle_deleted(ctx, change.table, change.row_id, stamp)
            elif status == "rejected":
                _file_rejection(ctx, change, result, stamp, attempt, refusals)
            else:
                _keep_lost(ctx, change, stamp)
        conn.executemany(q.outbox_delete_sql(), done)
        ranges.save()
        for change in landed:
            _settle_rejections(ctx, change, stamp)
        refusals.flush()
        return PushOutcome(counts["applied"], counts["superseded"], counts["rejected"])

    return op


class _Ranges:
    """The snapshot ranges a completion moves (see the module docstring): each read once, moved
    past the messages it settles, saved (or deleted with its last message) at the end."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._states: dict[int, dict[str, Any] | None] = {}
        self._ended: set[int] = set()

    def settle(self, ref: SnapshotRef, row_id: str) -> bool:
        """Move range ``ref.entry`` past its message ``row_id``; False if it was past it (or
        gone: settled whole, or unlinked) already."""
        if ref.entry not in self._states:
            found = self._conn.execute(q.outbox_fields_sql(), {"_id": ref.entry}).fetchone()
            self._states[ref.entry] = None if found is None else orjson.loads(found[0])
        state = self._states[ref.entry]
        if state is None or (ref.at, row_id) <= (state["at"], state["after"]):
            return False
        state["at"], state["after"] = ref.at, row_id
        state["left"] = max(int(state["left"]) - 1, 0)
        if ref.last:
            self._ended.add(ref.entry)
        return True

    def save(self) -> None:
        for entry, state in self._states.items():
            if entry in self._ended:
                self._conn.execute(q.outbox_delete_sql(), {"_id": entry})
            elif state is not None:
                params = {"_id": entry, "fields": dump_json_text(state)}
                self._conn.execute(update_sql("outbox", frozenset({"fields"})), params)


def _keep_lost(ctx: WriteContext, change: OutboxChange, stamp: Stamp) -> None:
    """The cloud found every field of ``change`` superseded: another device wrote them later.
    If this device has not seen that write yet (the row still holds the pushed values), the
    pushed values are kept as a lost entry (``q.LOST_BELOW``: never pushed again, not counted),
    which the merge counts as an unpushed edit until the newer values arrive, so a lost
    ``manual`` edit records its conflict then (R5, I9) as an edit that never left would.
    (Had the newer values arrived while the push was out, that merge saw the entry pending.)
    The merge drops the entry once the row no longer holds its values."""
    shape = SHAPES.get(change.table)
    if shape is None or "field_hlc" not in shape.columns or not ctx.syncs(change.workspace_id):
        return
    row = ctx.fetch(change.table, change.row_id)
    if row is None:
        return
    held = row.get("field_hlc") or {}
    lost = {
        name: clock
        for name, clock in change.field_hlc.items()
        if name in change.fields and name != "id" and held.get(name) == clock
    }
    if not lost:
        return
    entry = {
        "id": min(ctx.conn.execute(q.OUTBOX_LEAST_ID_SQL).fetchone()[0] or 0, 0) - 1,
        "table_name": change.table,
        "row_id": change.row_id,
        "workspace_id": change.workspace_id,
        "op": "update",
        "fields": dump_json_text({name: change.fields[name] for name in lost}),
        "field_hlc": dump_json_text(lost),  # (spelt out: unpushed() reads it)
        "hlc": max(lost.values()),
        "origin": change.origin,
        "created_at": stamp.iso,
        "attempts": 1,  # (pushed once)
    }
    ctx.conn.execute(insert_sql("outbox", tuple(entry)), entry)
    logger.info(
        "sync.push_lost table=%s id=%s fields=%s", change.table, change.row_id, sorted(lost)
    )


def _settle_rejections(ctx: WriteContext, change: OutboxChange, stamp: Stamp) -> None:
    """The cloud took the whole row whose create it had rejected: that row's rejections are
    settled (every rejected change of it is in what was taken, or older than a value that
    was), and the rows whose creates were rejected under it go out again, whole."""
    if not _settle_row(ctx, change.table, change.row_id, stamp):
        return  # settled already (by an earlier push of the row)
    if ctx.syncs(change.workspace_id):  # (not if unlinked while the push was out)
        requeue_children(ctx, change.table, change.row_id, stamp)


def _settle_row(ctx: WriteContext, table: str, row_id: str, stamp: Stamp) -> bool:
    """Delete the row's rejections, each announced on ``sync.rejected`` with ``settled_at``;
    False if it had none."""
    key = {"table_name": table, "row_id": row_id}
    found = ctx.conn.execute(q.rejected_of_row_sql(), key).fetchall()
    if not found:
        return False
    ctx.conn.execute(q.rejected_delete_row_sql(), key)
    for values in found:
        view = rejected_view(dict(zip(REJECTED_COLUMNS, values, strict=True)))
        ctx.emit(
            table="rejected", op="delete", topic="sync.rejected",
            row={**view, "settled_at": stamp.iso}, fields={}, stamp=stamp, outbox=False,
        )  # fmt: skip
    logger.info("sync.rejection_settled table=%s id=%s rejections=%d", table, row_id, len(found))
    return True


def _settle_deleted(ctx: WriteContext, table: str, row_id: str, stamp: Stamp) -> None:
    """A row whose create the cloud rejected was deleted here, and the cloud refused it
    again: it never reached the cloud and cannot change any more (a deleted row takes no
    edit), so nothing of it is left to push. Its rejections are settled, and so are those of
    the rows whose creates were rejected under it (they can never reach the cloud either);
    otherwise they would show in the status for ever, with nothing the user could do."""
    _settle_row(ctx, table, row_id, stamp)
    for child, column in (*CHILDREN.get(table, ()), *DOC_CHILDREN.get(table, ())):
        for child_id in _rejected_under(ctx, child, column, row_id):
            _settle_deleted(ctx, child, child_id, stamp)


def _rejected_under(ctx: WriteContext, child: str, column: str, parent: str) -> list[str]:
    """Ids of the rows of ``child`` whose create was rejected naming ``parent`` in ``column``
    (in the order they were made in)."""
    sql = q.rejected_children_sql(column)
    return [row[0] for row in ctx.conn.execute(sql, {"table_name": child, "parent": parent})]


def requeue_children(ctx: WriteContext, table: str, row_id: str, stamp: Stamp) -> None:
    """An outbox entry with the whole stored state of each row of ``table``'s child tables
    whose create was rejected under the row ``row_id`` (a missing parent); it settles their
    rejections when the cloud takes it. Documents (``DOC_CHILDREN``): those of a workspace go
    as their whole metadata; a document's updates go as ONE entry of its whole content (as a
    link's snapshot sends it: an update folded into the document's snapshot since has no row
    of its own), and their rejections are settled now, as that entry carries them."""
    entries = []
    for child, column in CHILDREN.get(table, ()):
        for child_id in _rejected_under(ctx, child, column, row_id):
            row = ctx.fetch(child, child_id)
            if row is None or (child == "messages" and row["role"] in LOCAL_ONLY_ROLES):
                continue
            home = workspace_of(child, row)
            entries.append(snapshot_entry(child, home, row_fields(row), row, stamp.iso))
    for child, column in DOC_CHILDREN.get(table, ()):
        for child_id in _rejected_under(ctx, child, column, row_id):
            if child == "doc_updates":  # carried by the content entry below
                _settle_row(ctx, child, child_id, stamp)
            elif (doc := document_metadata(ctx.conn, child_id)) is not None:
                entries.append(metadata_entry(doc, stamp.iso))
    if table == "documents" and (content := content_entry(ctx, row_id, stamp.iso)) is not None:
        entries.append(content)
    if entries:
        ctx.conn.executemany(insert_sql("outbox", OUTBOX_KEYS), entries)
        logger.info("sync.rejected_requeued parent=%s id=%s rows=%d", table, row_id, len(entries))


def _skew_attempt(conn: sqlite3.Connection, change: OutboxChange, result: dict[str, Any]) -> int:
    """For a change refused as ``clock_skew``: how often its row was refused so before, as its
    entries say (``attempts``: a row sent again after such refusals, sync_skew.py); else 0."""
    if result.get("reason") != "clock_skew" or not change.outbox_ids:
        return 0
    ids = orjson.dumps(sorted(change.outbox_ids)).decode()
    found = conn.execute(q.outbox_attempts_sql(), {"_ids": ids}).fetchone()
    return int(found[0] or 0) if found is not None else 0


def _file_rejection(
    ctx: WriteContext,
    change: OutboxChange,
    result: dict[str, Any],
    stamp: Stamp,
    attempt: int,
    log: RowLog,
) -> None:
    detail = result.get("detail")
    sent = {
        "fields": change.fields,
        "field_hlc": change.field_hlc,
        "hlc": change.hlc,
        "origin": change.origin,
    }
    record = file_rejected(
        ctx,
        stamp,
        (change.table, change.row_id, change.workspace_id),
        sent,
        reason=str(result.get("reason") or "unknown"),
        detail=detail if detail is None or isinstance(detail, str) else dump_json(detail),
        retry_at=_retry_at(change.hlc, result, stamp.ms, attempt),
    )
    group = {"table": change.table, "reason": record["reason"]}
    log.add(group, change.row_id, retry_at=record["retry_at"])


def file_rejected(
    ctx: WriteContext,
    stamp: Stamp,
    row: tuple[str, str, str | None],
    change: dict[str, Any],
    *,
    reason: str,
    detail: str | None,
    retry_at: str | None = None,
) -> dict[str, Any]:
    """Store a rejection of ``change`` to ``row`` (table, id, workspace) and announce it on
    ``sync.rejected``; the record stored."""
    table, row_id, workspace_id = row
    record = {
        "id": uuid7(stamp.ms),
        "table_name": table,
        "row_id": row_id,
        "workspace_id": workspace_id,
        "change": dump_json_text(change),
        "reason": reason,
        "detail": detail,
        "created_at": stamp.iso,
        "retry_at": retry_at,
    }
    ctx.conn.execute(insert_sql("rejected", tuple(record)), record)
    ctx.emit(
        table="rejected", op="insert", topic="sync.rejected", row=rejected_view(record),
        fields={}, stamp=stamp, outbox=False,
    )  # fmt: skip
    return record


def _retry_at(hlc: str, result: dict[str, Any], refused_ms: int, attempt: int) -> str | None:
    """When the row of a change refused as ``clock_skew`` is sent again (sync_skew.py); None
    for any other reason: those are final. ``cloud_time_ms``: the cloud's time when it
    answered (rest.py, from the answer's ``Date``), if known; ``attempt``: the row's refusals
    before this one (each waits longer: hlc.py ``skew_backoff_ms``)."""
    if result.get("reason") != "clock_skew":
        return None
    cloud_ms = result.get("cloud_time_ms")
    cloud = cloud_ms if type(cloud_ms) is int else None
    return iso_ms(skew_retry_at(hlc, refused_ms, cloud, attempt=attempt))


def rejected_view(record: dict[str, Any]) -> dict[str, Any]:
    """A rejected row as the API returns it (the change decoded)."""
    view = {k: v for k, v in record.items() if k != "table_name"}
    view["table"] = record["table_name"]
    view["change"] = load_json(record["change"])
    return view


# -- link / unlink ----------------------------------------------------------------------------


def link_op(workspace_id: str, org_id: str, path: str | None) -> WriteOp:
    def op(ctx: WriteContext) -> Link:
        conn = ctx.conn
        existing = conn.execute(q.link_get_sql(), {"ws": workspace_id}).fetchone()
        linked_at = existing[3] if existing is not None else iso_ms(now_ms())
        params = {"workspace_id": workspace_id, "org_id": org_id, "path": path}
        conn.execute(q.link_put_sql(), {**params, "linked_at": linked_at})
        _place_folder(ctx, workspace_id, path)
        if existing is None:
            # The snapshot carries every row's full state: older entries add nothing.
            conn.execute(q.outbox_delete_workspace_sql(), {"ws": workspace_id})
            total = _snapshot(ctx, workspace_id, linked_at)
            logger.info("sync.linked workspace_id=%s rows=%d", workspace_id, total)
        ctx.set_linked(workspace_id, True)  # last: from now on its writes get entries
        return Link(workspace_id, org_id, path, linked_at)

    return op


def _place_folder(ctx: WriteContext, workspace_id: str, path: str | None) -> None:
    """A linked workspace without a path gets the link's folder: ``path`` is local-only (no
    clock, no outbox entry, never pushed), so an editor finds the workspace by its folder. A
    clone's row is not there before its first pull: the cloud service links again then."""
    row = ctx.fetch("workspaces", workspace_id)
    if path is None or row is None or row["path"] is not None or row["deleted_at"] is not None:
        return
    ctx.update_row("workspaces", workspace_id, {"path": path})
    row["path"] = path
    ctx.emit(
        table="workspaces", op="update", topic="workspace.updated", row=row,
        fields={"path": path}, stamp=ctx.stamp(), outbox=False,
    )  # fmt: skip


def _snapshot(ctx: WriteContext, workspace_id: str, at: str) -> int:
    """Write one outbox entry per row of the workspace (tombstones too) with all its clocks,
    its messages as one snapshot range (module docstring); documents: their metadata and their
    whole content as one update (sync_docs.py)."""
    total = 0
    for table in ENTITY_TABLES:
        if table == "messages":
            total += _snapshot_range(ctx, workspace_id, at)
            continue
        codec = ctx.codecs[table]
        cursor = ctx.conn.execute(q.workspace_rows_sql(table), {"ws": workspace_id})
        while chunk := cursor.fetchmany(SNAPSHOT_CHUNK):
            entries = [_snapshot_entry(table, codec, values, at) for values in chunk]
            ctx.conn.executemany(insert_sql("outbox", OUTBOX_KEYS), entries)
            total += len(entries)
    return total + snapshot_documents(ctx, workspace_id, at)


def _snapshot_range(ctx: WriteContext, workspace_id: str, at: str) -> int:
    """The snapshot range of the workspace's messages (none if it has none to push); how many
    messages it stands for."""
    counted = ctx.conn.execute(q.snapshot_conversations_sql(), {"ws": workspace_id})
    found = [(conversation, count) for conversation, count in counted if count]
    left = sum(int(count) for _, count in found)
    if not left:
        return 0
    state = {"conversations": [c for c, _ in found], "at": 0, "after": "", "left": left}
    entry = {
        "table_name": "messages",
        "row_id": q.SNAPSHOT_ROW,
        "workspace_id": workspace_id,
        "op": "insert",  # (what the messages' own entries would say)
        "fields": dump_json_text(state),
        "field_hlc": OUTBOX_ONE_CLOCK,
        "hlc": "",
        "origin": "",
        "created_at": at,
        "attempts": 0,
    }
    ctx.conn.execute(insert_sql("outbox", OUTBOX_KEYS), entry)
    return left


def _snapshot_entry(table: str, codec: RowCodec, values: Sequence[Any], at: str) -> dict[str, Any]:
    row = codec.decode(values)
    return snapshot_entry(table, workspace_of(table, row), row_fields(row), row, at)


def row_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a whole-row push carries of a stored row: every column but its clocks (``id``
    included; mapping.py leaves out what never leaves the device)."""
    return {k: v for k, v in row.items() if k not in CLOCK_COLUMNS}


def unlink_op(workspace_id: str) -> WriteOp:
    def op(ctx: WriteContext) -> None:
        conn = ctx.conn
        conn.execute(q.link_delete_sql(), {"ws": workspace_id})
        scopes = orjson.dumps([pull_scope(workspace_id), workspace_id]).decode()
        conn.execute(q.cursor_delete_sql(), {"_scopes": scopes})
        conn.execute(q.outbox_delete_workspace_sql(), {"ws": workspace_id})
        conn.execute(q.parked_delete_workspace_sql(), {"ws": workspace_id})
        ctx.set_linked(workspace_id, False)  # last: from now on its writes get none
        logger.info("sync.unlinked workspace_id=%s", workspace_id)

    return op


# -- boot cleanup -----------------------------------------------------------------------------

#: Entries deleted per transaction by ``drop_unlinked_entries``.
CLEANUP_CHUNK = 5000


def drop_unlinked_entries(conn: sqlite3.Connection, chunk: int = CLEANUP_CHUNK) -> int:
    """Delete the outbox entries of workspaces that are not linked (written before only linked
    workspaces got entries), ``chunk`` entries per transaction; how many were deleted.

    Idempotent: a store without such entries pays one scan of the outbox index. Entries without
    a workspace are kept. Runs before the writer starts (no other writer on ``conn``)."""
    dead = [row[0] for row in conn.execute(q.outbox_unlinked_workspaces_sql())]
    delete = q.outbox_delete_chunk_sql()
    total = 0
    for workspace_id in dead:
        params = delete.params({"ws": workspace_id, "_limit": chunk})
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                removed = conn.execute(delete.sql, params).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            total += removed
            if removed < chunk:
                break
    if total:
        logger.info("store.outbox.unlinked_dropped entries=%d workspaces=%d", total, len(dead))
    return total
