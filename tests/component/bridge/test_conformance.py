"""Every example of section 7 of the JSON-RPC 2.0 specification, through a real connection.

The spec's example methods (subtract, sum, update, notify_hello, get_data, notify_sum) are added
to the real method table; ``foobar`` and ``foo.get`` stay unknown.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import MS
from ui_bridge.methods import Method, MethodTable, Param, build_method_table

from .conftest import MakeBridge, Rpc

NOTIFIED: list[tuple[str, dict[str, Any]]] = []


async def _subtract(ctx: Any, p: dict[str, Any]) -> Any:
    return p["minuend"] - p["subtrahend"]


async def _sum(ctx: Any, p: dict[str, Any]) -> Any:
    return sum(p.values())


def _recorder(name: str) -> Any:
    async def handler(ctx: Any, p: dict[str, Any]) -> Any:
        NOTIFIED.append((name, p))
        return None

    return handler


async def _get_data(ctx: Any, p: dict[str, Any]) -> Any:
    return ["hello", 5]


def _numbers(*names: str, required: int = 0) -> tuple[Param, ...]:
    return tuple(Param(n, "number", required=i < required) for i, n in enumerate(names))


def spec_table() -> MethodTable:
    table = build_method_table()
    table.add(Method("subtract", _subtract, _numbers("minuend", "subtrahend", required=2)))
    table.add(Method("sum", _sum, _numbers("a", "b", "c", "d")))
    table.add(Method("update", _recorder("update"), _numbers("a", "b", "c", "d", "e")))
    table.add(Method("notify_hello", _recorder("notify_hello"), _numbers("a")))
    table.add(Method("notify_sum", _recorder("notify_sum"), _numbers("a", "b", "c")))
    table.add(Method("get_data", _get_data))
    return table


@pytest.fixture
async def spec_rpc(make_bridge: MakeBridge, open_rpc: Any) -> Rpc:
    NOTIFIED.clear()
    server = await make_bridge(methods=spec_table())
    return await open_rpc(server)


async def exchange(rpc: Rpc, frame: str) -> Any:
    await rpc.send(frame)
    return await rpc.recv()


async def assert_silent(rpc: Rpc) -> None:
    """No reply: prove it by a ping whose answer must be the very next frame."""
    await rpc.send('{"jsonrpc": "2.0", "method": "daemon.ping", "id": "probe"}')
    reply = await rpc.recv()
    assert reply == {"jsonrpc": "2.0", "result": {"pong": True}, "id": "probe"}


INVALID_REQUEST = {"code": -32600, "message": "Invalid Request"}


def error_of(reply: dict[str, Any]) -> dict[str, Any]:
    return {"code": reply["error"]["code"], "message": reply["error"]["message"]}


async def test_positional_parameters(spec_rpc: Rpc) -> None:
    reply = await exchange(
        spec_rpc, '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}'
    )
    assert reply == {"jsonrpc": "2.0", "result": 19, "id": 1}
    reply = await exchange(
        spec_rpc, '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}'
    )
    assert reply == {"jsonrpc": "2.0", "result": -19, "id": 2}


async def test_named_parameters(spec_rpc: Rpc) -> None:
    frame = (
        '{"jsonrpc": "2.0", "method": "subtract", '
        '"params": {"subtrahend": 23, "minuend": 42}, "id": 3}'
    )
    assert await exchange(spec_rpc, frame) == {"jsonrpc": "2.0", "result": 19, "id": 3}
    frame = (
        '{"jsonrpc": "2.0", "method": "subtract", '
        '"params": {"minuend": 42, "subtrahend": 23}, "id": 4}'
    )
    assert await exchange(spec_rpc, frame) == {"jsonrpc": "2.0", "result": 19, "id": 4}


async def test_notifications_get_no_reply(spec_rpc: Rpc) -> None:
    await spec_rpc.send('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}')
    await spec_rpc.send('{"jsonrpc": "2.0", "method": "foobar"}')
    await assert_silent(spec_rpc)
    assert NOTIFIED == [("update", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})]


async def test_non_existent_method(spec_rpc: Rpc) -> None:
    reply = await exchange(spec_rpc, '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}')
    assert reply["id"] == "1"
    assert error_of(reply) == {"code": -32601, "message": "Method not found"}


async def test_invalid_json(spec_rpc: Rpc) -> None:
    reply = await exchange(spec_rpc, '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert reply["id"] is None
    assert error_of(reply) == {"code": -32700, "message": "Parse error"}


async def test_invalid_request_object(spec_rpc: Rpc) -> None:
    reply = await exchange(spec_rpc, '{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert reply["id"] is None
    assert error_of(reply) == INVALID_REQUEST


async def test_batch_invalid_json(spec_rpc: Rpc) -> None:
    frame = (
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method"]'
    )
    reply = await exchange(spec_rpc, frame)
    assert isinstance(reply, dict) and reply["id"] is None
    assert error_of(reply) == {"code": -32700, "message": "Parse error"}


async def test_empty_array(spec_rpc: Rpc) -> None:
    reply = await exchange(spec_rpc, "[]")
    assert isinstance(reply, dict) and reply["id"] is None
    assert error_of(reply) == INVALID_REQUEST


async def test_invalid_batch_but_not_empty(spec_rpc: Rpc) -> None:
    reply = await exchange(spec_rpc, "[1]")
    assert isinstance(reply, list) and len(reply) == 1
    assert reply[0]["id"] is None and error_of(reply[0]) == INVALID_REQUEST


async def test_invalid_batch(spec_rpc: Rpc) -> None:
    reply = await exchange(spec_rpc, "[1,2,3]")
    assert isinstance(reply, list) and len(reply) == 3
    for item in reply:
        assert item["jsonrpc"] == "2.0" and item["id"] is None
        assert error_of(item) == INVALID_REQUEST


async def test_mixed_batch(spec_rpc: Rpc) -> None:
    frame = """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"""
    reply = await exchange(spec_rpc, frame)
    assert isinstance(reply, list) and len(reply) == 5
    by_id = {item["id"]: item for item in reply if item["id"] is not None}
    assert by_id["1"]["result"] == 7
    assert by_id["2"]["result"] == 19
    assert error_of(by_id["5"]) == {"code": -32601, "message": "Method not found"}
    assert by_id["9"]["result"] == ["hello", 5]
    nulls = [item for item in reply if item["id"] is None]
    assert len(nulls) == 1 and error_of(nulls[0]) == INVALID_REQUEST
    assert all(item["jsonrpc"] == "2.0" for item in reply)
    assert NOTIFIED == [("notify_hello", {"a": 7})]


async def test_batch_of_notifications_gets_nothing(spec_rpc: Rpc) -> None:
    frame = """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"""
    await spec_rpc.send(frame)
    await assert_silent(spec_rpc)
    assert NOTIFIED == [("notify_sum", {"a": 1, "b": 2, "c": 4}), ("notify_hello", {"a": 7})]


async def test_success_and_error_responses_never_carry_both(spec_rpc: Rpc) -> None:
    ok = await exchange(spec_rpc, '{"jsonrpc":"2.0","method":"get_data","id":7}')
    bad = await exchange(spec_rpc, '{"jsonrpc":"2.0","method":"subtract","params":[1],"id":8}')
    assert set(ok) == {"jsonrpc", "result", "id"}
    assert set(bad) == {"jsonrpc", "error", "id"}
    assert bad["error"]["code"] == -32602 and bad["error"]["data"]["field"] == "subtrahend"


async def test_invalid_params_in_a_notification_are_dropped_silently(spec_rpc: Rpc) -> None:
    await spec_rpc.send('{"jsonrpc":"2.0","method":"subtract","params":["x"]}')
    await asyncio.wait_for(assert_silent(spec_rpc), 5_000 * MS)
