"""Messages: immutable and append-only. A client-chosen id makes a send idempotent.

System and tool messages are local-only (invariant I6): they get a changelog entry but no
outbox entry, so push never sees them.
"""

from __future__ import annotations

from typing import Any

from daemon.errors import Conflict, InvalidInput
from daemon.store.base import Page, Repo, identifier
from daemon.store.ids import is_uuid, uuid7
from daemon.store.sql import live_conversation_workspace_sql
from daemon.store.txn import WriteContext
from daemon.types import LOCAL_ONLY_ROLES, MESSAGE_ROLES


class MessageRepo(Repo):
    table = "messages"
    entity = "message"

    async def create(
        self, *, conversation_id: str, role: str, content: str, id: str | None = None
    ) -> dict[str, Any]:
        conversation_id = identifier("conversation_id", conversation_id)
        if role not in MESSAGE_ROLES:
            raise InvalidInput("role", f"must be one of {', '.join(sorted(MESSAGE_ROLES))}")
        if not isinstance(content, str):
            raise InvalidInput("content", "must be a string")
        if id is not None and not is_uuid(id):
            raise InvalidInput("id", "must be a lower-case UUID string")
        return await self._write(_create_op(conversation_id, role, content, id))

    async def list(
        self, *, conversation_id: str, after: str | None = None, limit: int = 100
    ) -> Page:
        """Messages of a conversation in id (creation) order; ``after`` is a page cursor."""
        filters = {"conversation_id": identifier("conversation_id", conversation_id)}
        return await self._list(filters, limit=limit, cursor=after, cursor_field="after")


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
            raise InvalidInput("conversation_id", f"unknown conversation {conversation_id!r}")
        stamp = ctx.tick()
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
    if (existing["conversation_id"], existing["role"], existing["content"]) == (
        conversation_id,
        role,
        content,
    ):
        return existing  # a retry of a send that already committed: no new entry
    raise Conflict(f"message id {existing['id']!r} already used with different content")
