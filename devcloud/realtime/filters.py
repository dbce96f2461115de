"""postgres_changes filters (sans-I/O): ``column=op.value`` with ``eq neq lt lte gt gte in``.

This is the classic Realtime grammar (one condition per binding). The value is compared with the
row's value *as the column's type*, as Realtime casts the filter value to the column type: numbers
numerically, booleans as booleans, timestamps as instants, uuids case-insensitively, everything
else as text. A NULL column value never matches (SQL comparison semantics).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Operator = Literal["eq", "neq", "lt", "lte", "gt", "gte", "in"]
OPERATORS: tuple[Operator, ...] = ("eq", "neq", "lt", "lte", "gt", "gte", "in")

_FILTER = re.compile(r"^(?P<column>[^=]+)=(?P<op>[a-z]+)\.(?P<value>.*)$", re.DOTALL)
_NUMERIC = {"int2", "int4", "int8", "float4", "float8", "numeric", "oid", "money"}
_TEMPORAL = {"timestamptz", "timestamp", "date"}


class FilterError(ValueError):
    """A filter string that does not parse (the subscriber's fault)."""


@dataclass(frozen=True)
class Filter:
    """One parsed condition; ``values`` has one item except for ``in``."""

    column: str
    op: Operator
    values: tuple[str, ...]


def parse_filter(text: str | None) -> Filter | None:
    """Parse a binding's filter; ``None``/blank means no filter. Raises FilterError."""
    if text is None or not text.strip():
        return None
    match = _FILTER.match(text.strip())
    if match is None:
        raise FilterError(f"Error parsing `filter` params: {text!r} is not column=operator.value")
    column, op, value = match["column"].strip(), match["op"], match["value"]
    if op not in OPERATORS:
        raise FilterError(f"Error parsing `filter` params: operator {op!r} is not supported")
    if op == "in":
        return Filter(column, "in", _parse_list(value, text))
    return Filter(column, op, (_unquote(value),))


def _parse_list(value: str, text: str) -> tuple[str, ...]:
    if len(value) < 2 or value[0] != "(" or value[-1] != ")":
        raise FilterError(f"Error parsing `filter` params: {text!r}: in needs (a,b,…)")
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value[1:-1]:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quoted:
        raise FilterError(f"Error parsing `filter` params: {text!r}: unbalanced quotes")
    items.append("".join(current).strip())
    return tuple(_unquote(item) for item in items)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def matches(flt: Filter | None, row: Mapping[str, Any], column_types: Mapping[str, str]) -> bool:
    """Whether ``row`` (typed JSON values) passes ``flt``; a missing column or NULL never does."""
    if flt is None:
        return True
    if flt.column not in row or row[flt.column] is None:
        return False
    coerce = _coercer(column_types.get(flt.column, "text"))
    try:
        actual = coerce(row[flt.column])
        expected = [coerce(v) for v in flt.values]
        return _compare(flt.op, actual, expected)
    except (ValueError, TypeError, InvalidOperation):
        return False


def _compare(op: Operator, actual: Any, expected: list[Any]) -> bool:
    if op == "in":
        return actual in expected
    other = expected[0]
    if op == "eq":
        return bool(actual == other)
    if op == "neq":
        return bool(actual != other)
    if op == "lt":
        return bool(actual < other)
    if op == "lte":
        return bool(actual <= other)
    if op == "gt":
        return bool(actual > other)
    return bool(actual >= other)


def _coercer(type_name: str) -> Callable[[Any], Any]:
    if type_name in _NUMERIC:
        return _to_decimal
    if type_name == "bool":
        return _to_bool
    if type_name in _TEMPORAL:
        return _to_instant
    if type_name == "uuid":
        return lambda v: str(v).lower()
    return _to_text


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("bool is not a number")
    return Decimal(str(value))


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("t", "true", "y", "yes", "on", "1"):
        return True
    if text in ("f", "false", "n", "no", "off", "0"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _to_instant(value: Any) -> datetime:
    text = str(value).strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
