"""Channel logic (sans-I/O): topics, join payloads, tokens, and the frames a channel answers with.

A join goes: ``parse_topic`` (``realtime:<name>``; anything else is an "unmatched topic") →
``check_token`` (the join's ``access_token``, else the socket's apikey; ``role`` and ``exp``
required) → ``parse_join`` (config and postgres_changes bindings) → ``join_reply`` (the bindings
echoed verbatim, in order, each with a non-zero integer ``id``: both official clients match the
echo positionally and supabase-py ignores a falsy id). Bad filters do not refuse the join: as in
Realtime, the reply is ok and a ``system`` error follows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from devcloud.keys import InvalidToken, verify
from devcloud.realtime.filters import Filter, FilterError, parse_filter
from devcloud.realtime.serializer import Frame

TOPIC_PREFIX = "realtime:"
PHOENIX_TOPIC = "phoenix"
ALLOWED_ROLES = ("anon", "authenticated", "service_role")
CHANGE_EVENTS = ("INSERT", "UPDATE", "DELETE")
SUBSCRIBED_MESSAGE = "Subscribed to PostgreSQL"
_ID_SPACE = 2**27 - 1  # Realtime's ids are phash2(params) in [0, 2^27); ours avoid 0


class JoinRefused(Exception):
    """A join (or token change) the server refuses; ``reason`` is Realtime's ``"Code: message"``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reason = f"{code}: {message}"


@dataclass(frozen=True)
class Binding:
    """One postgres_changes subscription of a channel."""

    id: int
    event: str  # "*", "INSERT", "UPDATE" or "DELETE"
    schema: str
    table: str | None  # None: every table of the schema
    filter: Filter | None
    select: tuple[str, ...] | None
    echo: dict[str, Any]  # the client's map plus "id", exactly as the join reply carries it

    def wants(self, schema: str, table: str, change_type: str) -> bool:
        """Whether a change of ``change_type`` on ``schema.table`` concerns this binding."""
        if self.schema != schema or (self.table is not None and self.table != table):
            return False
        return self.event == "*" or self.event == change_type


@dataclass(frozen=True)
class JoinConfig:
    """What a valid ``phx_join`` payload asks for."""

    broadcast_self: bool
    broadcast_ack: bool
    replication_ready: bool  # the client wants a "Replication connection established" message
    presence_enabled: bool
    presence_key: str | None  # None: the server generates one per join
    private: bool
    bindings: tuple[Binding, ...]
    binding_errors: tuple[str, ...]  # sent as system errors after the ok reply
    access_token: str | None


def parse_topic(topic: str) -> str:
    """The sub-topic of a channel topic; raises JoinRefused for topics no channel handles."""
    if not topic.startswith(TOPIC_PREFIX):
        raise JoinRefused("UnmatchedTopic", "unmatched topic")
    name = topic[len(TOPIC_PREFIX) :]
    if not name.strip():
        raise JoinRefused("TopicNameRequired", "You must provide a topic name")
    return name


def check_token(token: str, secret: str, now: float) -> dict[str, Any]:
    """The claims of a channel token; raises JoinRefused with Realtime's codes and messages."""
    try:
        claims = verify(token, secret, now=0.0)  # expiry is judged below, with a message
    except InvalidToken as exc:
        if token.count(".") != 2:
            raise JoinRefused("MalformedJWT", "The token provided is not a valid JWT") from exc
        if "signature" in exc.reason.lower():
            raise JoinRefused("JwtSignatureError", "Failed to validate JWT signature") from exc
        raise JoinRefused("MalformedJWT", "The token provided is not a valid JWT") from exc
    exp = claims.get("exp")
    if "role" not in claims or not isinstance(exp, int | float) or isinstance(exp, bool):
        raise JoinRefused("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
    if exp <= now:
        raise JoinRefused("InvalidJWTToken", f"Token has expired {int(now - exp)} seconds ago")
    if claims["role"] not in ALLOWED_ROLES:
        raise JoinRefused("Unauthorized", f"role {claims['role']!r} is not allowed")
    return claims


def parse_join(payload: dict[str, Any]) -> JoinConfig:
    """Validate a ``phx_join`` payload; raises JoinRefused when it is not usable at all."""
    config = payload.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise JoinRefused("InvalidJoinPayload", "config must be an object")
    broadcast = _object(config, "broadcast")
    presence = _object(config, "presence")
    key = presence.get("key")
    if key is not None and not isinstance(key, str):
        key = json.dumps(key)
    bindings, errors = _parse_bindings(config.get("postgres_changes"))
    token = payload.get("access_token") or payload.get("user_token")
    return JoinConfig(
        broadcast_self=_flag(broadcast.get("self")),
        broadcast_ack=_flag(broadcast.get("ack")),
        replication_ready=_flag(broadcast.get("replication_ready")),
        presence_enabled=_flag(presence.get("enabled")),
        presence_key=key or None,
        private=_flag(config.get("private")),
        bindings=bindings,
        binding_errors=errors,
        access_token=token if isinstance(token, str) and token else None,
    )


def _object(config: dict[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JoinRefused("InvalidJoinPayload", f"config.{name} must be an object")
    return value


def _flag(value: Any) -> bool:
    """Realtime's FlexibleBoolean: booleans or the strings "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def _parse_bindings(raw: Any) -> tuple[tuple[Binding, ...], tuple[str, ...]]:
    if raw is None:
        return (), ()
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise JoinRefused("InvalidJoinPayload", "postgres_changes must be a list of objects")
    bindings: list[Binding] = []
    errors: list[str] = []
    for params in raw:
        try:
            bindings.append(parse_binding(params))
        except FilterError as exc:
            errors.append(str(exc))
            bindings.append(_inert_binding(params))
    return tuple(bindings), tuple(errors)


def parse_binding(params: dict[str, Any]) -> Binding:
    """One postgres_changes entry; raises FilterError for a bad filter/select/event."""
    event = params.get("event", "*")
    if not isinstance(event, str):
        raise FilterError("Error parsing `event` params: event must be a string")
    upper = event.upper()
    schema = params.get("schema") or "public"
    table = params.get("table")
    if not isinstance(schema, str) or (table is not None and not isinstance(table, str)):
        raise FilterError("Error parsing params: schema and table must be strings")
    select = params.get("select")
    if select is not None:
        if not isinstance(select, list) or not all(isinstance(c, str) for c in select):
            raise FilterError("Error parsing `select` params: select must be a list of names")
        if table in (None, "*"):
            raise FilterError("Error parsing `select` params: select needs a table")
    flt = params.get("filter")
    if flt is not None and not isinstance(flt, str):
        raise FilterError("Error parsing `filter` params: filter must be a string")
    return Binding(
        id=binding_id(params),
        event=upper if upper in CHANGE_EVENTS else "*",
        schema=schema,
        table=None if table in (None, "*") else table,
        filter=parse_filter(flt),
        select=tuple(select) if select is not None else None,
        echo={**params, "id": binding_id(params)},
    )


def _inert_binding(params: dict[str, Any]) -> Binding:
    # Echoed so the client's positional check passes, but matches nothing.
    ident = binding_id(params)
    return Binding(ident, "none", "", "", None, None, {**params, "id": ident})


def binding_id(params: dict[str, Any]) -> int:
    """A deterministic non-zero id in [1, 2^27) for a binding's params."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    digest = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    return digest % _ID_SPACE + 1


# Frames ------------------------------------------------------------------------------------------


def reply(
    topic: str,
    ref: str | None,
    join_ref: str | None,
    response: dict[str, Any] | None = None,
    *,
    status: str = "ok",
) -> Frame:
    """A ``phx_reply`` (V1 drops join_ref; V2 echoes it so realtime-js accepts the reply)."""
    payload = {"status": status, "response": response if response is not None else {}}
    return Frame(topic, "phx_reply", payload, ref, join_ref)


def error_reply(topic: str, ref: str | None, join_ref: str | None, reason: str) -> Frame:
    return reply(topic, ref, join_ref, {"reason": reason}, status="error")


def join_reply(topic: str, ref: str | None, join_ref: str | None, config: JoinConfig) -> Frame:
    """The ok reply to a join: always a ``postgres_changes`` list, echoed in request order."""
    changes = [binding.echo for binding in config.bindings]
    return reply(topic, ref, join_ref, {"postgres_changes": changes})


def system(topic: str, *, extension: str, status: str, message: str) -> Frame:
    """A ``system`` push; all four payload fields are required by supabase-py."""
    payload = {
        "channel": topic[len(TOPIC_PREFIX) :] if topic.startswith(TOPIC_PREFIX) else topic,
        "extension": extension,
        "message": message,
        "status": status,
    }
    return Frame(topic, "system", payload)


def replication_ready(topic: str) -> Frame:
    return system(
        topic, extension="system", status="ok", message="Replication connection established"
    )


def subscribed(topic: str) -> Frame:
    return system(topic, extension="postgres_changes", status="ok", message=SUBSCRIBED_MESSAGE)


def close(topic: str, join_ref: str | None) -> Frame:
    """``phx_close``: ``ref`` and ``join_ref`` are the channel's join ref."""
    return Frame(topic, "phx_close", {}, join_ref, join_ref)


def push(topic: str, event: str, payload: dict[str, Any]) -> Frame:
    """A broadcast-type push (``ref`` and ``join_ref`` null)."""
    return Frame(topic, event, payload)
