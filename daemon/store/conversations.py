"""Conversations: belong to a workspace; carry messages.

A conversation of a deleted workspace is frozen: update, delete and message.send refuse, lists
leave it out (daemon/store/base.py's module doc)."""

from __future__ import annotations

from typing import Any

from daemon.store.base import (
    Check,
    Page,
    Repo,
    boolean,
    check_fields,
    delete_op,
    identifier,
    insert_new,
    require_workspace,
    text,
    update_op,
)
from daemon.store.ids import uuid7
from daemon.store.txn import WriteContext

UPDATABLE: dict[str, Check] = {"name": text, "type": text, "is_archived": boolean}


class ConversationRepo(Repo):
    table = "conversations"
    entity = "conversation"
    in_workspace = True

    async def create(self, *, workspace_id: str, name: str, type: str = "chat") -> dict[str, Any]:
        workspace_id = identifier("workspace_id", workspace_id)
        name = text("name", name)
        type = text("type", type)

        def op(ctx: WriteContext) -> dict[str, Any]:
            require_workspace(ctx, workspace_id)
            stamp = ctx.tick()
            row: dict[str, Any] = {
                "id": uuid7(stamp.ms),
                "workspace_id": workspace_id,
                "name": name,
                "type": type,
                "is_archived": False,
                "created_at": stamp.iso,
                "updated_at": stamp.iso,
                "deleted_at": None,
            }
            insert_new(ctx, "conversations", row, stamp, "conversation.created")
            return row

        return await self._write(op)

    async def list(
        self, *, workspace_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Live conversations (of one workspace, or all), oldest first; a deleted workspace's
        are left out (its list is empty, as an unknown workspace's)."""
        filters = (
            {}
            if workspace_id is None
            else {"workspace_id": identifier("workspace_id", workspace_id)}
        )
        return await self._list(filters, limit=limit, cursor=cursor, cursor_field="cursor")

    async def update(self, id: str, **fields: Any) -> dict[str, Any]:
        identifier("id", id)
        changes = check_fields(fields, UPDATABLE)
        return await self._write(
            update_op(self.table, self.entity, id, changes, "conversation.updated")
        )

    async def delete(self, id: str) -> dict[str, Any]:
        identifier("id", id)
        return await self._write(delete_op(self.table, self.entity, id, "conversation.deleted"))
