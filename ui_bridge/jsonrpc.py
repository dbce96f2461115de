"""JSON-RPC 2.0 codec (pure: no I/O, no clock).

https://www.jsonrpc.org/specification. ``parse_frame`` turns one WebSocket frame into either a
single item or a batch of items; each item is a valid ``Request`` or an ``ErrorReply`` that the
caller sends back unchanged. ``encode_result`` / ``encode_error`` produce the reply bytes and
``join_batch`` the reply to a batch. A batch whose items are all notifications gets no reply at
all, and an empty batch is itself an Invalid Request.

Error codes: the standard ones (-32700 … -32603) plus the application codes fixed by
ARCHITECTURE.md ("Public interfaces").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, Final, NamedTuple

import orjson

from daemon import jsonnumbers
from daemon.jsonmaps import text_at
from daemon.jsonnumbers import WideNumber

__all__ = [
    "ErrorCode",
    "ErrorReply",
    "Frame",
    "Request",
    "RpcError",
    "encode_error",
    "encode_notification",
    "encode_result",
    "join_batch",
    "parse_frame",
]


class ErrorCode(IntEnum):
    """Every error code the local API answers with."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    NOT_FOUND = -32001
    CONFLICT = -32002
    CLOUD_NOT_CONFIGURED = -32003
    LOGIN_REQUIRED = -32004
    RATE_LIMITED = -32005
    REJECTED_BY_POLICY = -32006
    SHUTTING_DOWN = -32010


DEFAULT_MESSAGES: Final[dict[int, str]] = {
    ErrorCode.PARSE_ERROR: "Parse error",
    ErrorCode.INVALID_REQUEST: "Invalid Request",
    ErrorCode.METHOD_NOT_FOUND: "Method not found",
    ErrorCode.INVALID_PARAMS: "Invalid params",
    ErrorCode.INTERNAL_ERROR: "Internal error",
    ErrorCode.NOT_FOUND: "Not found",
    ErrorCode.CONFLICT: "Conflict",
    ErrorCode.CLOUD_NOT_CONFIGURED: "Cloud not configured",
    ErrorCode.LOGIN_REQUIRED: "Cloud login required",
    ErrorCode.RATE_LIMITED: "Rate limited",
    ErrorCode.REJECTED_BY_POLICY: "Rejected by policy",
    ErrorCode.SHUTTING_DOWN: "Shutting down",
}

#: An id beyond what orjson holds exactly is echoed as its JSON text (an ``orjson.Fragment``).
RequestId = str | int | float | orjson.Fragment | None

#: orjson parses an integer in [-2**63, 2**64 - 1] to an exact int, one beyond to the nearest
#: float: a float this large (in magnitude) may have been such an integer (an id here, a param
#: in methods/spec.py). daemon/jsonnumbers.py states the rule.
WIDE_FLOAT: Final = jsonnumbers.WIDE_FLOAT


class RpcError(Exception):
    """An error that travels to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str | None = None, data: Any = None) -> None:
        self.code = int(code)
        self.message = message if message is not None else DEFAULT_MESSAGES.get(code, "Error")
        self.data = data
        super().__init__(self.code, self.message)

    def to_object(self) -> dict[str, Any]:
        """The ``error`` member of a response."""
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj


# Request, ErrorReply and Frame are NamedTuples: immutable, and built once per frame on the hot
# path (a frozen dataclass's __init__ costs a setattr call per field).


class Request(NamedTuple):
    """A well-formed request or notification (``is_notification``: no ``id`` member)."""

    method: str
    params: dict[str, Any] | list[Any] | None
    id: RequestId
    is_notification: bool


class ErrorReply(NamedTuple):
    """An item that failed before dispatch; ``payload`` is the encoded error response, or None
    for a notification (never answered, even when refused)."""

    payload: bytes | None


Item = Request | ErrorReply


class Frame(NamedTuple):
    """One decoded frame: ``items`` plus whether it was a batch (replies must be an array)."""

    items: tuple[Item, ...]
    is_batch: bool


#: orjson's reason for refusing text holding a lone surrogate (its messages say "surrogate").
_SURROGATE: Final = "surrogate"
#: Why such text is refused (then where it is, as daemon/store/base.py's NUL_TEXT).
LONE_SURROGATE: Final = (
    "must not contain a lone UTF-16 surrogate (half of a character, such as an emoji cut in"
    " two): UTF-8 cannot carry it"
)


class _WideId(Exception):
    """A numeric id orjson may have rounded: the frame is decoded again, exactly."""


def parse_frame(data: bytes | str) -> Frame:
    """Decode one frame. Never raises: malformed input becomes ``ErrorReply`` items.

    Valid JSON is never a parse error for its numbers: a frame orjson refuses only because a
    number is beyond the double range (``1e400``) is decoded exactly (``_frame_with_exact_ids``);
    such a number in params is then refused as invalid params (methods/spec.py). Nor for text
    holding a lone surrogate (``_frame_with_lone_surrogates``)."""
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if jsonnumbers.is_number_error(exc):
            return _frame_with_exact_ids(data)
        if _SURROGATE in exc.msg:
            return _frame_with_lone_surrogates(data)
        return Frame((ErrorReply(encode_error(None, RpcError(ErrorCode.PARSE_ERROR))),), False)
    try:
        return _frame(decoded)
    except _WideId:  # rare: only a float id of 2**63 or more pays for this
        return _frame_with_exact_ids(data)


def _frame(decoded: Any) -> Frame:
    if isinstance(decoded, list):
        if not decoded:
            return Frame((_invalid(None, "empty batch"),), False)
        return Frame(tuple(parse_item(entry) for entry in decoded), True)
    return Frame((parse_item(decoded),), False)


def _frame_with_lone_surrogates(data: bytes | str) -> Frame:
    """A frame orjson refused for text holding a lone surrogate: each request holding one is
    refused on its own, with its id, so the client can tell which call failed and why.

    ``"\\ud83d"`` is valid JSON (RFC 8259 7 allows it) that UTF-8, and so the store and the
    cloud, cannot carry: JavaScript's ``JSON.stringify`` writes it for a string cut in the middle
    of an emoji's surrogate pair, as an editor may. Answering a parse error (id null) would
    leave that client waiting for its reply. In params: -32602 naming the param and where in
    it; in the method: -32600; in the id: -32600 with id null (it cannot be echoed). A
    notification gets no reply, as always. The other requests of a batch run as usual.
    """
    try:
        decoded = jsonnumbers.loads_exact(data, lone_surrogates=True)
    except ValueError:  # (what orjson refused for another reason too)
        return Frame((ErrorReply(encode_error(None, RpcError(ErrorCode.PARSE_ERROR))),), False)
    objects = decoded if isinstance(decoded, list) else (decoded,)
    for obj in objects:
        if isinstance(obj, dict):
            _exact_id(obj)
    frame = _frame(decoded)
    if not isinstance(decoded, list):
        return Frame((_without_lone_surrogates(frame.items[0], decoded),), False)
    if not decoded:
        return frame
    pairs = zip(frame.items, decoded, strict=True)
    return Frame(tuple(_without_lone_surrogates(item, obj) for item, obj in pairs), True)


def _without_lone_surrogates(item: Item, obj: Any) -> Item:
    """``item`` (decoded from ``obj``), or its refusal if it holds a lone surrogate where it
    matters."""
    if not isinstance(item, Request):
        return item
    if isinstance(item.id, str) and not jsonnumbers.is_utf8(item.id):
        return _invalid(None, f"the id {LONE_SURROGATE}")
    if not jsonnumbers.is_utf8(item.method):
        error = RpcError(ErrorCode.INVALID_REQUEST, data={"reason": f"the method {LONE_SURROGATE}"})
    else:
        found = _lone_surrogate_param(obj.get("params"))
        if found is None:
            return item
        name, where = found
        reason = f"{LONE_SURROGATE} {where}".rstrip()
        error = RpcError(ErrorCode.INVALID_PARAMS, data={"field": name, "reason": reason})
    return ErrorReply(None if item.is_notification else encode_error(item.id, error))


def _lone(text: str) -> bool:
    return not jsonnumbers.is_utf8(text)


def _lone_surrogate_param(params: Any) -> tuple[str, str] | None:
    """(the param, where in it) of the first text holding a lone surrogate, or None. The param
    is named (``params`` for positional ones, or for a name holding one); where: "at a.b[0]",
    "in a key of a", "" for the value itself."""
    if isinstance(params, dict):
        if any(_lone(key) for key in params):
            return "params", "in a param's name"  # (that name cannot be sent back)
        for name, value in params.items():
            where = text_at(value, _lone)
            if where is not None:
                return name, where
        return None
    if isinstance(params, list):
        where = text_at(params, _lone)
        return None if where is None else ("params", where)
    return None


def _frame_with_exact_ids(data: bytes | str) -> Frame:
    """The frame decoded exactly (``jsonnumbers.loads_exact``: the standard library, integers
    exact, numbers beyond the double range as their text).

    A request's id must come back as the same value (JSON-RPC 2.0, 5), and 2**64 or 1e400 is a
    valid JSON number and id: such an id is echoed as the JSON text it was sent as, rather than
    refused, so a client whose ids are big integers (Python) gets its own id back, and one that
    sends a double (JavaScript) reads the same double. Params holding such numbers are refused
    later (-32602, methods/spec.py) as before. The frame is valid JSON but for its numbers
    (orjson took it, or refused only a number), so this decodes it to the same values but for
    those numbers.
    """
    try:
        decoded = jsonnumbers.loads_exact(data)
    except ValueError:  # (what orjson refused for another reason too)
        return Frame((ErrorReply(encode_error(None, RpcError(ErrorCode.PARSE_ERROR))),), False)
    for obj in decoded if isinstance(decoded, list) else (decoded,):
        if isinstance(obj, dict):
            _exact_id(obj)
    return _frame(decoded)


def _exact_id(obj: dict[str, Any]) -> None:
    """A numeric id beyond what orjson holds becomes the JSON text it was sent as."""
    req_id = obj.get("id")
    if isinstance(req_id, WideNumber):
        obj["id"] = orjson.Fragment(req_id.text)
    elif isinstance(req_id, int | float) and not isinstance(req_id, bool):
        if not -WIDE_FLOAT < req_id < WIDE_FLOAT:
            obj["id"] = orjson.Fragment(json.dumps(req_id))


def parse_item(obj: Any) -> Item:
    """Validate one request object (a decoded JSON value)."""
    if not isinstance(obj, dict):
        return _invalid(None, "a request must be an object")
    has_id = "id" in obj
    req_id = obj.get("id")
    if has_id and not _is_valid_id(req_id):
        return _invalid(None, "id must be a string, a number or null")
    reply_id = req_id if has_id else None
    if obj.get("jsonrpc") != "2.0":
        return _invalid(reply_id, 'jsonrpc must be exactly "2.0"')
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        return _invalid(reply_id, "method must be a non-empty string")
    params = obj.get("params")
    if "params" in obj and not isinstance(params, dict | list):
        return _invalid(reply_id, "params must be an object or an array")
    return Request(method=method, params=params, id=req_id, is_notification=not has_id)


def _is_valid_id(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return not isinstance(value, bool)
    if isinstance(value, float):
        if not -WIDE_FLOAT < value < WIDE_FLOAT:
            raise _WideId
        return True
    return isinstance(value, orjson.Fragment)  # set only by _frame_with_exact_ids


def _invalid(req_id: RequestId, reason: str) -> ErrorReply:
    error = RpcError(ErrorCode.INVALID_REQUEST, data={"reason": reason})
    return ErrorReply(encode_error(req_id, error))


def encode_result(req_id: RequestId, result: Any) -> bytes:
    """A success response. Raises ``TypeError`` (orjson) if ``result`` is not JSON-able."""
    return orjson.dumps({"jsonrpc": "2.0", "result": result, "id": req_id})


def encode_error(req_id: RequestId, error: RpcError) -> bytes:
    """An error response; ``data`` that cannot be encoded is dropped rather than failing."""
    try:
        return orjson.dumps({"jsonrpc": "2.0", "error": error.to_object(), "id": req_id})
    except TypeError:
        bare = {"code": error.code, "message": error.message}
        return orjson.dumps({"jsonrpc": "2.0", "error": bare, "id": req_id})


def encode_notification(method: str, params: dict[str, Any]) -> bytes:
    """A notification from the server (no ``id``)."""
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})


def join_batch(replies: Sequence[bytes]) -> bytes | None:
    """The reply to a batch: a JSON array of the replies, or nothing if there are none."""
    if not replies:
        return None
    return b"[" + b",".join(replies) + b"]"
