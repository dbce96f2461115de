"""Which JSON numbers the daemon keeps, and decoding JSON whose numbers orjson cannot hold
(daemon/jsonnumbers.py, pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daemon.jsonnumbers import (
    MAX_STORED_DEPTH,
    WideNumber,
    cut_deep,
    has_wide,
    is_wide,
    loads,
    loads_exact,
    too_deep,
    wide_path,
)


@pytest.mark.parametrize(
    ("value", "wide"),
    [
        (2**63 - 1, False),
        (-(2**63), False),
        (2**63, True),
        (-(2**63) - 1, True),
        (9.2e18, False),
        (9.3e18, True),
        (-1e20, True),
        (1.5, False),
        (float("inf"), True),
        (True, False),
        ("18446744073709551616", False),
        (WideNumber("1e400"), True),
    ],
)
def test_is_wide(value: Any, wide: bool) -> None:
    assert is_wide(value) is wide
    nested = {"a": [1, {"b": value}], "c": "text", "d": None}
    assert has_wide(nested) is wide and has_wide(value) is wide
    assert (wide_path(nested) == "a[1].b") is wide


def test_wide_path_names_where() -> None:
    assert wide_path({"a": [1, {"b": 2**64}]}) == "a[1].b"
    assert wide_path(1e20) == ""
    assert wide_path({"a": [1, "x", None, 2.5]}) is None


def test_loads_is_orjson_but_for_numbers_beyond_the_double_range() -> None:
    assert loads(b'{"n":[1,2.5,18446744073709551616]}') == orjson.loads(
        b'{"n":[1,2.5,18446744073709551616]}'
    )  # (orjson rounds the last: the walk refuses it, wide_path)
    digits = "1" + "0" * 400
    decoded = loads(f'{{"a":1e400,"b":[-2.5E+309,{digits}, 7, 0.5, "\\u00e9"]}}'.encode())
    assert decoded == {
        "a": WideNumber("1e400"),
        "b": [WideNumber("-2.5E+309"), 10**400, 7, 0.5, "é"],
    }
    assert wide_path(decoded) is not None
    assert loads_exact("1" + "0" * 1001) == WideNumber("1" + "0" * 1001)


@pytest.mark.parametrize(
    "text",
    [
        b"[1e400",  # not JSON
        b"[NaN, 1e400]",  # the standard library takes NaN; JSON does not
        b'[1e400, "\\ud800"]',  # a lone surrogate: orjson refuses it
        b"[1e400, Infinity]",
    ],
)
def test_loads_refuses_what_is_not_json_as_orjson_does(text: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        loads(text)


def test_a_wide_number_is_its_text() -> None:
    assert WideNumber("1e400") == WideNumber("1e400") != WideNumber("1E400")
    assert len({WideNumber("1e400"), WideNumber("1e400")}) == 1
    with pytest.raises(ValueError):
        WideNumber("12abc")


def test_json_nested_deeper_than_orjson_reads_is_cut_where_the_store_cannot_write_it() -> None:
    deep = b"[" * 3000 + b"]" * 3000
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(deep)
    data = b'{"s": "[[{", "deep": ' + deep + b', "n": 1}'
    value = loads(data)
    assert (value["s"], value["n"]) == ("[[{", 1)  # brackets in text are text
    assert too_deep(value["deep"])
    assert loads(data.decode()) == value  # a Realtime frame's text alike
    assert cut_deep(b'["]\\"[", [[1], {"a": [2]}], 3]', 2) == b'["]\\"[", [null, null], 3]'
    assert cut_deep(b"[[1]]", 2) is None  # nothing that deep


def test_too_deep_is_what_orjson_cannot_write() -> None:
    value: list[Any] = []
    for _ in range(MAX_STORED_DEPTH - 1):
        value = [value]
    assert not too_deep(value)
    orjson.dumps(value)
    assert too_deep([value])
    assert not too_deep({"a": 1}) and not too_deep("[[[")
