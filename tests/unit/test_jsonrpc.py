"""The pure JSON-RPC 2.0 codec: parsing frames into requests or error replies, encoding replies."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daemon.jsonnumbers import WideNumber
from ui_bridge.jsonrpc import (
    ErrorCode,
    ErrorReply,
    Request,
    RpcError,
    encode_error,
    encode_notification,
    encode_result,
    join_batch,
    parse_frame,
)


def reply_of(item: Any) -> dict[str, Any]:
    assert isinstance(item, ErrorReply), item
    assert item.payload is not None
    return dict(orjson.loads(item.payload))


def test_single_request() -> None:
    frame = parse_frame(b'{"jsonrpc":"2.0","method":"a.b","params":{"x":1},"id":7}')
    assert not frame.is_batch
    assert frame.items == (Request("a.b", {"x": 1}, 7, False),)


def test_notification_has_no_id_member_but_null_id_is_a_request() -> None:
    (note,) = parse_frame('{"jsonrpc":"2.0","method":"m"}').items
    assert isinstance(note, Request) and note.is_notification and note.params is None
    (req,) = parse_frame('{"jsonrpc":"2.0","method":"m","id":null}').items
    assert isinstance(req, Request) and not req.is_notification and req.id is None


def test_parse_error() -> None:
    frame = parse_frame(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    reply = reply_of(frame.items[0])
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }


@pytest.mark.parametrize(
    "obj",
    [
        1,
        "x",
        None,
        {"jsonrpc": "2.0", "method": 1, "params": "bar"},
        {"jsonrpc": "1.0", "method": "m", "id": 1},
        {"method": "m", "id": 1},
        {"jsonrpc": "2.0", "method": "", "id": 1},
        {"jsonrpc": "2.0", "method": "m", "params": 3, "id": 1},
        {"jsonrpc": "2.0", "method": "m", "params": None, "id": 1},
        {"jsonrpc": "2.0", "method": "m", "id": [1]},
        {"jsonrpc": "2.0", "method": "m", "id": True},
        {"foo": "boo"},
    ],
)
def test_invalid_requests(obj: Any) -> None:
    (item,) = parse_frame(orjson.dumps(obj)).items
    reply = reply_of(item)
    assert reply["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert reply["error"]["message"] == "Invalid Request"
    assert "reason" in reply["error"]["data"]


def test_invalid_request_echoes_a_valid_id() -> None:
    (item,) = parse_frame(b'{"jsonrpc":"2.0","method":5,"id":"abc"}').items
    assert reply_of(item)["id"] == "abc"
    (item,) = parse_frame(b'{"jsonrpc":"2.0","method":5,"id":{"x":1}}').items
    assert reply_of(item)["id"] is None


def test_empty_batch_is_one_invalid_request() -> None:
    frame = parse_frame(b"[]")
    assert not frame.is_batch
    assert reply_of(frame.items[0])["error"]["code"] == -32600


def test_batch_items_are_independent() -> None:
    frame = parse_frame(
        b'[1, {"jsonrpc":"2.0","method":"m","id":2}, {"jsonrpc":"2.0","method":"n"}]'
    )
    assert frame.is_batch and len(frame.items) == 3
    assert isinstance(frame.items[0], ErrorReply)
    assert frame.items[1] == Request("m", None, 2, False)
    assert frame.items[2] == Request("n", None, None, True)


def test_join_batch() -> None:
    assert join_batch([]) is None
    assert orjson.loads(join_batch([b"1", b"2"]) or b"") == [1, 2]


def test_encoders() -> None:
    assert orjson.loads(encode_result("x", [1])) == {"jsonrpc": "2.0", "result": [1], "id": "x"}
    error = RpcError(ErrorCode.NOT_FOUND, data={"id": "q"})
    assert orjson.loads(encode_error(3, error)) == {
        "jsonrpc": "2.0",
        "error": {"code": -32001, "message": "Not found", "data": {"id": "q"}},
        "id": 3,
    }
    assert orjson.loads(encode_notification("event", {"a": 1})) == {
        "jsonrpc": "2.0",
        "method": "event",
        "params": {"a": 1},
    }


def test_unencodable_error_data_is_dropped_not_raised() -> None:
    payload = orjson.loads(encode_error(1, RpcError(-32603, data={"x": object()})))
    assert payload["error"] == {"code": -32603, "message": "Internal error"}


def test_error_codes_match_the_architecture() -> None:
    assert {c.name: int(c) for c in ErrorCode} == {
        "PARSE_ERROR": -32700,
        "INVALID_REQUEST": -32600,
        "METHOD_NOT_FOUND": -32601,
        "INVALID_PARAMS": -32602,
        "INTERNAL_ERROR": -32603,
        "NOT_FOUND": -32001,
        "CONFLICT": -32002,
        "CLOUD_NOT_CONFIGURED": -32003,
        "LOGIN_REQUIRED": -32004,
        "RATE_LIMITED": -32005,
        "REJECTED_BY_POLICY": -32006,
        "SHUTTING_DOWN": -32010,
    }


@pytest.mark.parametrize(
    "raw",
    [b"[" * 5000, b'"\\ud800', b"\xff\xfe", b"NaN", b"", b"  ", b"[1e400", b'["\\ud800",1e400'],
)
def test_hostile_input_is_a_parse_error(raw: bytes) -> None:
    (item,) = parse_frame(raw).items
    assert reply_of(item)["error"]["code"] == -32700


def test_a_number_beyond_the_double_range_is_json_not_a_parse_error() -> None:
    """orjson refuses 1e400 as if it were not JSON; JSON allows any number."""
    (item,) = parse_frame(b"1e400").items  # valid JSON, but not a request
    assert reply_of(item)["error"]["code"] == -32600
    frame = parse_frame(b'{"jsonrpc":"2.0","method":"m","params":[1e400,-1E+999],"id":7}')
    (request,) = frame.items
    assert isinstance(request, Request) and request.id == 7
    assert request.params == [WideNumber("1e400"), WideNumber("-1E+999")]  # refused by spec.py


@pytest.mark.parametrize(
    "literal",
    ["18446744073709551616", "-9223372036854775809", "1" + "0" * 40, "1.8446744073709552e+19"],
)
def test_an_id_orjson_would_round_is_echoed_as_sent(literal: str) -> None:
    frame = parse_frame(f'{{"jsonrpc":"2.0","method":"m","id":{literal}}}'.encode())
    (item,) = frame.items
    assert isinstance(item, Request) and not item.is_notification
    assert (
        encode_result(item.id, None) == f'{{"jsonrpc":"2.0","result":null,"id":{literal}}}'.encode()
    )
    error = encode_error(item.id, RpcError(ErrorCode.INTERNAL_ERROR))
    assert error.endswith(f',"id":{literal}}}'.encode())


def test_wide_ids_in_a_batch_keep_the_other_items_as_they_are() -> None:
    frame = parse_frame(
        '[{"jsonrpc":"2.0","method":"m","id":18446744073709551616},'
        '{"jsonrpc":"2.0","method":"m","params":{"n":100000000000000000000},"id":2},'
        '{"jsonrpc":"2.0","method":"m","id":true}]'
    )
    first, second, third = frame.items
    assert frame.is_batch and isinstance(first, Request) and isinstance(second, Request)
    assert encode_result(first.id, 1) == b'{"jsonrpc":"2.0","result":1,"id":18446744073709551616}'
    assert second.id == 2 and second.params == {"n": 10**20}  # exact: spec.py refuses it
    assert reply_of(third)["error"]["code"] == -32600


def test_ids_within_64_bits_stay_plain_values() -> None:
    for literal, value in [("18446744073709551615", 2**64 - 1), ("-9223372036854775808", -(2**63)),
                           ("9.2e18", 9.2e18), ("1.0", 1.0)]:  # fmt: skip
        (item,) = parse_frame(f'{{"jsonrpc":"2.0","method":"m","id":{literal}}}').items
        assert isinstance(item, Request) and item.id == value and type(item.id) is type(value)


def test_valid_json_holding_a_lone_surrogate_is_not_a_parse_error() -> None:
    """RFC 8259 allows ``"\\ud800"``; orjson refuses it as if it were not JSON."""
    (item,) = parse_frame(b'"\\ud800"').items  # valid JSON, but not a request
    assert reply_of(item)["error"]["code"] == -32600
    frame = parse_frame(b'["\\ud800",1e400]')
    assert frame.is_batch and [reply_of(i)["error"]["code"] for i in frame.items] == [-32600] * 2


def _lone(params: str, req_id: str = "7") -> dict[str, Any]:
    raw = f'{{"jsonrpc":"2.0","method":"m","params":{params},"id":{req_id}}}'
    (item,) = parse_frame(raw.encode()).items
    return reply_of(item)


@pytest.mark.parametrize(
    ("params", "field", "where"),
    [
        ('{"content":"ab\\ud83d"}', "content", ""),
        ('{"ok":"x","p":{"d":[1,"\\udc00"]}}', "p", " at d[1]"),
        ('{"p":{"a":{"\\ud800":1}}}', "p", " in a key of a"),
        ('{"\\ud800":1}', "params", " in a param's name"),
        ('["fine",["\\ud800"]]', "params", " at [1][0]"),
    ],
)
def test_a_lone_surrogate_in_params_is_invalid_params_naming_where(
    params: str, field: str, where: str
) -> None:
    reply = _lone(params)
    assert reply["id"] == 7
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["field"] == field
    reason = reply["error"]["data"]["reason"]
    assert reason.startswith("must not contain a lone UTF-16 surrogate") and reason.endswith(where)


def test_a_lone_surrogate_in_the_method_or_id_is_an_invalid_request() -> None:
    raw = b'{"jsonrpc":"2.0","method":"m\\ud800","id":1e400}'
    (item,) = parse_frame(raw).items
    assert isinstance(item, ErrorReply) and item.payload is not None
    assert item.payload.endswith(b',"id":1e400}')  # echoed as sent on this path too
    reply = reply_of(parse_frame(raw.replace(b"1e400", b"3")).items[0])
    assert reply["error"]["code"] == -32600 and "method" in reply["error"]["data"]["reason"]
    reply = _lone("{}", req_id='"\\ud800"')
    assert reply["error"]["code"] == -32600 and reply["id"] is None  # cannot be echoed


def test_a_notification_holding_a_lone_surrogate_gets_no_reply() -> None:
    (item,) = parse_frame(b'{"jsonrpc":"2.0","method":"m","params":["\\ud800"]}').items
    assert item == ErrorReply(None)
    frame = parse_frame(
        b'[{"jsonrpc":"2.0","method":"m","params":["\\ud800"]},'
        b'{"jsonrpc":"2.0","method":"ok","params":["fine"],"id":1}]'
    )
    assert frame.items == (ErrorReply(None), Request("ok", ["fine"], 1, False))
