"""One push batch: outbox changes taken for one ``sync_push``, mapped to the cloud's shape
(pure: no I/O).

A batch is prepared (taken and mapped) while the batch before it is still in flight
(workspace.py): ``resume`` is where the next ``take_outbox(after=…, within=…)`` starts, so the
two never share an entry (nor a row of a snapshot range: store/sync_outbox.py). Changes of
which nothing may leave (mapping.py says None) are not sent; they settle as ``applied`` with
reason ``local_only`` so their entries go away.

A batch may be sent while the one before it is still in flight only if that one holds no row
another row may reference (``leaves_only``): the cloud runs concurrent pushes as concurrent
transactions, so a message sent beside the (uncommitted) push creating its conversation would
fail its foreign key there and be rejected for good. Messages, tasks and document updates are
leaves; workspaces, conversations and documents (and any table not known here) are not.

A batch the cloud refuses as a whole for a value one of its changes carries (``retry.BadData``:
e.g. PostgreSQL's 22P05 while it parses the request's JSON) would be refused again on every
retry, and every change behind it with it. ``Bisection`` sends it again in halves, in order,
each half refused so in halves again, until the change that carries the value is alone: that
one is rejected (``rejected``, as the cloud's own per-change rejections are), the others go
through. One bad change among n costs about 2*log2(n) requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.store.sync_types import OutboxChange, resume_point
from daemon.sync.mapping import cloud_change

__all__ = ["LEAF_TABLES", "Bisection", "OutgoingBatch"]

#: Cloud tables no row references (migrations/cloud 0001, 0008): nothing depends on their rows.
LEAF_TABLES = frozenset({"messages", "tasks", "doc_updates"})
#: A refused change's ``detail`` (the server's message) is cut to this many characters.
DETAIL_CHARS = 1000


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
                one_clock=c.one_clock,
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
    def resume(self) -> tuple[int, tuple[int, str] | None]:
        """Where the next ``take_outbox`` starts (``after``, ``within``: sync_types.py)."""
        return resume_point(self.changes)

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

    def halves(self) -> tuple[OutgoingBatch, OutgoingBatch]:
        """The batch in two, in order, each sending about half of its changes sent (at least
        one: it must send two or more)."""
        sent = [i for i, m in enumerate(self.mapped) if m is not None]
        if len(sent) < 2:
            raise ValueError("only a batch sending two changes or more can be halved")
        cut = sent[len(sent) // 2]
        return (
            OutgoingBatch(self.changes[:cut], self.mapped[:cut]),
            OutgoingBatch(self.changes[cut:], self.mapped[cut:]),
        )

    def refused(self, reason: str, detail: str | None = None) -> list[dict[str, Any]]:
        """One result per change when the cloud refused the batch, which sends one change, as
        a whole: that change is rejected with ``reason`` (and ``detail``)."""
        payload = self.payload
        if len(payload) != 1:
            raise ValueError("only a batch sending one change is refused change by change")
        sent = payload[0]
        rejected: dict[str, Any] = {
            "id": sent["id"],
            "table": sent["table"],
            "status": "rejected",
            "reason": reason,
        }
        if detail:
            rejected["detail"] = detail[:DETAIL_CHARS]
        return self.results([rejected])


class Bisection:
    """The results of a batch the cloud refused as a whole for a value it carries (sans-I/O;
    see the module docstring). Feed it that refusal, then send ``next_part()`` while there is
    one and feed its outcome (``answered`` or ``refused``); ``results()`` then has one result
    per change of the batch, in its order, for ``complete_push``. Parts are sent one after the
    other, in the batch's order: a row is created before the rows that reference it."""

    def __init__(self, batch: OutgoingBatch) -> None:
        #: parts still to send, the next first (the batch itself until its refusal is fed)
        self._todo = [batch]
        self._results: list[dict[str, Any]] = []

    def next_part(self) -> OutgoingBatch | None:
        """The part to send next; None once every change has its result."""
        return self._todo[0] if self._todo else None

    def answered(self, answers: Sequence[dict[str, Any]]) -> None:
        """The cloud answered the part sent (one answer per change sent)."""
        self._results.extend(self._todo[0].results(answers))
        self._todo.pop(0)

    def refused(self, reason: str, detail: str | None = None) -> None:
        """The cloud refused the part sent as a whole for a value it carries (``BadData``):
        a part of one change is rejected, a bigger one is sent again in halves."""
        part = self._todo[0]
        if len(part.payload) > 1:
            self._todo[0:1] = part.halves()
        else:
            self._results.extend(part.refused(reason, detail))
            self._todo.pop(0)

    def results(self) -> list[dict[str, Any]]:
        if self._todo:
            raise ValueError("the bisection is not finished")
        return self._results
