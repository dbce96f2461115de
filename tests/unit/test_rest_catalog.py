"""devcloud.rest.catalog: pg_proc rows → Function signatures (the row decoding is pure)."""

from __future__ import annotations

from typing import Any

from devcloud.rest.catalog import _function
from devcloud.rest.rpc import Argument
from devcloud.rest.sql import Column


def proc(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "returns_set": False,
        "nargs": 0,
        "ndefaults": 0,
        "arg_names": [],
        "arg_modes": [],
        "arg_types": [],
        "ret_name": "int4",
        "ret_type": "b",
        "ret_columns": [],
        "ret_column_types": [],
    }
    row.update(fields)
    return row


def test_scalar_with_defaults() -> None:
    fn = _function(
        "public",
        "add",
        proc(arg_names=["a", "b"], arg_types=["integer", "integer"], ndefaults=1),
    )
    assert fn is not None and fn.kind == "scalar" and not fn.returns_set
    assert fn.args == (Argument("a", "integer"), Argument("b", "integer", has_default=True))
    assert fn.accepts({"a"}) and fn.accepts({"a", "b"}) and not fn.accepts({"b"})


def test_table_returning_function_has_result_columns_and_input_args_only() -> None:
    fn = _function(
        "public",
        "pull",
        proc(
            returns_set=True,
            arg_names=["cursor", "id", "body"],
            arg_modes=["i", "t", "t"],
            arg_types=["text", "uuid", "jsonb"],
            ret_name="record",
            ret_type="p",
        ),
    )
    assert fn is not None and fn.kind == "composite" and fn.returns_set
    assert fn.args == (Argument("cursor", "text"),)
    assert dict(fn.columns) == {"id": Column("id", "uuid"), "body": Column("body", "jsonb")}


def test_composite_type_and_void_and_positional_only() -> None:
    rows = _function(
        "public",
        "notes",
        proc(ret_name="notes", ret_type="c", ret_columns=["id"], ret_column_types=["integer"]),
    )
    assert rows is not None and rows.kind == "composite" and list(rows.columns) == ["id"]
    void = _function("public", "v", proc(ret_name="void", ret_type="p"))
    assert void is not None and void.kind == "void"
    assert _function("public", "p", proc(arg_types=["integer"], arg_names=[])) is None


def test_single_out_parameter_is_a_scalar() -> None:
    fn = _function(
        "public",
        "one",
        proc(arg_names=["x"], arg_modes=["o"], arg_types=["integer"], ret_name="int4"),
    )
    assert fn is not None and fn.kind == "scalar" and fn.args == ()
