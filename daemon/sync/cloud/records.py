"""The shapes of what the cloud's REST API returns, checked (pure: no I/O).

``sync_push`` answers one result per change, in order (migrations/cloud/0005_sync_push.sql);
``sync_pull`` answers ``{cursor, has_more, changes}`` (0006_sync_pull.sql; ``pull_head`` reads
the first two off the answer's first bytes, before it is decoded), ``sync_pull_marks``
``{count, marks}`` (``PullMarks``; ``cursor_position`` orders the cursors). The first two
stay plain dicts for the sync driver; the others become small frozen records. Every
check raises ValueError naming what is wrong (never a value), which the adapter turns into
``CloudProtocolError``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "CloudWorkspace",
    "Membership",
    "Profile",
    "PullMarks",
    "check_marks",
    "check_pull_page",
    "check_pull_progress",
    "check_push_results",
    "check_uuid",
    "cursor_position",
    "later_cursor",
    "oldest_first",
    "parse_rows",
    "pull_head",
]

#: The start of a ``sync_pull`` answer that puts its cursor and has_more first (0006 does):
#: the cursor as a JSON string without escapes (printable ASCII), or null.
_PULL_HEAD: Final = re.compile(
    rb'\s*\{\s*"cursor"\s*:\s*(?:null|"([\x20\x21\x23-\x5b\x5d-\x7e]{0,256})")'
    rb'\s*,\s*"has_more"\s*:\s*(true|false)\s*,'
)


#: A ``sync_pull`` cursor as syncd's cloud writes it (0006): the position of the last row
#: served, ``"<txid>:<seq>"``.
_CURSOR: Final = re.compile(r"([0-9]{1,20}):([0-9]{1,19})")
#: At most this many marks in one answer (0006 sends no more).
MAX_MARKS: Final = 10_000


def cursor_position(cursor: str | None) -> tuple[int, int] | None:
    """Where a ``sync_pull`` cursor points, as ``(txid, seq)``: ``(0, 0)`` for None or ""
    (the start), None for a cursor of another form (an order this daemon does not know)."""
    if not cursor:
        return (0, 0)
    found = _CURSOR.fullmatch(cursor)
    return None if found is None else (int(found[1]), int(found[2]))


def later_cursor(a: str | None, b: str | None) -> str | None:
    """The later of two cursors: ``a`` only when it is known to point past ``b``."""
    pa, pb = cursor_position(a), cursor_position(b)
    return a if pa is not None and pb is not None and pa > pb else b


@dataclass(frozen=True, slots=True)
class PullMarks:
    """``sync_pull_marks``'s answer: ``count`` rows after the cursor asked from, and the
    position of every ``step``-th of them (ascending cursors)."""

    count: int
    marks: tuple[str, ...]

    def page_starts(self, step: int) -> tuple[str, ...]:
        """The marks a page of ``step`` rows starts from: not one at the last row."""
        return self.marks[: max(0, (self.count - 1) // step)]

    def seen_from(self, step: int, rows: int, limit: int) -> tuple[str, PullMarks] | None:
        """These marks (of every ``step``-th row after some cursor) seen from the ``rows``-th
        of those rows: its position, and the count after it with the position of every
        ``limit``-th row after it. None when that row is not marked (``rows`` no multiple of
        ``step``, or past the marked rows) or ``limit`` is no multiple of ``step``."""
        if rows <= 0 or rows % step or limit % step or rows // step > len(self.marks):
            return None
        at, every = rows // step - 1, limit // step
        return self.marks[at], PullMarks(self.count - rows, self.marks[at + every :: every])


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    email: str | None
    display_name: str | None
    avatar_url: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Profile:
        return cls(
            _id(row, "id"), _opt(row, "email"), _opt(row, "display_name"), _opt(row, "avatar_url")
        )


@dataclass(frozen=True, slots=True)
class Membership:
    """The user's role in one organisation; ``joined_at`` is ISO 8601 text as the cloud sent it."""

    org_id: str
    org_name: str
    role: str
    joined_at: str


@dataclass(frozen=True, slots=True)
class CloudWorkspace:
    id: str
    org_id: str
    name: str
    description: str | None
    created_at: str | None
    deleted_at: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CloudWorkspace:
        return cls(
            _id(row, "id"),
            _id(row, "org_id"),
            _opt(row, "name") or "",
            _opt(row, "description"),
            _opt(row, "created_at"),
            _opt(row, "deleted_at"),
        )


def oldest_first(workspaces: Iterable[CloudWorkspace]) -> list[CloudWorkspace]:
    """``workspaces`` in the cloud's ``order=created_at.asc,id.asc``: by the instant each was
    created, then by id; one without a readable ``created_at`` last (as SQL puts nulls)."""
    return sorted(workspaces, key=_created_key)


def _created_key(workspace: CloudWorkspace) -> tuple[bool, datetime, str]:
    try:
        at = datetime.fromisoformat(workspace.created_at or "")
    except ValueError:
        return True, datetime.min.replace(tzinfo=UTC), workspace.id
    return False, at if at.tzinfo else at.replace(tzinfo=UTC), workspace.id


def check_uuid(value: str) -> str:
    """``value`` in canonical form; ValueError unless it is a UUID (no filter injection)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ValueError("not a UUID") from None


def parse_rows(body: Any) -> list[Mapping[str, Any]]:
    """A PostgREST array of row objects."""
    if not isinstance(body, list) or not all(isinstance(row, Mapping) for row in body):
        raise ValueError("expected an array of rows")
    return body


def check_push_results(body: Any, sent: int) -> list[dict[str, Any]]:
    """``sync_push``'s answer: one ``{id, table, status, ...}`` per change sent."""
    if not isinstance(body, list) or len(body) != sent:
        raise ValueError("sync_push must answer one result per change")
    for result in body:
        if not isinstance(result, dict) or result.get("status") not in (
            "applied",
            "superseded",
            "rejected",
        ):
            raise ValueError("a sync_push result has no valid status")
    return body


def check_marks(body: Any, step: int) -> PullMarks:
    """``sync_pull_marks``'s answer: ``{count, marks}``, the count a non-negative integer, the
    marks at most ``count // step`` (and ``MAX_MARKS``) cursors in ascending order."""
    if not isinstance(body, dict):
        raise ValueError("sync_pull_marks must answer an object")
    count, marks = body.get("count"), body.get("marks")
    if type(count) is not int or count < 0:
        raise ValueError("sync_pull_marks count must be a non-negative integer")
    if not isinstance(marks, list) or len(marks) > min(count // step, MAX_MARKS):
        raise ValueError("sync_pull_marks marks must be a list of at most count / step")
    positions = [cursor_position(m) if isinstance(m, str) and m else None for m in marks]
    if any(p is None for p in positions) or positions != sorted(set(positions)):  # type: ignore[type-var]
        raise ValueError("sync_pull_marks marks must be ascending cursors")
    return PullMarks(count, tuple(marks))


def pull_head(content: bytes) -> tuple[str | None, bool] | None:
    """The cursor and has_more of a ``sync_pull`` answer, read off its first bytes when it
    starts with them; None when it does not (decode the whole answer to know them)."""
    found = _PULL_HEAD.match(content)
    if found is None:
        return None
    cursor = found[1]
    return (None if cursor is None else cursor.decode("ascii")), found[2] == b"true"


def check_pull_page(body: Any, head: tuple[str | None, bool] | None = None) -> dict[str, Any]:
    """``sync_pull``'s answer: ``changes`` (a list of objects), ``cursor``, ``has_more``, the
    same two as ``head`` (its ``pull_head``) when given."""
    if not isinstance(body, dict):
        raise ValueError("sync_pull must answer an object")
    changes = body.get("changes")
    if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
        raise ValueError("sync_pull changes must be a list of objects")
    if not (body.get("cursor") is None or isinstance(body.get("cursor"), str)):
        raise ValueError("sync_pull cursor must be text or null")
    if not isinstance(body.get("has_more"), bool):
        raise ValueError("sync_pull has_more must be a boolean")
    if head is not None and head != (body.get("cursor"), body["has_more"]):
        raise ValueError("sync_pull's cursor or has_more differ from the answer's first ones")
    return body


def check_pull_progress(start: str | None, head: tuple[str | None, bool]) -> None:
    """A page asked for after ``start`` that says ``has_more`` (``head``: its cursor and
    has_more) must answer a cursor past ``start`` (an unknown form: another one), or the
    next request would ask for the same page again, for ever (~200 requests a second)."""
    cursor, has_more = head
    if not has_more:
        return
    if not cursor:
        raise ValueError("sync_pull has_more without a cursor")
    after, before = cursor_position(cursor), cursor_position(start)
    moved = cursor != start if after is None or before is None else after > before
    if not moved:
        raise ValueError("sync_pull has_more with a cursor that does not move on")


def _id(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"a row has no {key}")
    return value


def _opt(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) else None
