"""Data methods: workspaces, conversations, messages, tasks. Thin: validate, call the store.

Results are the stored rows as the repositories return them, their JSON maps as readers see
them (no tombstoned key: ``_Shown``); lists are ``{items, next_cursor}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Final

from daemon.store.base import Page
from daemon.store.codec import shown_row
from daemon.store.messages import ID_TIME_RULE
from daemon.types import TASK_STATUSES
from ui_bridge.jsonrpc import ErrorCode
from ui_bridge.methods.context import CallContext
from ui_bridge.methods.spec import (
    CURSOR_PARAM,
    PAGE_RESULT,
    Handler,
    Method,
    MethodTable,
    Param,
    limit_param,
    page_result,
)

__all__ = ["add_data_methods"]

ID_LENGTH: Final = 64
NAME_LENGTH: Final = 1_000
TEXT_LENGTH: Final = 100_000
MAX_CONTENT: Final = 512 * 1024
ROLES: Final = ("user", "assistant", "system", "tool")
TASK_STATUS_ORDER: Final = tuple(sorted(TASK_STATUSES))

Repo = Callable[[CallContext], Any]

_ROW: Final[dict[str, Any]] = {"type": "object", "description": "the stored row"}
_WRITE_ERRORS: Final = (ErrorCode.INVALID_PARAMS, ErrorCode.SHUTTING_DOWN)
_ROW_ERRORS: Final = (ErrorCode.NOT_FOUND, *_WRITE_ERRORS)


def _id(name: str = "id", *, required: bool = True, what: str = "row id") -> Param:
    return Param(name, "string", required=required, max_length=ID_LENGTH, description=what)


def _text(
    name: str,
    what: str,
    *,
    required: bool = False,
    nullable: bool = False,
    size: int = NAME_LENGTH,
) -> Param:
    return Param(
        name, "string", required=required, nullable=nullable, max_length=size, description=what
    )


def _status(what: str) -> Param:
    return Param("status", "string", enum=TASK_STATUS_ORDER, description=what)


def _create(repo: Repo, method: str = "create") -> Handler:
    def handler(ctx: CallContext, params: dict[str, Any]) -> Awaitable[Any]:
        return getattr(repo(ctx), method)(**params)  # type: ignore[no-any-return]

    return handler


def _by_id(repo: Repo, method: str) -> Handler:
    async def handler(ctx: CallContext, params: dict[str, Any]) -> Any:
        return await getattr(repo(ctx), method)(params["id"])

    return handler


def _update(repo: Repo) -> Handler:
    async def handler(ctx: CallContext, params: dict[str, Any]) -> Any:
        fields = dict(params)
        row_id = fields.pop("id")
        return await repo(ctx).update(row_id, **fields)

    return handler


def _list(repo: Repo) -> Handler:
    async def handler(ctx: CallContext, params: dict[str, Any]) -> Any:
        return page_result(await repo(ctx).list(**params))

    return handler


class _Shown:
    """A repository whose answers show rows as readers see them (``codec.shown_row``: no
    tombstoned map keys, R3); for the tables that have such maps (workspaces, tasks)."""

    def __init__(self, repo: Any, table: str) -> None:
        self._repo = repo
        self._table = table

    def __getattr__(self, name: str) -> Any:
        method, table = getattr(self._repo, name), self._table

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            if isinstance(result, Page):
                items = [shown_row(table, row) for row in result.items]
                return dataclasses.replace(result, items=items)
            return shown_row(table, result)

        return call


def _workspaces(ctx: CallContext) -> Any:
    return _Shown(ctx.store.workspaces, "workspaces")


def _conversations(ctx: CallContext) -> Any:
    return ctx.store.conversations


def _messages(ctx: CallContext) -> Any:
    return ctx.store.messages


def _tasks(ctx: CallContext) -> Any:
    return _Shown(ctx.store.tasks, "tasks")


def _entity_methods(
    prefix: str,
    repo: Repo,
    delete: str = "delete",
    frozen: str = " (refused in a deleted workspace)",
    errors: tuple[int, ...] = _ROW_ERRORS,
) -> list[Method]:
    """get / delete (or cancel) for one entity; create, list and update differ per entity.
    ``frozen``: what the delete's summary says of a deleted workspace; ``errors``: its
    errors."""
    return [
        Method(
            f"{prefix}.get",
            _by_id(repo, "get"),
            (_id(),),
            f"Get one {prefix} by id (tombstones included).",
            _ROW,
            (ErrorCode.NOT_FOUND,),
        ),
        Method(
            f"{prefix}.{delete}",
            _by_id(repo, delete),
            (_id(),),
            f"{delete.capitalize()} a {prefix}{frozen}.",
            _ROW,
            errors,
        ),
    ]


def _workspace_methods() -> list[Method]:
    fields = (
        _text("path", "the workspace's local folder (never synced)", nullable=True, size=4_096),
        _text("description", "free text", nullable=True, size=TEXT_LENGTH),
    )
    merged = "an object merged key by key with other devices' (null: {})"
    updatable = (
        _text("name", "display name"),
        *fields,
        _text("status", "free text (a new workspace's: active)", size=64),
        _text(
            "task_goal",
            "the goal (an edit crossing another device's is a conflict: sync.conflicts)",
            nullable=True,
            size=TEXT_LENGTH,
        ),
        _text("current_step", "free text", nullable=True, size=TEXT_LENGTH),
        Param("progress_data", "object", nullable=True, description=merged),
        Param("next_steps", "array", nullable=True, description="any JSON array (null: [])"),
        Param("shared_memory", "object", nullable=True, description=merged),
    )
    w = _workspaces
    return [
        Method(
            "workspace.create",
            _create(w),
            (_text("name", "display name", required=True), *fields),
            "Create a workspace.",
            _ROW,
            _WRITE_ERRORS,
        ),
        Method(
            "workspace.list",
            _list(w),
            (limit_param(50), CURSOR_PARAM),
            "List live workspaces.",
            PAGE_RESULT,
        ),
        Method(
            "workspace.update",
            _update(w),
            (_id(), *updatable),
            "Change some fields of a workspace.",
            _ROW,
            _ROW_ERRORS,
        ),
        *_entity_methods("workspace", w, frozen=""),
    ]


def _conversation_methods() -> list[Method]:
    c = _conversations
    ws = _id("workspace_id", what="workspace id")
    conv_type = _text("type", "free text (default chat)", size=64)
    return [
        Method(
            "conversation.create",
            _create(c),
            (ws, _text("name", "display name", required=True), conv_type),
            "Create a conversation in a workspace.",
            _ROW,
            _WRITE_ERRORS,
        ),
        Method(
            "conversation.list",
            _list(c),
            (
                _id("workspace_id", required=False, what="only this workspace"),
                limit_param(50),
                CURSOR_PARAM,
            ),
            "List live conversations. A deleted workspace's are left out: its list is empty, as"
            " an unknown workspace's.",
            PAGE_RESULT,
        ),
        Method(
            "conversation.update",
            _update(c),
            (
                _id(),
                _text("name", "display name"),
                conv_type,
                Param("is_archived", "boolean", description="archived or not"),
            ),
            "Rename, retype or archive a conversation (refused in a deleted workspace).",
            _ROW,
            _ROW_ERRORS,
        ),
        *_entity_methods("conversation", c),
    ]


def _message_methods() -> list[Method]:
    m = _messages
    send = (
        _id("conversation_id", what="conversation id"),
        Param(
            "role",
            "string",
            required=True,
            enum=ROLES,
            description="who wrote it (system and tool messages never leave the device)",
        ),
        _text("content", "the message's text", required=True, size=MAX_CONTENT),
        _id(
            "id",
            required=False,
            what="client-chosen id, a lower-case UUIDv7 (RFC 9562; other versions are refused:"
            " messages list in id order, i.e. creation order) minted when the message is"
            f" written, its time {ID_TIME_RULE}: retrying with it is idempotent, whatever its"
            " age",
        ),
    )
    listing = (
        _id("conversation_id", what="conversation id"),
        Param(
            "after",
            "string",
            nullable=True,
            max_length=1_000,
            description="next_cursor of the previous page, or a message id: the messages after it",
        ),
        limit_param(100),
    )
    return [
        Method(
            "message.send",
            _create(m),
            send,
            "Append a message to a conversation (refused in a deleted workspace). A"
            " client-chosen `id` is the message's place in the conversation's order: an id"
            " that is not a UUIDv7, or whose time is not " + ID_TIME_RULE + ", is refused"
            " (-32602, field `id`). Sending a stored id again is a retry: it answers the"
            " stored message, whatever its age (-32002 saying which differs when the"
            " conversation, role or content is not the same).",
            _ROW,
            (ErrorCode.CONFLICT, *_WRITE_ERRORS),
        ),
        Method(
            "message.list",
            _list(m),
            listing,
            "Messages of a conversation in creation order (id order), oldest first. A deleted"
            " conversation's, or those of a conversation of a deleted workspace, are left out:"
            " its list is empty, as an unknown conversation's. `after`"
            " takes a page's next_cursor or the id of a message: the answer is then the"
            " messages after it in that order. It is a position, not a way to learn of new"
            " messages: a message can arrive later with an earlier position (sent with an id"
            " its client minted before, or synced from another device that wrote it offline),"
            " and `after` the last id one has never shows it. To see every new message,"
            ' `subscribe {topics: ["message.created"], since}` (every event after a seq, no'
            " gap) and list from the start when that answers refetch.",
            PAGE_RESULT,
        ),
    ]


def _task_methods() -> list[Method]:
    t = _tasks
    payload = Param(
        "payload",
        "any",
        nullable=True,
        description="the task's input, any JSON (its numbers: integers within 64 bits,"
        " others below 2**63 in magnitude; -32602 otherwise)",
    )
    priority = Param(
        "priority", "integer", minimum=-1_000_000, maximum=1_000_000, description="default 0"
    )
    enqueue = (
        _id("workspace_id", what="workspace id"),
        _text("kind", "what the task does, for the workers that take it", required=True, size=200),
        payload,
        priority,
        _id(
            "id",
            required=False,
            what="client-chosen id, a lower-case UUIDv7 (RFC 9562; other versions are refused:"
            " tasks list in id order, i.e. enqueue order) minted when the task is enqueued,"
            f" its time {ID_TIME_RULE}: retrying with it is idempotent, whatever its age",
        ),
    )
    updatable = (
        _id(),
        _status("the new status"),
        priority,
        payload,
        Param(
            "progress",
            "object",
            nullable=True,
            description="checkpoint: the whole new map (a key left out is removed; null: {});"
            " other devices' concurrent edits of it merge key by key",
        ),
    )
    listing = (
        _id("workspace_id", required=False, what="only this workspace"),
        _status("only tasks in this status"),
        limit_param(50),
        CURSOR_PARAM,
    )
    return [
        Method(
            "task.enqueue",
            _create(t),
            enqueue,
            "Queue a task (status queued; refused in a deleted workspace). Enqueueing a"
            " stored `id` again is a retry: it answers the stored task as it is now (-32002"
            " saying which differs when the workspace or kind is not the same, or the payload"
            " or priority while they still hold their enqueued value).",
            _ROW,
            (ErrorCode.CONFLICT, *_WRITE_ERRORS),
        ),
        Method(
            "task.list",
            _list(t),
            listing,
            "List live tasks, oldest first (in id order, the order they were enqueued;"
            " priority does not order the list). A deleted workspace's are left out: its list"
            " is empty, as an unknown workspace's. A task synced from another device (enqueued"
            " there while offline) may take a position before a page already read: to see"
            ' every new task, `subscribe {topics: ["task.*"], since}`.',
            PAGE_RESULT,
        ),
        Method(
            "task.update",
            _update(t),
            updatable,
            "Change a task's status, priority, payload or progress (refused in a deleted"
            " workspace). The status moves freely between queued, running and paused, and from"
            " those to succeeded, failed or cancelled; an ended task's status never changes"
            " again (-32602 on status).",
            _ROW,
            _ROW_ERRORS,
        ),
        *_entity_methods(
            "task",
            t,
            delete="cancel",
            frozen=" (refused in a deleted workspace); a succeeded or failed one answers -32002",
            errors=(ErrorCode.CONFLICT, *_ROW_ERRORS),
        ),
    ]


def add_data_methods(table: MethodTable) -> None:
    """Register every data method."""
    for method in (
        *_workspace_methods(),
        *_conversation_methods(),
        *_message_methods(),
        *_task_methods(),
    ):
        table.add(method)
