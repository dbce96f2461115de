"""Messages: immutable and append-only. A client-chosen id makes a send idempotent.

Messages list in id order, which is creation order because ids are UUIDv7s minted by their
creator (its clock in the top 48 bits): a client-chosen id must be a UUIDv7 too, or it would
sort at a random place, and its time must be near the daemon's clock (at most ``MAX_AHEAD_MS``
ahead, ``MAX_ID_AGE_MS`` behind), or it would sort first (an id of 1970) or last (of 2029)
forever. A send whose id is stored already is a retry and is answered whatever the id's age.
A message id is also a position in that order: ``list(after=<id>)`` gives the messages after
it, as ``after=<next_cursor>`` does. It is not a resume point: a message can be stored later
with an earlier position (a client-chosen id minted before, or a message pulled from a device
that wrote it offline); the changelog (``message.created`` events from a seq) misses none.

System and tool messages are local-only (invariant I6): they get a changelog entry but no
outbox entry, so push never sees them. A deleted conversation, or one of a deleted workspace,
takes no new message and lists none: its messages are hidden, never written or removed (an
undelete, a newer ``deleted_at = null``, shows them again), and ``list`` answers an empty page,
as for an unknown conversation (daemon/store/base.py's module doc).
"""

from __future__ import annotations

from typing import Any

from daemon.errors import Conflict, InvalidInput
from daemon.hlc import MAX_AHEAD_MS
from daemon.store.base import Page, Repo, deleted_workspace, identifier, missing, no_nul
from daemon.store.codec import decode_cursor, iso_ms
from daemon.store.ids import is_uuid, uuid7, uuid7_time_ms
from daemon.store.sql import live_conversation_workspace_sql
from daemon.store.txn import WriteContext
from daemon.types import LOCAL_ONLY_ROLES, MESSAGE_ROLES

#: How long before the daemon's clock a client-chosen id may have been minted: a send made while
#: the daemon could not be reached (a restart, a night asleep) and sent when it can. (A retry of a
#: message stored already is found by its id first, whatever its age.)
MAX_ID_AGE_MS = 24 * 3_600_000
#: That rule in words, as refusals and the API's description give it.
ID_TIME_RULE = (
    f"at most {MAX_AHEAD_MS // 3_600_000} hour ahead of the daemon's clock and"
    f" {MAX_ID_AGE_MS // 3_600_000} hours behind it"
)


class MessageRepo(Repo):
    table = "messages"
    entity = "message"
    in_conversation = True

    async def create(
        self, *, conversation_id: str, role: str, content: str, id: str | None = None
    ) -> dict[str, Any]:
        conversation_id = identifier("conversation_id", conversation_id)
        if role not in MESSAGE_ROLES:
            raise InvalidInput("role", f"must be one of {', '.join(sorted(MESSAGE_ROLES))}")
        if not isinstance(content, str):
            raise InvalidInput("content", "must be a string")
        no_nul("content", content)
        if id is not None and not is_uuid7(id):
            raise not_uuid7("message")
        return await self._write(_create_op(conversation_id, role, content, id))

    async def list(
        self, *, conversation_id: str, after: str | None = None, limit: int = 100
    ) -> Page:
        """Messages of a conversation in id (creation) order; ``after`` is a page cursor or a
        message id (the messages after that one: a position, not a resume point, see the
        module doc). None of a deleted conversation or of one in a deleted workspace."""
        filters = {"conversation_id": identifier("conversation_id", conversation_id)}
        if after is not None:
            _check_position(after)
        return await self._list(
            filters, limit=limit, cursor=after, cursor_field="after", bare_ids=True
        )


def is_uuid7(value: object) -> bool:
    """A canonical lower-case UUID of version 7 and the RFC 9562 variant (``10xx``)."""
    return isinstance(value, str) and is_uuid(value) and value[14] == "7" and value[19] in "89ab"


def not_uuid7(what: str) -> InvalidInput:
    """The refusal of a client-chosen id of a new ``what`` (a message, a task) that is not a
    UUIDv7: such rows list in id order."""
    return InvalidInput(
        "id",
        "must be a lower-case UUIDv7 (RFC 9562: version 7, variant 10): "
        f"{what}s list in id order, which only a time-ordered id keeps in creation order",
    )


def id_time_problem(id: str, now_ms: int, what: str = "message") -> str | None:
    """Why a new ``what`` cannot take the UUIDv7 ``id`` at wall time ``now_ms`` (its time is
    more than ``MAX_AHEAD_MS`` ahead of it or ``MAX_ID_AGE_MS`` behind), or None."""
    ms = uuid7_time_ms(id)
    if now_ms - MAX_ID_AGE_MS <= ms <= now_ms + MAX_AHEAD_MS:
        return None
    return (
        f"its UUIDv7 time is {iso_ms(ms)}, the daemon's clock {iso_ms(now_ms)}: a new"
        f" {what}'s id must be minted when it is written, its time {ID_TIME_RULE}"
        f" ({what}s list in id order)"
    )


def _check_position(after: str) -> None:
    """``after`` is a page cursor or a message id (any UUID: older rows may have others), the
    position it names in id order; else InvalidInput."""
    if is_uuid(after):
        return
    try:
        decode_cursor(after, "after")
    except InvalidInput:
        raise InvalidInput(
            "after", "must be a next_cursor returned by message.list or a message id"
        ) from None


def _create_op(conversation_id: str, role: str, content: str, id: str | None) -> Any:
    def op(ctx: WriteContext) -> dict[str, Any]:
        if id is not None:
            existing = ctx.fetch("messages", id)
            if existing is not None:
                return _same_or_conflict(existing, conversation_id, role, content)
        found = ctx.conn.execute(
            live_conversation_workspace_sql(), {"_id": conversation_id}
        ).fetchone()
        if found is None:
            why = missing(ctx, "conversations", "conversation", conversation_id)
            raise InvalidInput("conversation_id", why)
        if found[1] is not None:
            why = deleted_workspace("conversation", conversation_id, found[0])
            raise InvalidInput("conversation_id", why)
        stamp = ctx.tick()
        problem = None if id is None else id_time_problem(id, stamp.ms)
        if problem is not None:
            raise InvalidInput("id", problem)
        fields: dict[str, Any] = {  # new_row_fields(row), built first rather than filtered
            "id": id or uuid7(stamp.ms),
            "workspace_id": found[0],
            "conversation_id": conversation_id,
            "role": role,
            "content": content,
            "created_at": stamp.iso,
            "updated_at": stamp.iso,
            "deleted_at": None,
        }
        row = {**fields, "hlc": stamp.hlc, "origin": ctx.device_id}
        ctx.insert_row("messages", row)
        ctx.emit(
            table="messages",
            op="insert",
            topic="message.created",
            row=row,
            fields=fields,
            stamp=stamp,
            outbox=role not in LOCAL_ONLY_ROLES,
        )
        return row

    return op


def _same_or_conflict(
    existing: dict[str, Any], conversation_id: str, role: str, content: str
) -> dict[str, Any]:
    """The stored message when the send repeats it (a retry); else Conflict saying what
    differs."""
    differs = []
    if existing["conversation_id"] != conversation_id:
        differs.append(f"conversation (it is in {existing['conversation_id']!r})")
    if existing["role"] != role:
        differs.append(f"role (it is {existing['role']!r})")
    if existing["content"] != content:
        differs.append("content")
    if not differs:
        return existing  # a retry of a send that already committed: no new entry
    *rest, last = differs
    what = f"{', '.join(rest)} and {last}" if rest else last
    raise Conflict(f"message id {existing['id']!r} already used with a different {what}", "id")
