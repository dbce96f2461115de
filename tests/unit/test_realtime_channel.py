"""Channel logic: topics, tokens, join payloads, the join reply and system/close frames."""

from __future__ import annotations

import pytest

from devcloud.keys import DEFAULT_ANON_KEY, DEFAULT_JWT_SECRET, sign
from devcloud.realtime import channel as ch
from devcloud.realtime.channel import JoinRefused
from devcloud.realtime.filters import Filter

NOW = 1_800_000_000.0
SECRET = DEFAULT_JWT_SECRET


def token(**claims: object) -> str:
    return sign({"role": "authenticated", "exp": int(NOW) + 60, **claims}, SECRET)


def test_topics() -> None:
    assert ch.parse_topic("realtime:room1") == "room1"
    with pytest.raises(JoinRefused) as unmatched:
        ch.parse_topic("room1")
    assert unmatched.value.code == "UnmatchedTopic"
    with pytest.raises(JoinRefused) as empty:
        ch.parse_topic("realtime: ")
    assert empty.value.reason == "TopicNameRequired: You must provide a topic name"


def test_check_token_accepts_valid_and_anon_key() -> None:
    assert ch.check_token(token(sub="u1"), SECRET, NOW)["sub"] == "u1"
    assert ch.check_token(DEFAULT_ANON_KEY, SECRET, NOW)["role"] == "anon"


@pytest.mark.parametrize(
    ("tok", "reason"),
    [
        ("garbage", "MalformedJWT: The token provided is not a valid JWT"),
        (sign({"role": "anon", "exp": int(NOW) + 9}, "x" * 40), "JwtSignatureError: Failed"),
        (sign({"role": "anon"}, SECRET), "InvalidJWTToken: Fields `role` and `exp` are required"),
        (sign({"exp": int(NOW) + 9}, SECRET), "InvalidJWTToken: Fields `role` and `exp`"),
        (
            sign({"role": "anon", "exp": int(NOW) - 12}, SECRET),
            "InvalidJWTToken: Token has expired 12 seconds ago",
        ),
        (sign({"role": "postgres", "exp": int(NOW) + 9}, SECRET), "Unauthorized: role"),
    ],
)
def test_check_token_refusals(tok: str, reason: str) -> None:
    with pytest.raises(JoinRefused) as refused:
        ch.check_token(tok, SECRET, NOW)
    assert refused.value.reason.startswith(reason)


def test_parse_join_python_capture() -> None:
    payload = {
        "config": {
            "broadcast": {"ack": True, "self": True},
            "presence": {"key": "k1", "enabled": True},
            "private": False,
            "postgres_changes": [
                {"event": "*", "schema": "public", "table": "todos", "filter": "user_id=eq.abc"},
                {"event": "INSERT", "schema": "public", "table": "notes"},
            ],
        },
        "access_token": "tok",
    }
    config = ch.parse_join(payload)
    assert config.broadcast_ack and config.broadcast_self and config.presence_enabled
    assert config.presence_key == "k1" and not config.private and config.access_token == "tok"
    first, second = config.bindings
    assert first.filter == Filter("user_id", "eq", ("abc",)) and first.table == "todos"
    assert second.event == "INSERT" and second.filter is None
    assert config.binding_errors == ()


def test_parse_join_defaults_and_flexible_booleans() -> None:
    config = ch.parse_join({})
    assert not config.broadcast_ack and not config.broadcast_self
    assert config.presence_key is None and config.bindings == () and config.access_token is None
    flexible = ch.parse_join(
        {"config": {"broadcast": {"ack": "true", "self": "false"}, "presence": None}}
    )
    assert flexible.broadcast_ack and not flexible.broadcast_self
    assert ch.parse_join({"config": {"broadcast": None}}).broadcast_ack is False


@pytest.mark.parametrize(
    "payload",
    [
        {"config": []},
        {"config": {"broadcast": 1}},
        {"config": {"postgres_changes": {"event": "*"}}},
        {"config": {"postgres_changes": ["x"]}},
    ],
)
def test_parse_join_refuses_malformed(payload: dict[str, object]) -> None:
    with pytest.raises(JoinRefused):
        ch.parse_join(payload)


def test_bad_filter_is_echoed_but_reported() -> None:
    raw = {"event": "*", "schema": "public", "table": "t", "filter": "nope"}
    config = ch.parse_join({"config": {"postgres_changes": [raw]}})
    assert len(config.binding_errors) == 1 and "filter" in config.binding_errors[0]
    (binding,) = config.bindings
    assert binding.echo == {**raw, "id": binding.id}
    assert not binding.wants("public", "t", "INSERT")


def test_join_reply_echoes_bindings_in_order_with_nonzero_ids() -> None:
    raws = [
        {"event": "*", "schema": "public", "table": "todos", "filter": "user_id=eq.abc"},
        {"event": "INSERT", "schema": "public", "table": "notes"},
        {"event": "DELETE", "schema": "public"},
    ]
    config = ch.parse_join({"config": {"postgres_changes": raws}})
    frame = ch.join_reply("realtime:room1", "1", "1", config)
    assert frame.event == "phx_reply" and frame.ref == "1"
    echoed = frame.payload["response"]["postgres_changes"]
    assert [{k: v for k, v in e.items() if k != "id"} for e in echoed] == raws
    ids = [e["id"] for e in echoed]
    assert all(isinstance(i, int) and 0 < i < 2**27 for i in ids)
    assert len(set(ids)) == 3
    assert ids[0] == ch.binding_id(raws[0])  # deterministic


def test_join_reply_without_bindings_has_empty_list() -> None:
    frame = ch.join_reply("realtime:r", "3", "3", ch.parse_join({}))
    assert frame.payload == {"status": "ok", "response": {"postgres_changes": []}}


def test_binding_matching() -> None:
    config = ch.parse_join(
        {"config": {"postgres_changes": [{"event": "update", "schema": "public"}]}}
    )
    (binding,) = config.bindings
    assert binding.table is None and binding.event == "UPDATE"
    assert binding.wants("public", "anything", "UPDATE")
    assert not binding.wants("public", "anything", "INSERT")
    assert not binding.wants("other", "anything", "UPDATE")
    star = ch.parse_binding({"event": "weird", "table": "*"})
    assert star.event == "*" and star.schema == "public" and star.table is None


def test_select_needs_a_table_and_a_list() -> None:
    with pytest.raises(ValueError, match="select"):
        ch.parse_binding({"event": "*", "select": ["a"]})
    with pytest.raises(ValueError, match="select"):
        ch.parse_binding({"event": "*", "table": "t", "select": "a"})
    assert ch.parse_binding({"event": "*", "table": "t", "select": ["a"]}).select == ("a",)


def test_frames() -> None:
    system = ch.subscribed("realtime:room1")
    assert system.payload == {
        "channel": "room1",
        "extension": "postgres_changes",
        "message": "Subscribed to PostgreSQL",
        "status": "ok",
    }
    assert system.ref is None and system.join_ref is None
    close = ch.close("realtime:room1", "6")
    assert (close.event, close.payload, close.ref, close.join_ref) == ("phx_close", {}, "6", "6")
    error = ch.error_reply("realtime:x", "2", None, "unmatched topic")
    assert error.payload == {"status": "error", "response": {"reason": "unmatched topic"}}
