"""The store side of cloud sync, exposed as ``store.sync`` (a ``SyncRepo``).

Every method is one thread hop: reads run as one function in the reader's thread, writes as
one mutation of the group-committing writer (one transaction). The store knows nothing of the
cloud or of the merge rules: ``apply_pull`` takes the pure merge as an argument (the sync
driver passes one built on daemon.sync.merge), and rows arrive already mapped to local names.

Change shapes: ``take_outbox`` returns ``OutboxChange``s (coalesced per row); ``complete_push``
takes them back with the cloud's results in the same order (``{"status": "applied" |
"superseded" | "rejected", "reason"?, "detail"?, "id"?}``); ``apply_pull`` takes
``{"table": <local table>, "row": <local-shaped row, field_hlc a dict>}`` (``"id"`` optional
when the row has it). The pull cursor of a linked workspace lives under
``pull_scope(workspace_id)``; ``unlink`` drops it.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any, Final

import aiosqlite

from daemon.errors import Conflict, InvalidInput, NotFound, StoreError
from daemon.store import conversations, tasks, workspaces
from daemon.store import sync_sql as q
from daemon.store.base import (
    Check,
    Page,
    identifier,
    integer,
    json_value,
    optional_text,
    read_page,
    text,
)
from daemon.store.base import write_changes as write_local_change
from daemon.store.codec import load_json, shown_row
from daemon.store.documents import DocumentRepo
from daemon.store.engine import Writer, run_in_thread
from daemon.store.schema import conflicts as conflicts_table
from daemon.store.sync_apply import apply_new_rows_op, apply_pull_op
from daemon.store.sync_corrupt import set_aside_op
from daemon.store.sync_outbox import (
    PUSH_STATUSES,
    REJECTED_COLUMNS,
    complete_push_op,
    link_op,
    pull_scope,
    read_outbox,
    rejected_view,
    unlink_op,
)
from daemon.store.sync_rows import SHAPES, conflict_view
from daemon.store.sync_skew import Requeued, requeue_due_op
from daemon.store.sync_types import (
    ApplyOutcome,
    CorruptEntry,
    Link,
    MergeFn,
    MergeOutcome,
    NewRows,
    OutboxChange,
    PushOutcome,
)
from daemon.store.txn import WriteContext, WriteOp

__all__ = [
    "ApplyOutcome",
    "Link",
    "MergeFn",
    "MergeOutcome",
    "NewRows",
    "OutboxChange",
    "PushOutcome",
    "SyncRepo",
    "pull_scope",
]

MAX_TAKE = 10_000
_CHECKS: dict[str, dict[str, Check]] = {
    "workspaces": workspaces.UPDATABLE,
    "conversations": conversations.UPDATABLE,
    "tasks": tasks.UPDATABLE,
}
_CONFLICT_COLUMNS = tuple(str(c.name) for c in conflicts_table.columns)


#: Realtime hints (``cursor=None``) of at most this many rows are written as small writes.
SMALL_HINT_ROWS: Final = 4


class SyncRepo:
    """Outbox draining, pulled-page application, links, conflicts and rejections."""

    def __init__(
        self, writer: Writer, reader: aiosqlite.Connection, documents: DocumentRepo
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._documents = documents

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Append a changelog-only entry (``data`` must carry an ``id``), e.g. a status snapshot."""
        if "id" not in data:
            raise InvalidInput("data", "needs an id")
        await self._writer.submit(lambda ctx: ctx.publish(topic, data))

    async def take_outbox(
        self,
        *,
        workspace_ids: Collection[str],
        limit: int = 500,
        max_bytes: int = 1 << 20,
        after: int = 0,
        leaves: frozenset[str] = frozenset(),
        within: tuple[int, str] | None = None,
    ) -> list[OutboxChange]:
        """Coalesced changes of ``workspace_ids`` (linked workspaces), oldest first, of the
        entries whose outbox id is above ``after`` (0: all; a push in flight passes the
        highest id it took, so the next batch can be prepared while it is sent). With
        ``leaves``, changes that begin with a row of a table not among them end before the
        first change of one that is. ``within`` (``SnapshotRef.at``, row id): ``after`` is a
        snapshot range that a push in flight took up to that row, and the take goes on
        there (sync_outbox.read_outbox). An entry that cannot be read is moved to ``rejected``
        (reason ``local_corrupt``, sync_corrupt.py) and the take goes on without it."""
        ids = sorted({identifier("workspace_ids", w) for w in workspace_ids})
        limit = integer("limit", limit)
        max_bytes = integer("max_bytes", max_bytes)
        after = integer("after", after)
        if not 1 <= limit <= MAX_TAKE:
            raise InvalidInput("limit", f"must be between 1 and {MAX_TAKE}")
        if max_bytes < 1:
            raise InvalidInput("max_bytes", "must be positive")
        if after < 0:
            raise InvalidInput("after", "must not be negative")
        if not isinstance(leaves, frozenset):
            raise InvalidInput("leaves", "must be a frozenset of table names")
        if within is not None and not (
            isinstance(within, tuple)
            and len(within) == 2
            and type(within[0]) is int
            and within[0] >= 0
            and isinstance(within[1], str)
            and after > 0
        ):
            raise InvalidInput("within", "must be (index, row id) inside the range after names")
        if not ids:
            return []
        gone = 0  # an entry found gone when set aside (e.g. unlinked meanwhile)
        while True:  # each pass sets one unreadable entry aside, or returns
            try:
                return await run_in_thread(
                    self._reader, read_outbox, ids, limit, max_bytes, after, leaves, within
                )
            except CorruptEntry as bad:  # it can never be pushed: it must not block the rest
                if await self._writer.submit(set_aside_op(bad)):
                    continue
                if bad.entry_id == gone:  # read again after it was gone: never loop on it
                    raise StoreError(f"{bad}, and it cannot be set aside") from None
                gone = bad.entry_id

    async def complete_push(
        self, changes: Sequence[OutboxChange], results: Sequence[dict[str, Any]]
    ) -> PushOutcome:
        """Delete the pushed entries; file rejected ones (``rejected`` + ``sync.rejected``)."""
        if len(changes) != len(results):
            raise InvalidInput("results", "need exactly one result per change")
        for change, result in zip(changes, results, strict=True):
            if not isinstance(change, OutboxChange):
                raise InvalidInput("changes", "must be OutboxChanges from take_outbox")
            if not isinstance(result, dict) or result.get("status") not in PUSH_STATUSES:
                raise InvalidInput("results", "each needs a status applied|superseded|rejected")
            if result.get("id", change.row_id) != change.row_id:
                raise InvalidInput("results", "results are not in the order of the changes")
        if not changes:
            return PushOutcome(0, 0, 0)
        outcome: PushOutcome = await self._writer.submit(complete_push_op(changes, results))
        return outcome

    async def apply_pull(
        self,
        *,
        scope: str,
        changes: Sequence[dict[str, Any]],
        cursor: str | None,
        merge: MergeFn,
        as_is: frozenset[str] = frozenset(),
    ) -> ApplyOutcome:
        """Merge one pulled page and store ``cursor`` for ``scope``, in one transaction.

        ``cursor=None`` leaves the cursor alone (a realtime change is a hint, not a page).
        Pulled document metadata and updates reach the loaded documents once committed
        (``DocumentRepo.refresh``, ``DocumentRepo.absorb``).
        ``as_is``: tables for which ``merge`` stores a new row holding one clock for all its
        fields as it is (sync_apply.py's fast path for such pages; sync.adapters says which).
        """
        scope = text("scope", scope)
        cursor = optional_text("cursor", cursor)
        if not isinstance(changes, Sequence) or isinstance(changes, str | bytes):
            raise InvalidInput("changes", "must be a list of changes")
        if not callable(merge):
            raise InvalidInput("merge", "must be a merge function")
        if not isinstance(as_is, frozenset):
            raise InvalidInput("as_is", "must be a frozenset of table names")
        if not changes and cursor is None:
            return ApplyOutcome(0, 0, 0)
        # A hint of a row or two is one short transaction: it may run inline (engine.py).
        small = cursor is None and len(changes) <= SMALL_HINT_ROWS
        outcome: ApplyOutcome = await self._writer.submit(
            apply_pull_op(scope, changes, cursor, merge, as_is), small=small
        )
        await self._loaded_documents(outcome)
        return outcome

    async def _loaded_documents(self, outcome: ApplyOutcome) -> None:
        """A committed page's document metadata and updates, to the loaded documents."""
        if outcome.documents:
            await self._documents.refresh(outcome.documents)
        if outcome.doc_updates:
            await self._documents.absorb((u.doc_id, u.data) for u in outcome.doc_updates)

    async def apply_new_rows(
        self,
        *,
        scope: str,
        new: NewRows,
        cursor: str | None,
        merge: MergeFn | None = None,
        as_is: frozenset[str] = frozenset(),
    ) -> ApplyOutcome | None:
        """``apply_pull`` of a page of rows that are each stored as they are when new here
        (``NewRows``: the bulk of a first sync, without a merge per row) and of its few other
        changes (``new.others``, merged with ``merge`` as ``apply_pull`` does), in one
        transaction; None, having written nothing, when one of the rows is stored here
        already, is twice in the page, lacks its parent or cannot be stored: then give the
        page to ``apply_pull``, which merges each row and says why it skips one."""
        scope = text("scope", scope)
        cursor = optional_text("cursor", cursor)
        if not isinstance(new, NewRows) or new.table not in SHAPES:
            raise InvalidInput("new", "must be NewRows of a synced table")
        if not new.rows:
            raise InvalidInput("new", "must hold rows")
        if new.others and not callable(merge):
            raise InvalidInput("merge", "must be a merge function (the page has other changes)")
        if not isinstance(as_is, frozenset):
            raise InvalidInput("as_is", "must be a frozenset of table names")
        outcome: ApplyOutcome | None = await self._writer.submit(
            apply_new_rows_op(scope, new, cursor, merge, as_is)
        )
        if outcome is not None:  # (its other changes may be of documents)
            await self._loaded_documents(outcome)
        return outcome

    async def cursor(self, scope: str) -> str | None:
        scope = text("scope", scope)
        return await run_in_thread(self._reader, _read_cursor, scope)

    async def link(self, *, workspace_id: str, org_id: str, path: str | None) -> Link:
        """Link a workspace (idempotent). The first link snapshots every row of the workspace
        (full field state and clocks) into the outbox, its messages as one snapshot range
        (sync_outbox.py), so its whole history is published; from then on its local writes
        get outbox entries (an unlinked workspace's get none)."""
        workspace_id = identifier("workspace_id", workspace_id)
        org_id = identifier("org_id", org_id)
        path = optional_text("path", path)
        link: Link = await self._writer.submit(link_op(workspace_id, org_id, path))
        return link

    async def unlink(self, workspace_id: str) -> None:
        """Stop syncing: drop the link, the cursor and the outbox entries; keep the data."""
        workspace_id = identifier("workspace_id", workspace_id)
        await self._writer.submit(unlink_op(workspace_id))

    async def links(self) -> list[Link]:
        return await run_in_thread(self._reader, _read_links)

    async def conflicts(
        self, *, include_resolved: bool = False, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """Conflicts in the order they arose (open ones unless ``include_resolved``)."""
        if not isinstance(include_resolved, bool):
            raise InvalidInput("include_resolved", "must be true or false")
        query = functools.partial(q.conflicts_sql, include_resolved)
        return await read_page(self._reader, _conflict, query, {}, limit=limit, cursor=cursor)

    async def resolve_conflict(self, conflict_id: str, value: Any) -> dict[str, Any]:
        """Write ``value`` as a new local edit of the conflicting field (a new clock, so it wins
        everywhere once pushed) and mark the field's open conflicts resolved."""
        conflict_id = identifier("conflict_id", conflict_id)
        value = json_value("value", value)
        result: dict[str, Any] = await self._writer.submit(_resolve_op(conflict_id, value))
        return result

    async def settle_conflict(self, conflict_id: str, choice: str) -> dict[str, Any]:
        """Resolve with one side. ``local``: the conflict's local value, written as
        ``resolve_conflict`` does. ``remote``: the row as it is, nothing written: the remote
        side won the merge (R5), so the row holds the remote value, or a newer one that
        arrived since (writing the conflict's remote value again would undo that)."""
        conflict_id = identifier("conflict_id", conflict_id)
        if choice not in ("local", "remote"):
            raise InvalidInput("choice", "must be one of local, remote")
        result: dict[str, Any] = await self._writer.submit(
            _resolve_op(conflict_id, None, choice=choice)
        )
        return result

    async def rejected(self, *, limit: int = 100, cursor: str | None = None) -> Page:
        """Changes the cloud refused, in the order it refused them."""
        return await read_page(
            self._reader, _rejection, q.rejected_sql, {}, limit=limit, cursor=cursor
        )

    async def requeue_refused(self, workspace_id: str, now_ms: int) -> Requeued:
        """Queue again, whole, the rows of ``workspace_id`` whose ``clock_skew`` refusals are
        due at wall time ``now_ms`` (sync_skew.py); when the next is due."""
        requeued: Requeued = await self._writer.submit(
            requeue_due_op(identifier("workspace_id", workspace_id), integer("now_ms", now_ms))
        )
        return requeued

    async def counts(self) -> dict[str, int]:
        """Outbox entries of linked workspaces waiting to be pushed, rejected changes,
        unresolved conflicts."""
        return await run_in_thread(self._reader, _read_counts)


# -- reads (run in the reader's thread) -------------------------------------------------------


def _read_cursor(conn: sqlite3.Connection, scope: str) -> str | None:
    row = conn.execute(q.cursor_get_sql(), {"scope": scope}).fetchone()
    return None if row is None else row[0]


def _read_links(conn: sqlite3.Connection) -> list[Link]:
    return [Link(*values) for values in conn.execute(q.links_sql())]


def _conflict(values: tuple[Any, ...]) -> dict[str, Any]:
    return conflict_view(dict(zip(_CONFLICT_COLUMNS, values, strict=True)))


def _rejection(values: tuple[Any, ...]) -> dict[str, Any]:
    return rejected_view(dict(zip(REJECTED_COLUMNS, values, strict=True)))


def _read_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        "outbox": conn.execute(q.outbox_count_linked_sql()).fetchone()[0],
        "rejected": conn.execute(q.count_sql("rejected")).fetchone()[0],
        "conflicts": conn.execute(q.count_sql("conflicts", True)).fetchone()[0],
    }


# -- resolve ----------------------------------------------------------------------------------


def _resolve_op(conflict_id: str, value: Any, *, choice: str | None = None) -> WriteOp:
    """Resolve with ``value``, or with one side (``choice``: see ``settle_conflict``)."""

    def op(ctx: WriteContext) -> dict[str, Any]:
        found = ctx.conn.execute(q.conflict_get_sql(), {"_id": conflict_id}).fetchone()
        if found is None:
            raise NotFound("conflict", conflict_id)
        record = dict(zip(_CONFLICT_COLUMNS, found, strict=True))
        if record["resolved_at"] is not None:
            raise Conflict(f"conflict {conflict_id!r} is already resolved", "conflict_id")
        table, field = record["table_name"], record["field"]
        if table not in _CHECKS:
            raise Conflict(f"conflicts of {table!r} cannot be resolved here", "conflict_id")
        row = ctx.fetch(table, record["row_id"])
        if row is None:
            raise NotFound(SHAPES[table].entity, record["row_id"])
        if choice == "remote":
            checked, at = row[field], ctx.stamp().iso
        else:
            chosen = load_json(record["local_value"]) if choice == "local" else value
            checked = _CHECKS[table].get(field, json_value)(field, chosen)
            topic = f"{SHAPES[table].entity}.updated"
            row = write_local_change(ctx, table, row, {field: checked}, op="update", topic=topic)
            at = row["updated_at"]
        params = {"at": at, "table_name": table, "row_id": row["id"], "field": field}
        ctx.conn.execute(q.conflicts_resolve_field_sql(), params)
        view = conflict_view({**record, "resolved_at": at})
        ctx.emit(
            table="conflicts",
            op="update",
            topic="sync.conflict",
            row=view,
            fields={},
            stamp=ctx.stamp(),
            outbox=False,
        )
        return {**view, "value": checked, "row": shown_row(table, row)}

    return op
