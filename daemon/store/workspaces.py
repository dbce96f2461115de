"""Workspaces: the unit of sharing; carry the cloud's columns (goal, progress, memory...)."""

from __future__ import annotations

from typing import Any

from daemon.store.base import (
    Check,
    Page,
    Repo,
    check_fields,
    delete_op,
    identifier,
    insert_new,
    json_array,
    json_object,
    optional_text,
    text,
    update_op,
)
from daemon.store.ids import uuid7
from daemon.store.txn import WriteContext

UPDATABLE: dict[str, Check] = {
    "name": text,
    "path": optional_text,
    "description": optional_text,
    "status": text,
    "task_goal": optional_text,
    "current_step": optional_text,
    "progress_data": json_object,
    "next_steps": json_array,
    "shared_memory": json_object,
}


class WorkspaceRepo(Repo):
    table = "workspaces"
    entity = "workspace"

    async def create(
        self, *, name: str, path: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        name = text("name", name)
        path = optional_text("path", path)
        description = optional_text("description", description)

        def op(ctx: WriteContext) -> dict[str, Any]:
            stamp = ctx.tick()
            row: dict[str, Any] = {
                "id": uuid7(stamp.ms),
                "name": name,
                "path": path,
                "description": description,
                "status": "active",
                "task_goal": None,
                "current_step": None,
                "progress_data": {},
                "next_steps": [],
                "shared_memory": {},
                "created_at": stamp.iso,
                "updated_at": stamp.iso,
                "deleted_at": None,
            }
            insert_new(ctx, "workspaces", row, stamp, "workspace.created")
            return row

        return await self._write(op)

    async def list(self, *, limit: int = 50, cursor: str | None = None) -> Page:
        """Live workspaces (no tombstones), oldest first."""
        return await self._list({}, limit=limit, cursor=cursor, cursor_field="cursor")

    async def update(self, id: str, **fields: Any) -> dict[str, Any]:
        identifier("id", id)
        changes = check_fields(fields, UPDATABLE)
        return await self._write(
            update_op(self.table, self.entity, id, changes, "workspace.updated")
        )

    async def delete(self, id: str) -> dict[str, Any]:
        identifier("id", id)
        return await self._write(delete_op(self.table, self.entity, id, "workspace.deleted"))
