"""The value types of the store's sync API (``store.sync``); see daemon/store/sync.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """Where a change taken from a snapshot range entry (sync_outbox.py) sits in it: the
    entry's outbox id, the index of the row's conversation in the range, and whether the row
    is the range's last (its push settled, the entry goes)."""

    entry: int
    at: int
    last: bool = False


@dataclass(frozen=True)
class OutboxChange:
    """One (table, row) change ready to push: the outbox entries of that row coalesced (latest
    value and clock per field). ``outbox_ids`` are what ``complete_push`` deletes.

    ``rejected_create``: the cloud rejected the row's create, so it does not have the row: the
    change is the row's whole stored state (every field with its clock), not just the fields
    its entries changed, and once the cloud takes it those rejections are settled
    (sync_outbox.py).

    ``one_clock``: every field is under the one clock ``hlc`` (JSON maps as whole values: no
    clock of a key), as an entry written in one local write is; it is then pushed in the
    compact form, ``hlc`` instead of a ``field_hlc`` spelling that clock out per field.

    ``snapshot``: the change is a row of a snapshot range entry (a link's messages, read from
    their table: no ``outbox_ids``); ``complete_push`` moves the entry past it."""

    outbox_ids: tuple[int, ...]
    table: str
    row_id: str
    workspace_id: str | None
    fields: dict[str, Any]
    field_hlc: dict[str, str]
    hlc: str
    origin: str
    rejected_create: bool = False
    one_clock: bool = False
    snapshot: SnapshotRef | None = None


def resume_point(changes: Sequence[OutboxChange]) -> tuple[int, tuple[int, str] | None]:
    """Where the take after ``changes`` (one take's, in its order) starts: ``take_outbox``'s
    ``after`` (the highest outbox entry id they hold, 0 when none) and ``within`` (they end
    inside a snapshot range: where, in the range ``after``)."""
    if changes and (ref := changes[-1].snapshot) is not None:
        return ref.entry, None if ref.last else (ref.at, changes[-1].row_id)
    return max((i for c in changes for i in c.outbox_ids), default=0), None


@dataclass(frozen=True)
class Link:
    """A local workspace linked to a cloud organisation (``path``: its folder, if known)."""

    workspace_id: str
    org_id: str
    path: str | None
    linked_at: str


@dataclass(frozen=True)
class PushOutcome:
    """How many of the pushed changes the cloud applied, found superseded, or rejected."""

    applied: int
    superseded: int
    rejected: int


@dataclass(frozen=True)
class DocUpdate:
    """A pulled Yjs update stored by a page: hand it to the loaded document after the commit
    (``DocumentRepo.absorb``)."""

    doc_id: str
    update_id: str
    data: bytes


@dataclass(frozen=True)
class ApplyOutcome:
    """What one pulled page did.

    ``applied``: changes merged (or parked); ``changed``: changelog entries written (merges
    that changed something visible); ``conflicts``: conflicts recorded; ``parked``: rows held
    until their parent arrives; ``skipped``: malformed changes left out (logged);
    ``doc_updates``: the document updates the page stored, in order; ``documents``: the
    metadata (``doc_ops.ROW_COLUMNS``) of the stored documents the page changed.
    """

    applied: int
    changed: int
    conflicts: int
    parked: int = 0
    skipped: int = 0
    doc_updates: tuple[DocUpdate, ...] = ()
    documents: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class MergeOutcome:
    """What the injected merge returns for one row.

    ``row``: the merged local-shaped row (``field_hlc`` a dict; ``hlc``/``origin`` are filled
    in by the store when absent); ``row_changed``: the stored state must be written;
    ``changed``: fields whose visible value changed (empty: no changelog entry);
    ``conflicts``: dicts with ``field, local_value, remote_value, local_hlc, remote_hlc``.
    """

    row: dict[str, Any]
    row_changed: bool
    changed: frozenset[str]
    conflicts: tuple[Mapping[str, Any], ...] = field(default=())


#: ``merge(local_table, local_row_or_None, remote_row, pending_local_fields)``. Pure; may raise
#: ValueError (e.g. merge.InvalidRow) for a row it cannot accept: that change is skipped.
MergeFn = Callable[[str, dict[str, Any] | None, dict[str, Any], frozenset[str]], MergeOutcome]


@dataclass(frozen=True)
class NewRows:
    """A pulled page that is rows of one table, each as the store would keep it after the
    merge, were it new here (``store.sync.apply_new_rows``; sync.adapters.new_rows_as_is
    builds them from the cloud's rows), and the page's few changes of other tables (its
    workspace, a new conversation), as local changes (``mapping.local_change``) for the
    merge."""

    table: str
    rows: list[dict[str, Any]]
    others: list[dict[str, Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        """The page's changes."""
        return len(self.rows) + len(self.others)


class CorruptEntry(Exception):
    """Outbox entry ``entry_id`` has a ``column`` that is not what it must be (``problem``)."""

    def __init__(self, entry: tuple[Any, ...], column: str, problem: str) -> None:
        entry_id, table, row_id, workspace_id, fields_text, clocks_text, hlc, origin = entry
        super().__init__(f"outbox entry {entry_id}: {column} {problem}")
        self.entry_id: int = entry_id
        self.table: str = table
        self.row_id: str = row_id
        self.workspace_id: str | None = workspace_id
        self.stored = {"fields": fields_text, "field_hlc": clocks_text}
        self.hlc: str = hlc
        self.origin: str = origin
        self.column = column
        self.problem = problem
