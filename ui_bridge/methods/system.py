"""Daemon, event and discovery methods: daemon.ping/status, subscribe/unsubscribe, rpc.discover."""

from __future__ import annotations

from typing import Any, Final

from ui_bridge.jsonrpc import ErrorCode, RpcError
from ui_bridge.methods.context import CallContext
from ui_bridge.methods.spec import Method, MethodTable, Param, invalid_params
from ui_bridge.topics import InvalidPattern, TopicFilter

__all__ = ["MAX_SUBSCRIPTIONS", "add_system_methods"]

#: Subscriptions one connection may hold at once (one more is refused: -32602 on ``topics``).
MAX_SUBSCRIPTIONS: Final = 256
_OBJECT: Final[dict[str, Any]] = {"type": "object"}
_SUBSCRIBED: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"subscription": {"type": "string"}, "seq": {"type": "integer"}},
    "required": ["subscription", "seq"],
    "description": (
        "events with a seq greater than `seq` follow as `event` notifications; without"
        " `since`, first the latest `cloud.status` / `sync.status` / `daemon.status` event the"
        " topics match (retained: its seq is at most `seq`)"
    ),
}


async def ping(ctx: CallContext, params: dict[str, Any]) -> Any:
    return {"pong": True}


async def status(ctx: CallContext, params: dict[str, Any]) -> Any:
    return {**ctx.daemon_status(), "store": ctx.store.integrity.report.as_status()}


async def discover(ctx: CallContext, params: dict[str, Any]) -> Any:
    return ctx.describe()


#: The first segments of the event topics (ARCHITECTURE.md, "Public interfaces"). A family may
#: gain topics, so a pattern is checked by its family only: enough to refuse a typo
#: (``mesage.*``), which would otherwise be a subscription that never gets anything.
EVENT_FAMILIES: Final = frozenset(
    {"workspace", "conversation", "message", "task", "sync", "cloud", "presence", "broadcast",
     "doc", "ai", "daemon"}
)  # fmt: skip


async def subscribe(ctx: CallContext, params: dict[str, Any]) -> Any:
    try:
        topics = TopicFilter(params["topics"])
    except InvalidPattern as exc:
        raise invalid_params("topics", exc.reason if not exc.pattern else str(exc)) from exc
    for pattern in topics.patterns:
        family = pattern.partition(".")[0]
        if family not in ("*", "**") and family not in EVENT_FAMILIES:
            known = ", ".join(sorted(EVENT_FAMILIES))
            reason = f"no event topic starts with {family!r} in {pattern!r} (known: {known})"
            raise invalid_params("topics", reason)
    return await ctx.subscribe(topics, params.get("since"))


async def unsubscribe(ctx: CallContext, params: dict[str, Any]) -> Any:
    sub_id = params["subscription"]
    if not ctx.unsubscribe(sub_id):
        raise RpcError(ErrorCode.NOT_FOUND, data={"entity": "subscription", "id": sub_id})
    return {"subscription": sub_id, "unsubscribed": True}


def add_system_methods(table: MethodTable) -> None:
    """Register the daemon, event and discovery methods."""
    topics = Param(
        "topics",
        "array",
        required=True,
        items="string",
        max_items=64,
        description="topic patterns: `*` matches one segment, `**` any number; each begins"
        " with `*`, `**` or an event family: " + ", ".join(sorted(EVENT_FAMILIES)),
    )
    since = Param(
        "since",
        "integer",
        nullable=True,
        minimum=0,
        description="replay every event after this seq first (from the durable changelog)",
    )
    sub = Param(
        "subscription",
        "string",
        required=True,
        max_length=64,
        description="the id `subscribe` answered",
    )
    for method in (
        Method("daemon.ping", ping, (), "Liveness check.", _OBJECT),
        Method(
            "daemon.status",
            status,
            (),
            "Version, pid, port, uptime, connections, seq, and `store: {integrity, checked_at,"
            " detail?, advice?}`: the database's background check after start (`checking`,"
            " `ok`, `damaged`, `failed` when it could not run, `off` when disabled); damage or"
            " a failed check is also a `daemon.status` event (data `{id, store}`).",
            _OBJECT,
        ),
        Method(
            "subscribe",
            subscribe,
            (topics, since),
            "Subscribe to change events (replays from `since`, or first gets the latest"
            " status events the topics match, then live, in seq order). A `since` the"
            " changelog no longer keeps (or past its last seq) answers -32001 with data.reason"
            " refetch; a replay that falls behind what is kept ends with a notification"
            ' `subscription.error {subscription, code: -32001, reason: "refetch"}` and the'
            " subscription is gone: refetch, then subscribe again. A replay that cannot read"
            " the changelog (a damaged database) ends with `subscription.error {subscription,"
            ' code: -32603, reason: "damaged", message}` instead. A connection'
            f" holds at most {MAX_SUBSCRIPTIONS} subscriptions: one more is refused (-32602,"
            " field `topics`); unsubscribe frees one.",
            _SUBSCRIBED,
            (ErrorCode.INVALID_PARAMS, ErrorCode.NOT_FOUND),
        ),
        Method(
            "unsubscribe",
            unsubscribe,
            (sub,),
            "Stop a subscription.",
            _OBJECT,
            (ErrorCode.NOT_FOUND,),
        ),
        Method("rpc.discover", discover, (), "This API as an OpenRPC document.", _OBJECT),
    ):
        table.add(method)
