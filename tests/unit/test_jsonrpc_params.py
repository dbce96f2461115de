"""The declarative parameter specs: validation (by name and by position) and OpenRPC output."""

from __future__ import annotations

from typing import Any

import pytest

from ui_bridge.jsonrpc import RpcError
from ui_bridge.methods import Method, MethodTable, Param, bind_params, build_method_table
from ui_bridge.methods.spec import MAX_STRING


async def _noop(ctx: Any, params: dict[str, Any]) -> Any:
    return None


METHOD = Method(
    "thing.make",
    _noop,
    (
        Param("name", "string", required=True, max_length=5),
        Param("count", "integer", minimum=0, maximum=10),
        Param("kind", "string", enum=("a", "b")),
        Param("tags", "array", items="string", max_items=2),
        Param("meta", "object", nullable=True),
        Param("flag", "boolean"),
        Param("ratio", "number"),
        Param("blob", "any"),
    ),
)


def field_of(raw: Any) -> tuple[str, str]:
    with pytest.raises(RpcError) as info:
        bind_params(METHOD, raw)
    assert info.value.code == -32602
    return info.value.data["field"], info.value.data["reason"]


def test_valid_by_name_and_by_position() -> None:
    assert bind_params(METHOD, {"name": "x", "count": 3}) == {"name": "x", "count": 3}
    assert bind_params(METHOD, ["x", 3, "a"]) == {"name": "x", "count": 3, "kind": "a"}
    assert bind_params(Method("m", _noop), None) == {}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "name"),
        ({"name": 1}, "name"),
        ({"name": "toolong"}, "name"),
        ({"name": None}, "name"),
        ({"name": "x", "count": True}, "count"),
        ({"name": "x", "count": 1.0}, "count"),
        ({"name": "x", "count": 11}, "count"),
        ({"name": "x", "count": -1}, "count"),
        ({"name": "x", "kind": "c"}, "kind"),
        ({"name": "x", "tags": ["a", 1]}, "tags"),
        ({"name": "x", "tags": ["a", None]}, "tags"),
        ({"name": "x", "tags": ["a", "b", "c"]}, "tags"),
        ({"name": "x", "meta": []}, "meta"),
        ({"name": "x", "flag": 0}, "flag"),
        ({"name": "x", "ratio": "1"}, "ratio"),
        ({"name": "x", "ratio": 2**64}, "ratio"),
        ({"name": "x", "blob": {"a": 2**64}}, "blob"),
        ({"name": "x", "blob": {"a": [1e19]}}, "blob"),  # maybe 10**19 as orjson parses it
        ({"name": "x", "blob": -(2.0**63)}, "blob"),
        ({"name": "x", "ratio": 1e30}, "ratio"),
        ({"name": "x", "other": 1}, "other"),
        (["x", 1, "a", [], None, True, 1.0, 1, "extra"], "params"),
    ],
)
def test_invalid_params_name_the_field(raw: Any, field: str) -> None:
    assert field_of(raw)[0] == field


def test_json_nesting_is_bounded() -> None:
    deep: Any = 0
    for _ in range(40):
        deep = {"k": deep}
    field, reason = field_of({"name": "x", "blob": deep})
    assert field == "blob" and "nest" in reason
    shallow: Any = 0
    for _ in range(20):
        shallow = [shallow]
    assert bind_params(METHOD, {"name": "x", "blob": shallow})["blob"] == shallow


def test_numbers_beyond_64_bits_are_refused_naming_where() -> None:
    field, reason = field_of({"name": "x", "blob": {"a": [0, {"b": 1e30}]}})
    assert field == "blob" and "64-bit" in reason and "at a[1].b" in reason
    ok = {"name": "x", "blob": [2**63 - 1, -(2**63), 9.2e18, -9.2e18, 0.5], "ratio": 1e18}
    assert bind_params(METHOD, ok) == ok


def test_nullable_accepts_null() -> None:
    assert bind_params(METHOD, {"name": "x", "meta": None}) == {"name": "x", "meta": None}


def test_openrpc_document_mirrors_the_declarations() -> None:
    table = MethodTable()
    table.add(METHOD)
    doc = table.openrpc(title="t", version="1")
    assert doc["openrpc"] == "1.2.6" and doc["info"] == {"title": "t", "version": "1"}
    (method,) = doc["methods"]
    params = {p["name"]: p for p in method["params"]}
    assert params["name"] == {
        "name": "name",
        "required": True,
        "description": "",
        "schema": {"type": "string", "maxLength": 5},
    }
    assert params["count"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 10}
    assert params["tags"]["schema"] == {"type": "array", "items": {"type": "string"}, "maxItems": 2}
    assert params["meta"]["schema"] == {"anyOf": [{"type": "object"}, {"type": "null"}]}
    assert params["blob"]["schema"] == {}


def test_duplicate_method_names_are_refused() -> None:
    table = MethodTable()
    table.add(METHOD)
    with pytest.raises(ValueError):
        table.add(METHOD)


def test_the_api_table_has_every_method_of_the_brief() -> None:
    names = {m.name for m in build_method_table()}
    expected = {"daemon.ping", "daemon.status", "subscribe", "unsubscribe", "rpc.discover"}
    for entity, verbs in {
        "workspace": ("create", "get", "list", "update", "delete"),
        "conversation": ("create", "get", "list", "update", "delete"),
        "task": ("enqueue", "get", "list", "update", "cancel"),
        "message": ("send", "list"),
        "doc": ("open", "update", "get"),
    }.items():
        expected |= {f"{entity}.{verb}" for verb in verbs}
    assert expected <= names, sorted(expected - names)


def test_every_string_param_states_in_openrpc_the_length_it_is_held_to() -> None:
    """A string without its own max_length is held to MAX_STRING all the same: rpc.discover
    said nothing of it, so an editor could not know that an update of ~768 KiB of Yjs (1 MiB
    of base64) is the most doc.update takes."""
    free = Method("thing.note", _noop, (Param("text", "string", required=True),))
    assert free.params[0].schema() == {"type": "string", "maxLength": MAX_STRING}
    assert bind_params(free, {"text": "x" * MAX_STRING}) == {"text": "x" * MAX_STRING}
    with pytest.raises(RpcError) as refused:
        bind_params(free, {"text": "x" * (MAX_STRING + 1)})
    assert refused.value.data["field"] == "text"
    table = build_method_table()
    for method in table:
        for param in method.params:
            if param.type == "string":
                schema = param.schema()
                string = schema["anyOf"][0] if "anyOf" in schema else schema  # (nullable)
                assert string["maxLength"] == (param.max_length or MAX_STRING), param.name
    docs = {m["name"]: m for m in table.openrpc(title="t", version="1")["methods"]}
    (update,) = [p for p in docs["doc.update"]["params"] if p["name"] == "update"]
    assert update["schema"]["maxLength"] == MAX_STRING and "1 MiB" in update["description"]
