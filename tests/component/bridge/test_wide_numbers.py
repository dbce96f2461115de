"""Numbers beyond 64 bits and the OpenRPC document, through a real connection and a real store.

orjson parses an integer beyond [-2**63, 2**64 - 1] to the nearest float, and refuses a number
beyond the double range (1e400) as if it were not JSON: an id must still come back as sent
(JSON-RPC 2.0, 5), and params must be refused (-32602, naming the field and where in it) rather
than stored changed or answered as a parse error (-32700) although they are valid JSON.
Replies are read with the standard library's json, which keeps integers exact.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.helpers import MS
from ui_bridge.methods import build_method_table

from .conftest import Rpc

WIDE_IDS = ("18446744073709551616", "-9223372036854775809", "100000000000000000000000000000")


async def exchange(rpc: Rpc, text: str) -> Any:
    """Send one raw frame and return its reply decoded exactly."""
    await rpc.ws.send(text)
    return json.loads(await asyncio.wait_for(rpc.ws.recv(), 5_000 * MS))


def request(method: str, req_id: str, params: str | None = None) -> str:
    member = f',"params":{params}' if params is not None else ""
    return f'{{"jsonrpc":"2.0","method":"{method}"{member},"id":{req_id}}}'


@pytest.mark.parametrize("req_id", WIDE_IDS)
async def test_an_id_beyond_64_bits_comes_back_exactly(rpc: Rpc, req_id: str) -> None:
    reply = await exchange(rpc, request("daemon.ping", req_id))
    assert reply == {"jsonrpc": "2.0", "result": {"pong": True}, "id": int(req_id)}
    assert type(reply["id"]) is int  # not a float (2.0**64 == 2**64)
    error = await exchange(rpc, request("no.such.method", req_id))
    assert error["id"] == int(req_id) and type(error["id"]) is int
    assert error["error"]["code"] == -32601


async def test_ids_in_a_batch_and_float_ids_come_back_as_sent(rpc: Rpc) -> None:
    ids = ["18446744073709551616", "7", '"s"', "1.8446744073709552e+19", "2.5"]
    replies = await exchange(rpc, "[" + ",".join(request("daemon.ping", i) for i in ids) + "]")
    assert sorted(map(repr, (r["id"] for r in replies))) == sorted(
        map(repr, [2**64, 7, "s", 1.8446744073709552e19, 2.5])
    )
    assert all(r["result"] == {"pong": True} for r in replies)


WIDE_NUMBERS = ("1" + "0" * 29, "18446744073709551616", "9223372036854775808")
WIDE_NUMBERS += ("-9223372036854775809", "1e30")
# beyond the double range: valid JSON orjson refuses (they were answered -32700, Parse error)
WIDE_NUMBERS += ("1e400", "-1e400", "1" + "0" * 400, "-2.5E+309")


@pytest.mark.parametrize("number", WIDE_NUMBERS)
@pytest.mark.parametrize("req_id", ["1", "18446744073709551616"])
async def test_params_beyond_64_bits_are_refused_not_changed(
    rpc: Rpc, number: str, req_id: str
) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    params = f'{{"workspace_id":"{workspace["id"]}","kind":"k","payload":{{"big":[{number}]}}}}'
    reply = await exchange(rpc, request("task.enqueue", req_id, params))
    assert reply["id"] == int(req_id) and type(reply["id"]) is int
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["data"]["field"] == "payload"
    assert "64-bit" in reply["error"]["data"]["reason"]
    assert "big[0]" in reply["error"]["data"]["reason"]
    listing = await rpc.call("task.list", {"workspace_id": workspace["id"]})
    assert listing["items"] == []  # nothing was stored


@pytest.mark.parametrize("req_id", ["1e400", "-1" + "0" * 400])
async def test_an_id_beyond_the_double_range_comes_back_as_sent(rpc: Rpc, req_id: str) -> None:
    await rpc.ws.send(request("daemon.ping", req_id))
    raw = await asyncio.wait_for(rpc.ws.recv(), 5_000 * MS)
    text = raw.decode() if isinstance(raw, bytes) else raw
    assert text == f'{{"jsonrpc":"2.0","result":{{"pong":true}},"id":{req_id}}}'


@pytest.mark.parametrize(
    "frame",
    [
        '{"jsonrpc":"2.0","method":"daemon.ping","params":{"n":NaN},"id":1e400}',
        '{"jsonrpc":"2.0","method":"daemon.ping","params":{"n":1e400,"s":"\\ud800"},"id":1}',
        '{"jsonrpc":"2.0","method":"daemon.ping","params":{"n":1e400},"id":1',
    ],
)
async def test_what_is_not_json_is_still_a_parse_error(rpc: Rpc, frame: str) -> None:
    reply = await exchange(rpc, frame)
    assert reply["error"]["code"] == -32700 and reply["id"] is None


async def test_numbers_within_64_bits_are_stored_as_sent(rpc: Rpc) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    payload = {"max": 2**63 - 1, "min": -(2**63), "float": 9.2e18, "small": -1.5e-300}
    params = {"workspace_id": workspace["id"], "kind": "k", "payload": payload}
    task = await rpc.call("task.enqueue", params)
    assert task["payload"] == payload


def accepts(schema: dict[str, Any], value: Any) -> bool:
    """JSON Schema's type, enum, anyOf and oneOf (what the OpenRPC document uses for null)."""
    if "anyOf" in schema and not any(accepts(s, value) for s in schema["anyOf"]):
        return False
    if "oneOf" in schema and sum(accepts(s, value) for s in schema["oneOf"]) != 1:
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    kinds = {type(None): "null", str: "string", bool: "boolean", dict: "object", list: "array"}
    declared = schema.get("type")
    if declared is None:
        return True
    allowed = declared if isinstance(declared, list) else [declared]
    kind = kinds.get(type(value), "number")
    return kind in allowed or (kind == "number" and "integer" in allowed and value == int(value))


async def test_rpc_discover_lets_null_through_where_null_is_accepted(rpc: Rpc) -> None:
    doc = await rpc.call("rpc.discover")
    schemas = {(m["name"], p["name"]): p["schema"] for m in doc["methods"] for p in m["params"]}
    nullable = [(m.name, p.name) for m in build_method_table() for p in m.params if p.nullable]
    assert ("task.enqueue", "payload") in nullable and ("task.update", "progress") in nullable
    for key in nullable:
        assert accepts(schemas[key], None), (key, schemas[key])
    assert not accepts(schemas["task.enqueue", "kind"], None)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("workspace.list", {"limit": 0}),
        ("conversation.list", {"cursor": 5}),
        ("message.list", {"conversation_id": "x", "limit": 100_000}),
        ("task.list", {"limit": "10"}),
        ("daemon.ping", {"unknown": 1}),
    ],
)
async def test_rpc_discover_declares_the_invalid_params_error(
    rpc: Rpc, method: str, params: dict[str, Any]
) -> None:
    reply = await rpc.request(method, params)
    assert reply["error"]["code"] == -32602
    doc = await rpc.call("rpc.discover")
    (described,) = [m for m in doc["methods"] if m["name"] == method]
    assert {"code": -32602, "message": "Invalid params"} in described["errors"]
