"""Tasks: the work queue (kind, payload, status, priority, progress checkpoint, lease).

A task of a deleted workspace is frozen: update, cancel and delete refuse, lists leave it out
(daemon/store/base.py's module doc).

Status: a task is ``queued`` when enqueued; while it is open (``queued``, ``running``,
``paused``) its status may move to any status: a worker takes it (running), pauses and resumes
it, puts it back in the queue (a lost lease, a retry), or ends it. It ends ``succeeded``,
``failed`` (for good: a retry is a new task) or ``cancelled``, and an ended task's status never
changes again: ``update`` refuses any other status (InvalidInput on ``status``), ``cancel``
answers a conflict on a succeeded or failed one and nothing changes on a cancelled one. Setting
the status a task already has changes nothing. Sync keeps it too: an ended status wins over
any other whatever the clocks (merge.py R8; the cloud's merge the same, and its trigger refuses
a plain write moving an ended status), so a task cancelled on one device stays cancelled when
another marked it running later without having seen the cancel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.errors import Conflict, InvalidInput
from daemon.jsonmaps import same
from daemon.store.base import (
    Check,
    Page,
    Repo,
    check_fields,
    delete_op,
    identifier,
    insert_new,
    integer,
    json_document,
    json_object,
    live_row,
    require_workspace,
    text,
    update_op,
    write_changes,
)
from daemon.store.ids import uuid7
from daemon.store.messages import id_time_problem, is_uuid7, not_uuid7
from daemon.store.txn import WriteContext
from daemon.types import FINAL_TASK_STATUSES as FINAL
from daemon.types import TASK_STATUSES

#: What an enqueue sets that never changes after (fww): a retry always repeats them.
_FIXED = frozenset({"workspace_id", "kind"})
FINISHED = FINAL - {"cancelled"}
OPEN = TASK_STATUSES - FINAL


def status_value(field: str, value: Any) -> str:
    if value not in TASK_STATUSES:
        raise InvalidInput(field, f"must be one of {', '.join(sorted(TASK_STATUSES))}")
    return str(value)


def check_transition(current: Any, new: str) -> None:
    """InvalidInput on ``status`` unless a task whose status is ``current`` may take ``new``
    (the module doc). A ``current`` that could not be read (a damaged row) may be repaired."""
    if current == new or current not in FINAL:
        return
    raise InvalidInput(
        "status",
        f"the task is {current}, which is final: its status can no longer change"
        f" (allowed: from {', '.join(sorted(OPEN))} to any status;"
        f" {', '.join(sorted(FINAL))} never change)",
    )


UPDATABLE: dict[str, Check] = {
    "status": status_value,
    "priority": integer,
    "payload": json_document,
    "progress": json_object,  # a map that merges key by key (R3): the cloud wants an object
}


class TaskRepo(Repo):
    table = "tasks"
    entity = "task"
    in_workspace = True

    async def create(
        self,
        *,
        workspace_id: str,
        kind: str,
        payload: Any = None,
        priority: int = 0,
        id: str | None = None,
    ) -> dict[str, Any]:
        """Enqueue a task (status ``queued``). A client-chosen ``id`` (a UUIDv7 minted when
        the task is enqueued, as a message's: tasks list in id order) makes a retry
        idempotent: an enqueue whose id is stored already answers the stored task as it is
        now, or a Conflict saying what differs."""
        workspace_id = identifier("workspace_id", workspace_id)
        kind = text("kind", kind)
        payload = json_document("payload", payload)
        priority = integer("priority", priority)
        if id is not None and not is_uuid7(id):
            raise not_uuid7("task")
        return await self._write(_create_op(workspace_id, kind, payload, priority, id))

    async def list(
        self,
        *,
        workspace_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Live tasks, optionally of one workspace and/or one status, oldest first; a deleted
        workspace's are left out (its list is empty, as an unknown workspace's)."""
        filters: dict[str, Any] = {}
        if workspace_id is not None:
            filters["workspace_id"] = identifier("workspace_id", workspace_id)
        if status is not None:
            filters["status"] = status_value("status", status)
        return await self._list(filters, limit=limit, cursor=cursor, cursor_field="cursor")

    async def update(self, id: str, **fields: Any) -> dict[str, Any]:
        identifier("id", id)
        changes = check_fields(fields, UPDATABLE)
        guard = None if "status" not in changes else _status_guard(changes["status"])
        op = update_op(self.table, self.entity, id, changes, "task.updated", guard=guard)
        return await self._write(op)

    async def cancel(self, id: str) -> dict[str, Any]:
        """Set status ``cancelled``; cancelling twice changes nothing; a finished task refuses."""
        identifier("id", id)
        return await self._write(_cancel_op(id))

    async def delete(self, id: str) -> dict[str, Any]:
        identifier("id", id)
        return await self._write(delete_op(self.table, self.entity, id, "task.deleted"))


def _create_op(workspace_id: str, kind: str, payload: Any, priority: int, id: str | None) -> Any:
    def op(ctx: WriteContext) -> dict[str, Any]:
        if id is not None:
            existing = ctx.fetch("tasks", id)
            if existing is not None:
                enqueued = {"workspace_id": workspace_id, "kind": kind, "payload": payload,
                            "priority": priority}  # fmt: skip
                return _same_or_conflict(existing, enqueued)
        require_workspace(ctx, workspace_id)
        stamp = ctx.tick()
        problem = None if id is None else id_time_problem(id, stamp.ms, "task")
        if problem is not None:
            raise InvalidInput("id", problem)
        row: dict[str, Any] = {
            "id": id or uuid7(stamp.ms),
            "workspace_id": workspace_id,
            "kind": kind,
            "payload": payload,
            "status": "queued",
            "priority": priority,
            "progress": {},
            "attempts": 0,
            "lease_owner": None,
            "lease_expires_at": None,
            "created_at": stamp.iso,
            "updated_at": stamp.iso,
            "deleted_at": None,
        }
        insert_new(ctx, "tasks", row, stamp, "task.created")
        return row

    return op


def _same_or_conflict(existing: dict[str, Any], enqueued: dict[str, Any]) -> dict[str, Any]:
    """The stored task when the enqueue repeats it (a retry: answered as the task is now,
    whatever happened to it since); else Conflict naming what differs. ``payload`` and
    ``priority`` are compared only while they hold their enqueued value (their clock is the
    creation's): a retry that comes after a ``task.update`` of them is still a retry."""
    clocks = existing.get("field_hlc") or {}
    created = clocks.get("created_at", existing.get("hlc"))
    differs = [
        name
        for name, value in enqueued.items()
        if (name in _FIXED or clocks.get(name, existing.get("hlc")) == created)
        and not same(existing.get(name), value)
    ]
    if not differs:
        return existing
    raise Conflict(
        f"task id {existing['id']!r} already used with a different {', '.join(differs)}", "id"
    )


def _status_guard(new: str) -> Callable[[dict[str, Any]], None]:
    def guard(row: dict[str, Any]) -> None:
        check_transition(row.get("status"), new)

    return guard


def _cancel_op(id: str) -> Any:
    def op(ctx: WriteContext) -> dict[str, Any]:
        row = live_row(ctx, "tasks", "task", id)
        if row["status"] == "cancelled":
            return row
        if row["status"] in FINISHED:
            raise Conflict(f"task {id!r} already {row['status']}", "id")
        return write_changes(
            ctx, "tasks", row, {"status": "cancelled"}, op="update", topic="task.updated"
        )

    return op
