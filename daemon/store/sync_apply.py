"""Applying one pulled page: the write transaction behind ``SyncRepo.apply_pull``.

The whole page runs as ONE mutation in the writer thread (one hop, one transaction, with the
scope's cursor). Per table, in parent-before-child order: read the page's local rows and the
fields with unpushed outbox entries in bulk (``json_each`` over one JSON parameter), call the
injected pure merge per row, upsert the rows whose stored state changed with one
``executemany``, and append one changelog entry per row whose VISIBLE state changed, so an
echo of our own push (a merge that changes nothing) writes nothing and tells no UI. A row of a
table without JSON values that holds nothing its stored copy lacks (``is_stored_state``: the
usual echo, a duplicate) is not even merged: merging a state into one that contains it is a
no-op under every rule. Unpushed edits include lost pushes (sync_outbox.py) while the row
holds their values; the page drops those the merge replaced.

A JSON value of a pulled row holding a number the store does not keep exactly (an integer
beyond 64 bits, 2**63 or more in magnitude, beyond the double range: daemon/jsonnumbers.py;
the cloud's jsonb takes any) is set aside (WARNING ``sync.apply.set_aside``, never the value):
the change applies without that field and its clocks, so the row arrives, nothing is stored
changed (orjson would read such an integer as the nearest double), and whatever this device
shows it can write back through the local API, which refuses such numbers alike. So is a
value nested deeper than the store can write (``jsonnumbers.too_deep``, reason ``too_deep``).

A pull serves each row at its latest write, so a child can come pages before a parent updated
after it. Such a row is parked in ``sync_parked`` (the cursor still moves) and applied in the
transaction that brings its parent.

A page that is new rows stored as they are (``NewRows``: the bulk of a first sync, made in one
pass from the cloud's rows by sync.adapters.new_rows_as_is) goes through ``apply_new_rows_op``:
no merge, no mapping to local changes, one check of the page (every row new here, once in the
page, parents here, storable) and multi-row INSERTs; when the check fails it writes nothing and
the page takes ``apply_pull_op`` (the property test in test_sync_apply_as_is.py holds both ways
to one result).

``documents`` and ``doc_updates`` rows (metadata, and append-only Yjs updates) go through
sync_docs.py's ``DocPage`` after the entity tables, in the same transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson

from daemon.errors import DamagedRow
from daemon.hlc import MAX_AHEAD_MS, ClockError, decode, encode
from daemon.store import sync_sql as q
from daemon.store.codec import RowCodec, dump_json
from daemon.store.ids import uuid7
from daemon.store.schema import CLOCK_COLUMNS, ENTITY_TABLES
from daemon.store.sql import insert_many, insert_sql
from daemon.store.sync_docs import DOC_TABLES, DocPage, Parked
from daemon.store.sync_rows import (
    SHAPES,
    ChangeBuffer,
    TableShape,
    Unpushed,
    change_topic,
    complete_row,
    conflict_view,
    deep_fields,
    is_stored_state,
    row_problem,
    rows_as_is,
    unpushed,
    wide_fields,
    without_fields,
)
from daemon.store.sync_types import ApplyOutcome, MergeFn, MergeOutcome, NewRows
from daemon.store.txn import WriteContext, WriteOp, workspace_of

logger = logging.getLogger(__name__)

#: A clock every clock beats (a damaged row's lost clocks: ``_local_row``).
_LOSING_CLOCK = encode(0, 0, "0")

# Remote clocks more than MAX_AHEAD_MS ahead are merged but not fed into our clock (the cloud
# refuses such writes with ``clock_skew``; one bad row must not drag every later edit along).
_NONE: frozenset[str] = frozenset()
_CLOCKS_ONLY: frozenset[str] = frozenset({"field_hlc"})
_ID = itemgetter("id")
_WORKSPACE = itemgetter("workspace_id")


def apply_pull_op(
    scope: str,
    changes: Sequence[dict[str, Any]],
    cursor: str | None,
    merge: MergeFn,
    as_is: frozenset[str] = frozenset(),
) -> WriteOp:
    def op(ctx: WriteContext) -> ApplyOutcome:
        page = PageApplier(ctx, merge, as_is)
        page.run(changes)
        return page.finish(scope, cursor)

    return op


def apply_new_rows_op(
    scope: str,
    new: NewRows,
    cursor: str | None,
    merge: MergeFn | None = None,
    as_is: frozenset[str] = frozenset(),
) -> WriteOp:
    """``apply_pull_op`` of a page that is ``new.rows``, each stored as it is, and
    ``new.others`` merged (with ``merge``) at their table's turn, as ``apply_pull_op``
    would: the outcome, or None, having written nothing, when one of the new rows is stored
    here already, is twice in the page, lacks its parent or cannot be stored, or when the
    page releases parked rows of their table (the page must then take the merge)."""

    def op(ctx: WriteContext) -> ApplyOutcome | None:
        page = PageApplier(ctx, merge or _no_merge, as_is)
        ctx.conn.execute("SAVEPOINT new_page")  # (an exception: the writer rolls the op back)
        stored = page.run(new.others, new)
        if not stored:
            ctx.conn.execute("ROLLBACK TO new_page")
        ctx.conn.execute("RELEASE new_page")
        return page.finish(scope, cursor) if stored else None

    return op


def _good_id(row_id: Any) -> bool:
    """What a pulled row's id must be: text of 1 to 100 characters."""
    return type(row_id) is str and 0 < len(row_id) <= 100


def _no_merge(*_args: Any) -> MergeOutcome:
    raise AssertionError("rows stored as they are are never merged")


@dataclass
class _Counts:
    applied: int = 0
    changed: int = 0
    conflicts: int = 0
    parked: int = 0
    skipped: int = 0


@dataclass
class _TableBatch:
    """The state of one table's part of a page while it is merged."""

    shape: TableShape
    local: dict[str, dict[str, Any]]
    #: the JSON array of the page's ids (bound as ``_ids``)
    ids: str
    #: the rows' unpushed outbox entries (read when the first merge needs them)
    pending: Unpushed | None
    #: ids stored before this page (the others are inserted)
    stored: frozenset[str] = frozenset()
    #: no JSON value columns besides ``field_hlc``: a stored row can be compared as is
    plain: bool = False
    upserts: dict[str, dict[str, Any]] = field(default_factory=dict)


class PageApplier:
    """Merges one page inside the writer's transaction (not thread-safe; one per page)."""

    def __init__(
        self, ctx: WriteContext, merge: MergeFn, as_is: frozenset[str] = frozenset()
    ) -> None:
        self.ctx = ctx
        self.merge = merge
        #: tables whose new one-clock rows ``merge`` stores as they are (``rows_as_is``,
        #: ``run_new``)
        self.as_is = as_is
        self.stamp = ctx.stamp()
        self.ms = self.stamp.ms
        self.counts = _Counts()
        self.log = ChangeBuffer()
        #: ids known to exist after this page's writes so far, per table
        self.present: dict[str, set[str]] = {name: set() for name in ENTITY_TABLES}
        #: ids inserted by this page (only a new parent can release parked children)
        self.inserted: dict[str, set[str]] = {name: set() for name in ENTITY_TABLES}
        self.docs = DocPage(ctx, merge, Parked(self._park, self._skip))

    def finish(self, scope: str, cursor: str | None) -> ApplyOutcome:
        """Write the page's changelog entries and ``cursor`` (if any) for ``scope``."""
        self.log.flush(self.ctx, self.stamp.iso)
        if cursor is not None:
            params = {"scope": scope, "cursor": cursor, "now": self.stamp.iso}
            self.ctx.conn.execute(q.cursor_put_sql(), params)
        return self.outcome()

    def outcome(self) -> ApplyOutcome:
        c, docs = self.counts, self.docs
        return ApplyOutcome(
            c.applied + docs.applied,
            c.changed + len(docs.events),
            c.conflicts,
            c.parked,
            c.skipped,
            tuple(docs.stored),
            tuple(docs.changed_docs.values()),
        )

    def run(self, changes: Iterable[dict[str, Any]], new: NewRows | None = None) -> bool:
        """Merge ``changes``, and store ``new``'s rows as they are at their table's turn
        (``run_new``); False, having stopped there, when they cannot be (the caller rolls
        the page back) or when parked rows of their table come free (the merge must take
        those and the page's together)."""
        tables = (*ENTITY_TABLES, *DOC_TABLES)
        by_table: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
        for change in changes:
            remote = self._remote_row(change)
            if remote is not None:
                by_table[change["table"]].append(remote)
        if new is None:
            self.receive_clocks(by_table)
        else:
            self.receive_clocks({**by_table, new.table: by_table[new.table] + new.rows})
        for name in ENTITY_TABLES:
            rows = by_table[name] + self._unparked(name)
            if new is not None and name == new.table:
                if rows or not self.run_new(SHAPES[name], new.rows):
                    return False
            elif rows:
                self._apply_table(SHAPES[name], rows)
        docs = self.docs
        parked_docs = self._released("documents", self.inserted["workspaces"])
        docs.apply_documents(by_table["documents"] + parked_docs, self.present["workspaces"])
        parked_updates = self._released("doc_updates", docs.inserted_docs)
        docs.apply_updates(by_table["doc_updates"] + parked_updates)
        for topic, event, workspace_id in docs.events:
            self.log.add(topic, event, workspace_id)
        return True

    # -- input --------------------------------------------------------------------------------

    def _remote_row(self, change: Any) -> dict[str, Any] | None:
        """The change's row with its id, or None (counted as skipped) if it is malformed."""
        if not isinstance(change, dict) or (
            change.get("table") not in SHAPES and change.get("table") not in DOC_TABLES
        ):
            self._skip("?", None, "not a change of a synced table")
            return None
        row = change.get("row")
        if not isinstance(row, dict):
            self._skip(change["table"], change.get("id"), "no row")
            return None
        row_id = row.get("id", change.get("id"))
        if not _good_id(row_id):
            self._skip(change["table"], None, "no id")
            return None
        if row.get("id") != row_id:
            row = {**row, "id": row_id}
        for unkept, reason in ((wide_fields, "wide_number"), (deep_fields, "too_deep")):
            fields = unkept(change["table"], row)
            if fields:  # kept as it was here; the rest of the change applies
                logger.warning(
                    "sync.apply.set_aside table=%s id=%r fields=%s reason=%s",
                    change["table"],
                    row_id,
                    ",".join(fields),
                    reason,
                )
                row = without_fields(row, fields)
        return row

    def _skip(self, table: str, row_id: Any, why: str) -> None:
        self.counts.skipped += 1
        logger.warning("sync.apply.skipped table=%s id=%r reason=%s", table, row_id, why)

    def receive_clocks(self, by_table: dict[str, list[dict[str, Any]]]) -> None:
        """Feed the newest remote clock into the store's HLC, so later local edits win."""
        newest = ""
        for rows in by_table.values():
            for row in rows:
                clock = row.get("hlc")
                if not isinstance(clock, str):
                    clocks = row.get("field_hlc")
                    clock = max(clocks.values(), default="") if isinstance(clocks, dict) else ""
                if isinstance(clock, str) and clock > newest:
                    newest = clock
        if not newest:
            return
        try:
            wall = decode(newest).wall_ms
        except ClockError:
            return
        if wall > self.ms + MAX_AHEAD_MS:
            logger.warning("sync.apply.clock_ahead clock=%s", newest)
            return
        self.ctx.clock.receive(newest, self.ms)

    # -- one table ----------------------------------------------------------------------------

    def _apply_table(self, shape: TableShape, remotes: list[dict[str, Any]]) -> None:
        batch = self._load(shape, remotes)
        if shape.name in self.as_is and not batch.local:  # all new: maybe stored as they are
            rows = rows_as_is(shape, remotes)
            if rows is not None and self.run_new(shape, rows):
                return
        for remote in remotes:
            self._apply_row(batch, remote)
        self._write(batch)

    def run_new(self, shape: TableShape, rows: list[dict[str, Any]]) -> bool:
        """Store ``rows`` (of ``shape``'s table) as they are, when each is new here, once in
        the page, has its parents here and can be stored; False, having written nothing,
        otherwise (the caller then takes the merge's way).

        SQLite's own checks decide, as the rows go in (no query and no Python pass per row
        before): the primary key refuses a row stored here or twice in the page, the foreign
        keys a missing parent, NOT NULL a missing required value, the role's CHECK an unknown
        role, and binding a value that is not a scalar; any of them rolls the INSERTs back.
        """
        if not all(map(_good_id, map(_ID, rows))):
            return False
        conn = self.ctx.conn
        conn.execute("SAVEPOINT new_rows")
        try:
            self._insert_rows(shape, rows)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            conn.execute("ROLLBACK TO new_rows")
            return False
        finally:
            conn.execute("RELEASE new_rows")
        # change_topic of a new row, all fields changed: created, or none if it arrives deleted
        created, add = shape.topics[0], self.log.add
        home = _WORKSPACE if shape.parents else _ID
        visible = [row for row in rows if row["deleted_at"] is None]
        for row in visible:
            add(created, row, home(row))
        self.counts.changed += len(visible)
        self.counts.applied += len(rows)
        self.inserted[shape.name].update(map(_ID, rows))
        self.present[shape.name].update(map(_ID, rows))
        return True

    def _write(self, batch: _TableBatch) -> None:
        """Write the table's merged rows: INSERTs of the new ones, upserts of the others."""
        shape, stored = batch.shape, batch.stored
        new = [row for row_id, row in batch.upserts.items() if row_id not in stored]
        old = [row for row_id, row in batch.upserts.items() if row_id in stored]
        self._insert_rows(shape, new)
        self._upsert_rows(shape, old)
        self.present[shape.name].update(batch.local)
        if batch.pending is not None and batch.pending.lost:
            # lost pushes whose value the merge replaced: their conflict (if any) is recorded
            overtaken = batch.pending.overtaken(batch.local)
            self.ctx.conn.executemany(q.outbox_delete_sql(), [{"_id": i} for i in overtaken])

    def _insert_rows(self, shape: TableShape, rows: list[dict[str, Any]]) -> None:
        """Multi-row INSERTs of the rows new here (the bulk of a first sync)."""
        if rows:
            values = list(map(shape.values, self._encoded(shape, rows)))
            insert_many(self.ctx.conn, shape.name, shape.columns, values)

    def _upsert_rows(self, shape: TableShape, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.ctx.conn.executemany(q.upsert_sql(shape.name), self._encoded(shape, rows))

    def _encoded(self, shape: TableShape, rows: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        """``rows`` as stored: JSON and boolean columns encoded (the rows as they are if none)."""
        codec = self.ctx.codecs[shape.name]
        return rows if codec.plain else map(codec.encode, rows)

    def _load(self, shape: TableShape, remotes: list[dict[str, Any]]) -> _TableBatch:
        name = shape.name
        conn, codec = self.ctx.conn, self.ctx.codecs[name]
        ids = orjson.dumps(list(map(_ID, remotes))).decode()
        found = conn.execute(q.rows_by_ids_sql(name), {"_ids": ids})
        local = {row["id"]: row for row in (_local_row(codec, values) for values in found)}
        for parent, column in shape.parents:  # the parents of rows new here
            wanted = {r.get(column) for r in remotes if r["id"] not in local}
            wanted -= self.present[parent]
            wanted.discard(None)
            if wanted:
                found = conn.execute(q.existing_ids_sql(parent), {"_ids": q.json_ids(wanted)})
                self.present[parent].update(r[0] for r in found)
        plain = codec.json_columns <= _CLOCKS_ONLY
        return _TableBatch(shape, local, ids, None, frozenset(local), plain=plain)

    def _pending(self, batch: _TableBatch, local: dict[str, Any]) -> frozenset[str]:
        """The fields of stored row ``local`` with an unpushed local edit (one query per
        table; a row new here has none): the merge records a conflict when one of them is a
        manual field and loses (R5)."""
        if batch.pending is None:
            name = batch.shape.name
            homes = (workspace_of(name, row) for row in batch.local.values())
            batch.pending = unpushed(self.ctx.conn, name, batch.ids, homes)
        return batch.pending.pending(local["id"], local)

    def _apply_row(self, batch: _TableBatch, remote: dict[str, Any]) -> None:
        shape, row_id = batch.shape, remote["id"]
        local = batch.local.get(row_id)
        if local is None:
            missing = self._missing_parent(shape, remote)
            if missing is not None:
                self._park(shape.name, remote, missing)
                return
        elif batch.plain and is_stored_state(local, remote):
            self.counts.applied += 1  # an echo or a duplicate: nothing to merge or write
            return
        try:
            pending = _NONE if local is None else self._pending(batch, local)
            result = self.merge(shape.name, local, remote, pending)
            row = complete_row(shape, result.row, remote)
        except (ValueError, TypeError) as exc:
            self._skip(shape.name, row_id, f"merge refused it: {exc}")
            return
        problem = row_problem(shape, row) or self._foreign_key_problem(shape, row, local)
        if problem is not None:
            self._skip(shape.name, row_id, problem)
            return
        self.counts.applied += 1
        if local is None or (result.row_changed and any(row[c] != local.get(c) for c in row)):
            batch.upserts[row_id] = batch.local[row_id] = row
            if local is None:
                self.inserted[shape.name].add(row_id)
        topic = change_topic(shape, local, row, result.changed)
        if topic is not None:
            self.log.add(topic, row, row["workspace_id"] if shape.parents else row_id)
            self.counts.changed += 1
        for conflict in result.conflicts:
            self._record_conflict(shape.name, row, conflict)

    def _missing_parent(self, shape: TableShape, row: dict[str, Any]) -> str | None:
        for parent, column in shape.parents:
            parent_id = row.get(column)
            if isinstance(parent_id, str) and parent_id not in self.present[parent]:
                return parent_id
        return None

    def _park(self, name: str, remote: dict[str, Any], parent_id: str) -> None:
        """Hold a row whose parent is not here yet (joined with an older parked version)."""
        conn, row_id = self.ctx.conn, remote["id"]
        row = remote
        old = conn.execute(q.parked_get_sql(), {"table_name": name, "row_id": row_id}).fetchone()
        try:
            if old is not None:
                merged = self.merge(name, orjson.loads(old[0]), remote, _NONE).row
                row = {**merged, "id": row_id}
            text = orjson.dumps(row).decode()
        except (ValueError, TypeError) as exc:
            self._skip(name, row_id, f"cannot park it: {exc}")
            return
        params = {
            "table_name": name,
            "row_id": row_id,
            "workspace_id": row.get("workspace_id"),
            "parent_id": parent_id,
            "row": text,
            "created_at": self.stamp.iso,
        }
        conn.execute(q.parked_put_sql(), params)
        self.counts.parked += 1

    def _unparked(self, name: str) -> list[dict[str, Any]]:
        """Parked rows of ``name`` whose parent this page inserted (removed from the park)."""
        parents: set[str] = set()
        for parent, _ in SHAPES[name].parents:
            parents |= self.inserted[parent]
        return self._released(name, parents)

    def _released(self, name: str, parents: set[str]) -> list[dict[str, Any]]:
        """Parked rows of ``name`` whose parent is one of ``parents`` (removed from the park)."""
        if not parents:
            return []
        found = self.ctx.conn.execute(
            q.parked_by_parent_sql(), {"_ids": q.json_ids(parents)}
        ).fetchall()
        rows = [orjson.loads(text) for table_name, text in found if table_name == name]
        self.ctx.conn.executemany(
            q.parked_delete_sql(), [{"table_name": name, "row_id": r["id"]} for r in rows]
        )
        return rows

    def _foreign_key_problem(
        self, shape: TableShape, row: dict[str, Any], local: dict[str, Any] | None
    ) -> str | None:
        """A merge that moved an existing row to a parent that is not here (fww ties)."""
        if local is None:
            return None
        for parent, column in shape.parents:
            value = row[column]
            if value != local[column] and not self.ctx.exists(parent, value, live=False):
                return f"{column} names an unknown {parent}"
        return None

    def _record_conflict(self, name: str, row: dict[str, Any], conflict: Any) -> None:
        """I9: our unpushed edit of a manual field lost; keep both values, tell the UIs."""
        record = {
            "id": uuid7(self.ms),
            "table_name": name,
            "row_id": row["id"],
            "workspace_id": workspace_of(name, row),
            "field": str(_get(conflict, "field")),
            "local_value": dump_json(_get(conflict, "local_value")),
            "remote_value": dump_json(_get(conflict, "remote_value")),
            "local_hlc": _get(conflict, "local_hlc") or "",
            "remote_hlc": _get(conflict, "remote_hlc") or "",
            "created_at": self.stamp.iso,
            "resolved_at": None,
        }
        self.ctx.conn.execute(insert_sql("conflicts", tuple(record)), record)
        self.log.add("sync.conflict", conflict_view(record), record["workspace_id"])
        self.counts.conflicts += 1
        logger.info("sync.conflict table=%s id=%s field=%s", name, row["id"], record["field"])


def _get(conflict: Any, key: str) -> Any:
    if isinstance(conflict, dict):
        return conflict.get(key)
    return getattr(conflict, key, None)


def _local_row(codec: RowCodec, values: Sequence[Any]) -> dict[str, Any]:
    """A stored row as the merge takes it. One damaged here (a JSON column that cannot be read,
    codec.py) is repaired from the cloud: its damaged columns are null under no clock, which
    loses to every clock, so the pulled values take their place; damaged clocks lose them all
    (the pulled row is taken whole; unpushed local edits still go out from the outbox)."""
    try:
        return codec.decode(values)
    except DamagedRow:
        row = codec.decode_shown(values)
    damaged = row.pop("damaged")
    clocks = row.get("field_hlc")
    if "field_hlc" in damaged or not isinstance(clocks, dict):
        # (not {}: an empty field_hlc is the one-register form, every field at the row clock)
        fields = [k for k in row if k != "id" and k not in CLOCK_COLUMNS]
        row["field_hlc"] = dict.fromkeys(fields, _LOSING_CLOCK)
    else:
        row["field_hlc"] = {k: v for k, v in clocks.items() if k.split(".")[0] not in damaged}
    logger.warning(
        "sync.apply.repairing table=%s id=%s columns=%s (from the pulled row)",
        codec.table, row.get("id"), ",".join(damaged),
    )  # fmt: skip
    return row
