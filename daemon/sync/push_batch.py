"""One push batch: outbox changes taken for one ``sync_push``, mapped to the cloud's shape
(pure: no I/O).

A batch is prepared (taken and mapped) while the batch before it is still in flight
(workspace.py): ``last_outbox_id`` is where the next ``take_outbox(after=…)`` starts, so the
two never share an entry. Changes of which nothing may leave (mapping.py says None) are not
sent; they settle as ``applied`` with reason ``local_only`` so their entries go away.

A batch may be sent while the one before it is still in flight only if that one holds no row
another row may reference (``leaves_only``): the cloud runs concurrent pushes as concurrent
transactions, so a message sent beside the (uncommitted) push creating its conversation would
fail its foreign key there and be rejected for good. Messages, tasks and document updates are
leaves; workspaces, conversations and documents (and any table not known here) are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.store.sync_types import OutboxChange
from daemon.sync.mapping import cloud_change

__all__ = ["LEAF_TABLES", "OutgoingBatch"]

#: Cloud tables no row references (migrations/cloud 0001, 0008): nothing depends on their rows.
LEAF_TABLES = frozenset({"messages", "tasks", "doc_updates"})


@dataclass(frozen=True, slots=True)
class OutgoingBatch:
    """Changes of one push, in outbox order, and what is sent for them."""

    changes: tuple[OutboxChange, ...]
    #: per change: its ``sync_push`` change, or None when nothing of it may leave
    mapped: tuple[dict[str, Any] | None, ...]

    @classmethod
    def of(cls, changes: Sequence[OutboxChange], org_id: str | None) -> OutgoingBatch:
        mapped = tuple(
            cloud_change(
                c.table,
                c.row_id,
                c.workspace_id,
                c.fields,
                c.field_hlc,
                hlc=c.hlc,
                origin=c.origin,
                org_id=org_id,
            )
            for c in changes
        )
        return cls(tuple(changes), mapped)

    @property
    def payload(self) -> list[dict[str, Any]]:
        """The changes to send (possibly none)."""
        return [m for m in self.mapped if m is not None]

    @property
    def leaves_only(self) -> bool:
        """Whether every change sent is of a leaf table: the next batch may go out beside it."""
        return all(m is None or m["table"] in LEAF_TABLES for m in self.mapped)

    @property
    def last_outbox_id(self) -> int:
        """The highest outbox entry id the batch holds (0 when empty)."""
        return max((i for c in self.changes for i in c.outbox_ids), default=0)

    def results(self, answers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per change: the cloud's answers in order, ``local_only`` for the rest."""
        if len(answers) != sum(m is not None for m in self.mapped):
            raise ValueError("need exactly one answer per change sent")
        sent = iter(answers)
        return [
            next(sent)
            if m is not None
            else {"id": c.row_id, "table": c.table, "status": "applied", "reason": "local_only"}
            for c, m in zip(self.changes, self.mapped, strict=True)
        ]
