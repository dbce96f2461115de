"""Presence and broadcast methods: presence.set, presence.list, broadcast.send. Thin: validate,
call the live facade (``daemon.sync.live.LiveSync`` when the cloud is configured, else
``DisabledLive``: -32003).

Events (ephemeral: delivered to live subscriptions only, never stored, never replayed; their
notification carries ``"ephemeral": true`` and the subscription's last durable ``seq``):
``presence.changed {workspace_id, members, truncated}`` whenever who is online (or their status,
file or cursor) changes, also when an idle member turns ``away`` (5 min without input) and when
the connection is lost (then only this device is listed, as in ``presence.list``), and
``broadcast.received {workspace_id, event, payload}``.

Members shown fit in one frame of the local API (``bridge.max_frame_bytes``, 1 MiB by default):
this device always, then the others in order as long as they fit; ``truncated`` counts the
members left out (0: everyone is listed). ~30 devices each tracking a 16 KiB cursor and a long
file path would otherwise make a frame a client refuses (1009), closing its connection.

Errors: -32003 cloud not configured, -32004 not logged in, -32602 bad params or a workspace
that is not linked to the cloud (``data.field`` = ``workspace_id``), or a broadcast ``event``
the daemon uses itself on the workspace channel (``doc.update``; ``data.field`` = ``event``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from daemon.realtime.presence import STATUSES
from daemon.sync.live_map import RESERVED_EVENTS
from ui_bridge.jsonrpc import ErrorCode
from ui_bridge.methods.context import CallContext
from ui_bridge.methods.spec import Method, MethodTable, Param

__all__ = ["LiveFacade", "add_presence_methods"]

ID_LENGTH: Final = 64
EVENT_LENGTH: Final = 128
PATH_LENGTH: Final = 4096

_NULLABLE_TEXT: Final[dict[str, Any]] = {"oneOf": [{"type": "string"}, {"type": "null"}]}
_MEMBER: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "user_id": _NULLABLE_TEXT,
        "display_name": _NULLABLE_TEXT,
        "device_id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "active_file": _NULLABLE_TEXT,
        "cursor": {},
        "since": _NULLABLE_TEXT,
        "active_at": _NULLABLE_TEXT,
        "self": {"type": "boolean", "description": "this device"},
    },
    "required": ["device_id", "status"],
}
_MEMBERS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "workspace_id": {"type": "string"},
        "members": {"type": "array", "items": _MEMBER},
        "truncated": {
            "type": "integer",
            "description": "members left out so that the answer fits in one frame of the local"
            " API (this device is always listed)",
        },
    },
    "required": ["workspace_id", "members", "truncated"],
}
_TRACKED: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"workspace_id": {"type": "string"}, "presence": {"type": "object"}},
    "required": ["workspace_id", "presence"],
    "description": "the presence meta tracked (sent at most once a second and 4 times in"
    " 30 s, latest wins)",
}
_SENT: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "workspace_id": {"type": "string"},
        "event": {"type": "string"},
        "sent": {"type": "boolean", "description": "false: the channel is not joined right now"},
    },
    "required": ["workspace_id", "event", "sent"],
}
_RESERVED: Final = ", ".join(sorted(RESERVED_EVENTS))
_ERRORS: Final = (
    ErrorCode.CLOUD_NOT_CONFIGURED,
    ErrorCode.LOGIN_REQUIRED,
    ErrorCode.INVALID_PARAMS,
)


class LiveFacade(Protocol):
    """What the presence and broadcast methods call (LiveSync / DisabledLive)."""

    async def set_presence(
        self, workspace_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def presence(self, workspace_id: str) -> dict[str, Any]: ...

    async def broadcast(
        self, workspace_id: str, event: str, payload: dict[str, Any]
    ) -> dict[str, Any]: ...


def add_presence_methods(table: MethodTable, live: LiveFacade) -> None:
    """Register presence.set, presence.list and broadcast.send, served by ``live``."""

    async def presence_set(ctx: Any, params: dict[str, Any]) -> Any:
        changes = {k: v for k, v in params.items() if k != "workspace_id"}
        return await live.set_presence(params["workspace_id"], changes)

    async def presence_list(ctx: Any, params: dict[str, Any]) -> Any:
        return live.presence(params["workspace_id"])

    async def broadcast_send(ctx: CallContext, params: dict[str, Any]) -> Any:
        workspace_id, event, payload = (
            params["workspace_id"],
            params["event"],
            params.get("payload", {}),
        )
        result = await live.broadcast(workspace_id, event, payload)  # checks all, or raises
        # the other UIs attached to this daemon are peers too (as Realtime's other clients)
        data = {"workspace_id": workspace_id, "event": event, "payload": payload}
        ctx.publish_to_others("broadcast.received", data)
        return result

    ws = Param(
        "workspace_id",
        "string",
        required=True,
        max_length=ID_LENGTH,
        description="a linked workspace",
    )
    for method in (
        Method(
            "presence.set",
            presence_set,
            (
                ws,
                Param("status", "string", enum=STATUSES, description="active until set"),
                Param(
                    "active_file",
                    "string",
                    nullable=True,
                    max_length=PATH_LENGTH,
                    description="the file this user has open",
                ),
                Param(
                    "cursor",
                    "any",
                    nullable=True,
                    description="any JSON (at most 16 KiB as UTF-8 JSON)",
                ),
            ),
            "Update this device's presence in a linked workspace; omitted fields keep their value.",
            _TRACKED,
            _ERRORS,
        ),
        Method(
            "presence.list",
            presence_list,
            (ws,),
            "Who is online in a linked workspace (idle members show as away): this device always"
            " (self true, as it last set it, even while the cloud is unreachable), the others"
            " while connected, as many as fit in one frame of the local API (truncated: how"
            " many are left out).",
            _MEMBERS,
            _ERRORS,
        ),
        Method(
            "broadcast.send",
            broadcast_send,
            (
                ws,
                Param(
                    "event",
                    "string",
                    required=True,
                    max_length=EVENT_LENGTH,
                    description=f"the name receivers see; reserved (the daemon's own): {_RESERVED}",
                ),
                Param(
                    "payload",
                    "object",
                    description="any JSON object (at most 256 KiB as UTF-8 JSON)",
                ),
            ),
            "Send an ephemeral message to the workspace's other devices and to the other UIs"
            " attached to this daemon (never stored; not to the sender's own connection)."
            " sent: whether it went to the cloud (false while not connected; the local UIs get"
            " it either way). At most 10 a second from this daemon (realtime-js's own default):"
            " a send over it is refused (-32005, data.retry_after_s), not queued.",
            _SENT,
            (*_ERRORS, ErrorCode.RATE_LIMITED),
        ),
    ):
        table.add(method)
