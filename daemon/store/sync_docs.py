"""Collaborative documents in cloud sync, store side: pulled ``documents`` / ``doc_updates`` rows
inside the page's write transaction, and the documents part of a link's snapshot.

Pulled ``documents`` rows are metadata only (name, tombstone, clocks): merged per field by the
injected merge like any row; the local ``snapshot`` / ``snapshot_seq`` (this device's
compaction) are never touched. A new document gets an empty snapshot: its content arrives as
``doc_updates``. The rows a page changed are returned (``ApplyOutcome.documents``) so that the
loaded documents take their metadata after the commit (``DocumentRepo.refresh``).

Adoption: ids are a document's identity. A pulled row whose id is a document this device has
WITHOUT a workspace (local-only: opened by id before the row had arrived) adopts that
document: the merge gives it the pulled workspace (``workspace_id`` is first-writer-wins, and
a value beats null), its metadata merges per field as usual, its updates take the workspace,
and, the workspace being linked, its merged metadata and its whole content (one update, as a
link's snapshot sends it) are queued for the other devices (``adopt``). The pulled updates
then merge with the local ones (a CRDT). Pulled updates of such a document that arrive before
its row are parked until the row adopts it. A document of ANOTHER workspace stays refused:
its row and its updates are skipped. ``doc.open {id, workspace_id}`` adopts a local-only
document the same way, from the local API (``adopt_local_op``), and refuses one of another
workspace.

Pulled ``doc_updates`` rows are append-only Yjs updates. One that is not exactly one
well-formed Yjs update v1 (yupdate.py; another app may insert anything base64 through REST)
is set aside like any malformed change (``sync.apply.skipped``, WARNING, never its data): not
stored, not evented, and the cursor passes it. The empty update is not stored. The others are
stored once (an id already stored is a
repeat and is skipped; so is an update this device made, which it has already, perhaps folded
into a snapshot), each with a ``doc.updated`` changelog entry (the shape doc_ops writes for
local updates, ``origin`` the writer's device), in the page's transaction, so page, updates and
cursor commit together. An update whose document is not here yet is parked like any orphan and
stored in the transaction that brings its document. The stored updates are returned (as
``DocUpdate``s) so that the caller hands them to the loaded documents after the commit
(``DocumentRepo.absorb``).

Link snapshot: one ``documents`` outbox entry per document of the workspace (its full metadata
and clocks) and ONE ``doc_updates`` entry holding its whole content (snapshot + remaining
updates encoded as one update) under a fresh id: the updates' own outbox entries were dropped
with the workspace's older entries.
"""

from __future__ import annotations

import base64
import binascii
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import orjson
import sqlalchemy as sa

from daemon.errors import InvalidInput, NotFound
from daemon.store import doc_ops
from daemon.store import sync_sql as q
from daemon.store.base import require_workspace
from daemon.store.codec import dump_json_text, load_json
from daemon.store.ids import uuid7
from daemon.store.sql import OUTBOX_KEYS, OUTBOX_ONE_CLOCK, compile_statement, insert_sql
from daemon.store.sync_rows import origin_of, unpushed_fields
from daemon.store.sync_types import DocUpdate, MergeFn
from daemon.store.txn import Stamp, WriteContext, WriteOp
from daemon.store.ydoc import check, replay, state_with
from daemon.store.yupdate import MalformedUpdate

logger = logging.getLogger(__name__)

DOC_TABLES: Final = ("documents", "doc_updates")
#: The metadata columns of a document (what sync reads and writes; never the snapshot).
META_COLUMNS: Final = (*doc_ops.ROW_COLUMNS, "hlc", "field_hlc", "origin")
_D, _U = doc_ops.documents.c, doc_ops.doc_updates.c


def snapshot_entry(
    table: str, workspace_id: str | None, fields: dict[str, Any], row: dict[str, Any], at: str
) -> dict[str, Any]:
    """The outbox entry that sends a whole row when its workspace is linked: ``fields`` (with
    ``id``) each under its own clock from ``row["field_hlc"]``, else under ``row["hlc"]``
    (the one-clock form when every field has ``row["hlc"]``)."""
    hlc = row["hlc"]
    clocks = dict.fromkeys(fields, hlc)
    clocks.update(row.get("field_hlc") or {})
    # (a clock of a key that is no field, e.g. a map's key, keeps the clocks spelt out)
    one_clock = len(clocks) == len(fields) and all(c == hlc for c in clocks.values())
    return {
        "table_name": table,
        "row_id": fields["id"],
        "workspace_id": workspace_id,
        "op": "insert",
        "fields": dump_json_text(fields),
        "field_hlc": OUTBOX_ONE_CLOCK if one_clock else dump_json_text(clocks),
        "hlc": hlc,
        "origin": row["origin"],
        "created_at": at,
        "attempts": 0,
    }


@cache
def _sql() -> dict[str, str]:
    meta = [_D[c] for c in META_COLUMNS]
    doc_in_ids = q.in_json(_D.id, "_ids")
    return {
        "docs": compile_statement(sa.select(*meta).where(doc_in_ids)).sql,
        "doc_ids": compile_statement(sa.select(_D.id, _D.workspace_id).where(doc_in_ids)).sql,
        "update_ids": compile_statement(sa.select(_U.id).where(q.in_json(_U.id, "_ids"))).sql,
        "insert_doc": compile_statement(
            sa.insert(doc_ops.documents), [*META_COLUMNS, "snapshot_seq"]
        ).sql,
        "update_doc": compile_statement(
            sa.update(doc_ops.documents)
            .where(_D.id == sa.bindparam("_id"))
            .values({c: sa.bindparam(c) for c in META_COLUMNS if c != "id"})
        ).sql,
        "workspace_docs": compile_statement(
            sa.select(*meta).where(_D.workspace_id == sa.bindparam("ws")).order_by(_D.id)
        ).sql,
        "adopt_updates": compile_statement(
            sa.update(doc_ops.doc_updates)
            .where(_U.doc_id == sa.bindparam("_id"), _U.workspace_id.is_(None))
            .values(workspace_id=sa.bindparam("ws"))
        ).sql,
    }


@dataclass(frozen=True)
class Parked:
    """How the page applier parks a row (``park(table, row, parent_id)``) and counts."""

    park: Callable[[str, dict[str, Any], str], None]
    skip: Callable[[str, Any, str], None]


class DocPage:
    """The documents part of one pulled page (inside the page's transaction)."""

    def __init__(self, ctx: WriteContext, merge: MergeFn, parked: Parked) -> None:
        self.ctx = ctx
        self.merge = merge
        self.parked = parked
        self.applied = 0
        self.stored: list[DocUpdate] = []
        self.events: list[tuple[str, dict[str, Any], str | None]] = []
        #: documents inserted or adopted by this page (their parked updates come free)
        self.inserted_docs: set[str] = set()
        #: the metadata (``ROW_COLUMNS``) of the stored documents this page changed
        self.changed_docs: dict[str, dict[str, Any]] = {}

    def apply_documents(self, remotes: list[dict[str, Any]], workspaces: set[str]) -> None:
        """Merge pulled document rows (``workspaces``: ids known to exist)."""
        if not remotes:
            return
        conn, sql = self.ctx.conn, _sql()
        ids = orjson.dumps([r["id"] for r in remotes]).decode()
        local = {v[0]: _doc_row(v) for v in conn.execute(sql["docs"], {"_ids": ids})}
        homes = (d["workspace_id"] for d in local.values())
        pending = unpushed_fields(conn, "documents", ids, homes) if local else {}
        for remote in remotes:
            row_id, mine = remote["id"], local.get(remote["id"])
            ws = remote.get("workspace_id")
            home = None if mine is None else mine["workspace_id"]
            adopting = mine is not None and home is None  # local-only: the row adopts it
            if not isinstance(ws, str) or not (mine is None or adopting or home == ws):
                self.parked.skip("documents", row_id, "workspace_id is missing or differs")
                continue
            if (mine is None or adopting) and ws not in workspaces:
                if not self.ctx.exists("workspaces", ws, live=False):
                    self.parked.park("documents", remote, ws)
                    continue
            try:
                result = self.merge("documents", mine, remote, pending.get(row_id, frozenset()))
            except (ValueError, TypeError) as exc:
                self.parked.skip("documents", row_id, f"merge refused it: {exc}")
                continue
            row = _complete(result.row, remote, self.ctx.stamp().iso)
            if row["workspace_id"] != ws:
                self.parked.skip("documents", row_id, "workspace_id differs")
                continue
            self.applied += 1
            if mine is None:
                conn.execute(sql["insert_doc"], {**_params(row), "snapshot_seq": 0})
                self.inserted_docs.add(row_id)
                local[row_id] = row  # the same document again in this page is an update
            elif result.row_changed and any(row[c] != mine.get(c) for c in META_COLUMNS):
                conn.execute(sql["update_doc"], {**_params(row), "_id": row_id})
                local[row_id] = row
                self.changed_docs[row_id] = {c: row[c] for c in doc_ops.ROW_COLUMNS}
                if adopting:
                    adopt(self.ctx, row, self.ctx.stamp().iso)
                    self.inserted_docs.add(row_id)

    def apply_updates(self, remotes: list[dict[str, Any]]) -> None:
        """Store pulled updates once each; park those whose document is not here yet."""
        if not remotes:
            return
        conn, sql = self.ctx.conn, _sql()
        ids = orjson.dumps([r["id"] for r in remotes]).decode()
        have = {v[0] for v in conn.execute(sql["update_ids"], {"_ids": ids})}
        doc_ids = orjson.dumps(sorted({str(r.get("doc_id")) for r in remotes})).decode()
        docs = dict(conn.execute(sql["doc_ids"], {"_ids": doc_ids}).fetchall())
        for doc_id in [d for d, ws in docs.items() if ws is None]:
            del docs[doc_id]  # local-only: its row, when it comes, adopts it (park till then)
        device = self.ctx.device_id
        for remote in remotes:
            row_id = remote["id"]
            self.applied += 1
            if row_id in have or remote.get("origin") == device:
                continue  # a repeat, or our own update (already here or folded)
            doc_id = remote.get("doc_id")
            if not isinstance(doc_id, str):
                self.parked.skip("doc_updates", row_id, "no doc_id")
                continue
            if doc_id not in docs:
                self.parked.park("doc_updates", remote, doc_id)
                continue
            if docs[doc_id] != remote.get("workspace_id"):
                self.parked.skip("doc_updates", row_id, "the document is of another workspace")
                continue
            self._store_update(remote, doc_id)
            have.add(row_id)

    def _store_update(self, remote: dict[str, Any], doc_id: str) -> None:
        try:
            data = base64.b64decode(str(remote.get("data")), validate=True)
        except (binascii.Error, ValueError):
            self.parked.skip("doc_updates", remote["id"], "data is not base64")
            return
        if not data:
            self.parked.skip("doc_updates", remote["id"], "empty update")
            return
        try:
            if not check(data):
                return  # the empty Yjs update: changes nothing, nothing to store
        except MalformedUpdate as exc:  # set aside: the cursor passes it, it is never stored
            self.parked.skip("doc_updates", remote["id"], f"not one Yjs update (v1): {exc}")
            return
        hlc = remote.get("hlc") if isinstance(remote.get("hlc"), str) else ""
        origin = str(remote.get("origin") or origin_of(hlc) or "cloud")
        workspace_id = remote.get("workspace_id")
        created = remote.get("created_at") or self.ctx.stamp().iso
        params = (remote["id"], doc_id, workspace_id, data, created, hlc, origin)
        self.ctx.conn.execute(doc_ops.INSERT_UPDATE, params)
        event = doc_ops.update_event(doc_id, workspace_id, remote["id"], data, origin)
        self.events.append(("doc.updated", event, workspace_id))
        self.stored.append(DocUpdate(doc_id, remote["id"], data))


def _doc_row(values: Iterable[Any]) -> dict[str, Any]:
    row = dict(zip(META_COLUMNS, values, strict=True))
    row["field_hlc"] = load_json(row["field_hlc"]) or {}
    return row


def _complete(merged: dict[str, Any], remote: dict[str, Any], now: str) -> dict[str, Any]:
    row = {c: merged.get(c) for c in META_COLUMNS}
    row["id"] = remote["id"]
    raw = merged.get("field_hlc")
    clocks: dict[str, str] = dict(raw) if isinstance(raw, dict) else {}
    row["field_hlc"] = clocks
    hlc = max(clocks.values(), default=None) or remote.get("hlc") or ""
    row["hlc"] = hlc
    row["origin"] = origin_of(hlc) or remote.get("origin") or "cloud"
    row["name"] = row["name"] if isinstance(row["name"], str) else ""
    row["created_at"] = row["created_at"] or now
    row["updated_at"] = row["updated_at"] or row["created_at"]
    return row


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "field_hlc": dump_json_text(row["field_hlc"])}


# -- link snapshot ----------------------------------------------------------------------------


def snapshot_documents(ctx: WriteContext, workspace_id: str, at: str) -> int:
    """Outbox entries for every document of the workspace: its metadata and its whole content
    as one update (see the module docstring); how many entries were written."""
    conn = ctx.conn
    rows = [_doc_row(v) for v in conn.execute(_sql()["workspace_docs"], {"ws": workspace_id})]
    entries: list[dict[str, Any]] = []
    for row in rows:
        entries.append(metadata_entry(row, at))
        content = content_entry(ctx, row["id"], at)
        if content is not None:
            entries.append(content)
    if entries:
        conn.executemany(insert_sql("outbox", OUTBOX_KEYS), entries)
    return len(entries)


def document_metadata(conn: sqlite3.Connection, doc_id: str) -> dict[str, Any] | None:
    """A stored document's metadata (``META_COLUMNS``, clocks decoded; never its content)."""
    values = conn.execute(_sql()["docs"], {"_ids": q.json_ids([doc_id])}).fetchone()
    return None if values is None else _doc_row(values)


def metadata_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a whole push of a document's metadata carries (``row``: ``document_metadata``):
    not a name that was never given (``""`` without a clock: it must not rename the document
    where it has one)."""
    clocks = row["field_hlc"]
    unnamed = row["name"] == "" and clocks and "name" not in clocks
    return {k: row[k] for k in doc_ops.ROW_COLUMNS if not (unnamed and k == "name")}


def metadata_entry(row: dict[str, Any], at: str) -> dict[str, Any]:
    """The outbox entry sending a document's whole metadata (``row``: ``document_metadata``)."""
    return snapshot_entry("documents", row["workspace_id"], metadata_fields(row), row, at)


def content_entry(ctx: WriteContext, doc_id: str, at: str) -> dict[str, Any] | None:
    """One ``doc_updates`` entry holding the document's whole state (None: it is empty, or
    not stored)."""
    stored = doc_ops.read_stored(ctx.conn, doc_id)
    if stored is None or (stored.snapshot is None and not stored.updates):
        return None
    workspace_id = stored.row["workspace_id"]
    doc, _, waiting, skipped = replay(stored.snapshot, [data for _, data in stored.updates])
    for index, reason in skipped:  # what cannot be read is not pushed (it would spread)
        logger.warning("doc.link.skipped doc_id=%s index=%d reason=%s", doc_id, index, reason)
    stamp: Stamp = ctx.tick()
    update_id = uuid7(stamp.ms)
    values = {
        "id": update_id,
        "doc_id": doc_id,
        "workspace_id": workspace_id,
        "data": base64.b64encode(state_with(doc, waiting)).decode("ascii"),
        "created_at": stamp.iso,
    }
    own = {"hlc": stamp.hlc, "origin": ctx.device_id}
    return snapshot_entry("doc_updates", workspace_id, values, own, at)


# -- adoption ---------------------------------------------------------------------------------


def adopt(ctx: WriteContext, row: dict[str, Any], at: str) -> None:
    """A document this device had without a workspace is now of ``row["workspace_id"]``
    (``row``: its merged metadata, stored): its updates take that workspace and, the workspace
    being linked, its metadata and whole content are queued for the other devices."""
    doc_id, workspace_id = row["id"], row["workspace_id"]
    ctx.conn.execute(_sql()["adopt_updates"], {"_id": doc_id, "ws": workspace_id})
    logger.info("doc.adopted doc_id=%s ws=%s", doc_id, workspace_id)
    if not ctx.syncs(workspace_id):
        return
    entries = [metadata_entry(row, at)]
    content = content_entry(ctx, doc_id, at)
    if content is not None:
        entries.append(content)
    ctx.conn.executemany(insert_sql("outbox", OUTBOX_KEYS), entries)
    ctx.queue_push(workspace_id)


def adopt_local_op(doc_id: str, workspace_id: str) -> WriteOp:
    """``doc.open {id, workspace_id}`` of a document this device has WITHOUT a workspace: it
    takes ``workspace_id`` as a pulled row's adoption gives it one (``workspace_id`` is
    first-writer-wins and a value beats null, so the new clock wins over the null), then
    ``adopt``. InvalidInput on ``workspace_id`` when the workspace is unknown or deleted, or
    the document is of another workspace. The document's metadata (``ROW_COLUMNS``)."""

    def op(ctx: WriteContext) -> dict[str, Any]:
        row = document_metadata(ctx.conn, doc_id)
        if row is None:
            raise NotFound("document", doc_id)
        home = row["workspace_id"]
        if home is not None and home != workspace_id:
            raise InvalidInput("workspace_id", f"document {doc_id!r} belongs to workspace {home!r}")
        if home is None:
            require_workspace(ctx, workspace_id)
            stamp = ctx.tick()
            clocks = {"workspace_id": stamp.hlc, "updated_at": stamp.hlc}
            row.update(workspace_id=workspace_id, updated_at=stamp.iso, hlc=stamp.hlc)
            row.update(origin=ctx.device_id, field_hlc={**row["field_hlc"], **clocks})
            ctx.conn.execute(_sql()["update_doc"], {**_params(row), "_id": doc_id})
            adopt(ctx, row, stamp.iso)
        return {c: row[c] for c in doc_ops.ROW_COLUMNS}

    return op


def adopt_late_updates_op(doc_id: str) -> WriteOp:
    """After an adoption: the local updates written without a workspace since (they were queued
    before the loaded document learnt its workspace) take it, and go out as one update; how
    many there were."""

    def op(ctx: WriteContext) -> int:
        row = document_metadata(ctx.conn, doc_id)
        if row is None or row["workspace_id"] is None:
            return 0
        workspace_id = row["workspace_id"]
        params = {"_id": doc_id, "ws": workspace_id}
        late = int(ctx.conn.execute(_sql()["adopt_updates"], params).rowcount)
        if late and ctx.syncs(workspace_id):
            content = content_entry(ctx, doc_id, ctx.stamp().iso)
            if content is not None:
                ctx.conn.execute(insert_sql("outbox", OUTBOX_KEYS), content)
                ctx.queue_push(workspace_id)
        return late

    return op
