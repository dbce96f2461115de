"""The shapes of what the cloud's REST API returns, checked (pure: no I/O).

``sync_push`` answers one result per change, in order (migrations/cloud/0005_sync_push.sql);
``sync_pull`` answers ``{cursor, has_more, changes}`` (0006_sync_pull.sql; ``pull_head`` reads
the first two off the answer's first bytes, before it is decoded). Those stay plain dicts for
the sync driver; the few reads linking needs become small frozen records. Every
check raises ValueError naming what is wrong (never a value), which the adapter turns into
``CloudProtocolError``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CloudWorkspace",
    "Membership",
    "Profile",
    "check_count",
    "check_pull_page",
    "check_push_results",
    "check_uuid",
    "parse_rows",
    "pull_head",
]

#: The start of a ``sync_pull`` answer that puts its cursor and has_more first (0006 does):
#: the cursor as a JSON string without escapes (printable ASCII), or null.
_PULL_HEAD: Final = re.compile(
    rb'\s*\{\s*"cursor"\s*:\s*(?:null|"([\x20\x21\x23-\x5b\x5d-\x7e]{0,256})")'
    rb'\s*,\s*"has_more"\s*:\s*(true|false)\s*,'
)


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


def check_count(body: Any) -> int:
    """``sync_pull_count``'s answer: a count of rows (a non-negative integer)."""
    if type(body) is not int or body < 0:
        raise ValueError("sync_pull_count must answer a non-negative integer")
    return body


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


def _id(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"a row has no {key}")
    return value


def _opt(row: Mapping[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) else None
