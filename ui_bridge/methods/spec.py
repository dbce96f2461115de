"""The method table: one declaration per method that both validates calls and documents them.

A ``Method`` lists its ``Param``s; ``bind_params`` checks a call's params against them (by name
or by position) with precompiled per-parameter checks, and ``MethodTable.openrpc`` renders the
same declarations as an OpenRPC document for ``rpc.discover``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from daemon.jsonnumbers import INT64_MAX, INT64_MIN, WIDE_NUMBER, is_wide, wide_path
from ui_bridge.jsonrpc import ErrorCode, RpcError

__all__ = [
    "CURSOR_PARAM",
    "PAGE_RESULT",
    "ListPage",
    "Method",
    "MethodTable",
    "Param",
    "bind_params",
    "invalid_params",
    "limit_param",
    "page_result",
]

ParamType = Literal["string", "integer", "number", "boolean", "object", "array", "any"]
Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]

MAX_JSON_DEPTH: Final = 32
MAX_STRING: Final = 1 << 20


def invalid_params(field_name: str, reason: str) -> RpcError:
    """The -32602 error, with ``data`` naming the offending field."""
    return RpcError(ErrorCode.INVALID_PARAMS, data={"field": field_name, "reason": reason})


@dataclass(frozen=True)
class Param:
    """One named parameter. ``nullable`` allows JSON null; ``items`` types array elements."""

    name: str
    type: ParamType
    required: bool = False
    description: str = ""
    nullable: bool = False
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] | None = None
    items: ParamType | None = None
    max_items: int | None = None

    def check(self, value: Any) -> str | None:
        """``None`` if ``value`` is acceptable, else the reason it is not."""
        if value is None:
            return None if self.nullable else "must not be null"
        return _CHECKS[self.type](self, value)

    def schema(self) -> dict[str, Any]:
        """This parameter as a JSON Schema."""
        schema: dict[str, Any] = {} if self.type == "any" else {"type": self.type}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.max_length is not None or self.type == "string":
            schema["maxLength"] = self.max_length or MAX_STRING  # (what the check enforces)
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.items is not None:
            schema["items"] = {} if self.items == "any" else {"type": self.items}
        if self.max_items is not None:
            schema["maxItems"] = self.max_items
        if self.nullable:
            # anyOf, not oneOf: null must match exactly one oneOf branch, and {} ("any") too
            # matches it, so a validator would refuse null.
            return schema if not schema else {"anyOf": [schema, {"type": "null"}]}
        return schema


def _check_string(p: Param, v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a string"
    if len(v) > (p.max_length or MAX_STRING):
        return f"must be at most {p.max_length or MAX_STRING} characters"
    if p.enum is not None and v not in p.enum:
        return "must be one of " + ", ".join(p.enum)
    return None


def _check_integer(p: Param, v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return "must be an integer"
    low = INT64_MIN if p.minimum is None else p.minimum
    high = INT64_MAX if p.maximum is None else p.maximum
    if not low <= v <= high:
        return f"must be between {low} and {high}"
    return None


def _check_number(p: Param, v: Any) -> str | None:
    if is_wide(v):  # (also a number beyond the double range: jsonnumbers.WideNumber)
        return WIDE_NUMBER
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "must be a number"
    if isinstance(v, float):
        return None
    return _check_integer(p, v)


def _check_boolean(p: Param, v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be a boolean"


def _check_object(p: Param, v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be an object"
    return _check_json(v)


def _check_array(p: Param, v: Any) -> str | None:
    if not isinstance(v, list):
        return "must be an array"
    if p.max_items is not None and len(v) > p.max_items:
        return f"must have at most {p.max_items} items"
    if p.items is not None and p.items != "any":
        item = Param(p.name, p.items)
        for element in v:
            reason = item.check(element) if element is not None else "must not contain null"
            if reason is not None:
                return "items " + reason
    return _check_json(v)


def _check_any(p: Param, v: Any) -> str | None:
    return _check_json(v)


def _check_json(value: Any) -> str | None:
    """Bound nesting (the encoder has a depth limit) and number range (daemon/jsonnumbers.py).

    A number of 2**63 or more (in magnitude) is refused whether it came as an integer or as a
    float: orjson turns an integer beyond 64 bits into the nearest float, so the two cannot be
    told apart here, and storing that float would change the value the client sent. (JSON has a
    single number type: 1e20 and 100000000000000000000 are the same number, and JavaScript
    writes the latter for it.) Checking the frame's text instead would cost every request. A
    number beyond the double range (1e400) is refused alike (jsonrpc.py decodes it as a
    ``WideNumber`` rather than answering a parse error for valid JSON).
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"must not nest deeper than {MAX_JSON_DEPTH} levels"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif is_wide(item):
            return _wide_at(value)
    return None


def _wide_at(value: Any) -> str:
    """WIDE_NUMBER, naming where in ``value`` such a number is (walked again only on refusal)."""
    path = wide_path(value)
    return f"{WIDE_NUMBER} at {path}" if path else WIDE_NUMBER


_CHECKS: Final[dict[str, Callable[[Param, Any], str | None]]] = {
    "string": _check_string,
    "integer": _check_integer,
    "number": _check_number,
    "boolean": _check_boolean,
    "object": _check_object,
    "array": _check_array,
    "any": _check_any,
}


@dataclass(frozen=True)
class Method:
    """A method: its name, handler ``(ctx, params) -> result``, parameters and documentation."""

    name: str
    handler: Handler
    params: tuple[Param, ...] = ()
    summary: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.params})


def bind_params(method: Method, raw: dict[str, Any] | list[Any] | None) -> dict[str, Any]:
    """Validate a call's params; return them by name. Raises ``RpcError`` (-32602)."""
    if raw is None:
        named: dict[str, Any] = {}
    elif isinstance(raw, list):
        if len(raw) > len(method.params):
            raise invalid_params("params", f"at most {len(method.params)} positional params")
        named = {p.name: v for p, v in zip(method.params, raw, strict=False)}
    else:
        named = raw
    by_name = method.by_name
    for key, value in named.items():
        spec = by_name.get(key)
        if spec is None:
            raise invalid_params(key, "unknown parameter")
        reason = spec.check(value)
        if reason is not None:
            raise invalid_params(key, reason)
    for spec in method.params:
        if spec.required and spec.name not in named:
            raise invalid_params(spec.name, "is required")
    return named


# -- lists: keyset pages --------------------------------------------------------------------


class ListPage(Protocol):
    """One page of a list as the store returns it (``daemon.store.base.Page``)."""

    @property
    def items(self) -> list[dict[str, Any]]: ...

    @property
    def next_cursor(self) -> str | None: ...


def limit_param(default: int, maximum: int = 1000) -> Param:
    """A list's ``limit``: a page also ends early once its items hold 8 MiB of text
    (daemon/store/base.py ``PAGE_BYTES``), so the description does not promise a page size."""
    return Param(
        "limit",
        "integer",
        minimum=1,
        maximum=maximum,
        description=f"at most this many items (default {default}); a page may hold fewer:"
        " follow next_cursor until it is null",
    )


CURSOR_PARAM: Final = Param(
    "cursor",
    "string",
    nullable=True,
    max_length=1_000,
    description="next_cursor of the previous page of this list, with the same filters"
    " (another list's is refused: -32602)",
)
PAGE_RESULT: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"oneOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["items", "next_cursor"],
}


def page_result(page: ListPage) -> dict[str, Any]:
    """A list method's result: ``{items, next_cursor}`` (``null`` on the last page)."""
    return {"items": page.items, "next_cursor": page.next_cursor}


class MethodTable:
    """Every method the API serves: dispatch looks methods up here, ``rpc.discover`` lists it."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(self, method: Method) -> None:
        """Register a method; names are unique."""
        if method.name in self._methods:
            raise ValueError(f"method {method.name!r} already registered")
        self._methods[method.name] = method

    def get(self, name: str) -> Method | None:
        """The method called ``name``, if any."""
        return self._methods.get(name)

    def __iter__(self) -> Iterator[Method]:
        return iter(self._methods.values())

    def __len__(self) -> int:
        return len(self._methods)

    def openrpc(self, *, title: str, version: str) -> dict[str, Any]:
        """An OpenRPC 1.2.6 document describing every method."""
        return {
            "openrpc": "1.2.6",
            "info": {"title": title, "version": version},
            "methods": [_describe(m) for m in sorted(self, key=lambda m: m.name)],
        }


def _describe(method: Method) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": method.name,
        "summary": method.summary,
        "paramStructure": "either",
        "params": [
            {
                "name": p.name,
                "required": p.required,
                "description": p.description,
                "schema": p.schema(),
            }
            for p in method.params
        ],
        "result": {"name": "result", "schema": method.result},
    }
    # bind_params refuses unknown, missing and ill-typed params (-32602) for every method
    errors = {*method.errors, ErrorCode.INVALID_PARAMS}
    doc["errors"] = [{"code": code, "message": RpcError(code).message} for code in sorted(errors)]
    return doc
