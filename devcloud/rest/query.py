"""PostgREST query strings → a small AST (pure; no I/O, no SQL).

Grammar handled (PostgREST's, minus resource embedding and JSON paths):

    select=*,id,alias:col,col::text          columns, aliases, casts
    <col>=[not.]<op>.<value>                 op: eq neq gt gte lt lte in is like ilike
    or=(a.eq.1,and(b.gt.2,c.is.null))        nested logic, also and=, not.or=, not.and=
    order=col.desc.nullslast,col2            several terms
    limit=N  offset=N  columns="a","b"  on_conflict=a,b

Anything else that is malformed raises :class:`~devcloud.rest.errors.RestError` with code
PGRST100 (PostgREST's parse error) and a message naming the offending parameter.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from devcloud.rest.errors import RestError, parse_error

OPERATORS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "in", "is", "like", "ilike"})
IS_VALUES = frozenset({"null", "not_null", "true", "false", "unknown"})
RESERVED = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict"})
LOGIC_KEYS: dict[str, tuple[Literal["and", "or"], bool]] = {
    "or": ("or", False),
    "and": ("and", False),
    "not.or": ("or", True),
    "not.and": ("and", True),
}
_CAST = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*(\[\])?$")
_NESTED = re.compile(r"^(not\.)?(and|or)\((.*)\)$", re.DOTALL)


@dataclass(frozen=True)
class SelectItem:
    """One entry of ``select=``: a column (``*`` for all), an optional alias and cast."""

    column: str
    alias: str | None = None
    cast: str | None = None


@dataclass(frozen=True)
class Filter:
    """``column <op> value``; ``value`` is a tuple for ``in``, the lowered keyword for ``is``."""

    column: str
    op: str
    value: str | tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True)
class Logic:
    """``and(...)`` / ``or(...)`` over nested conditions, optionally negated."""

    op: Literal["and", "or"]
    conditions: tuple[Condition, ...]
    negated: bool = False


Condition = Filter | Logic


@dataclass(frozen=True)
class OrderTerm:
    column: str
    descending: bool = False
    nulls_first: bool | None = None  # None: PostgreSQL's default for the direction


@dataclass(frozen=True)
class Query:
    """Everything a request's query string says, validated for shape (not against a table)."""

    select: tuple[SelectItem, ...] = (SelectItem("*"),)
    where: tuple[Condition, ...] = ()
    order: tuple[OrderTerm, ...] = ()
    limit: int | None = None
    offset: int | None = None
    columns: tuple[str, ...] | None = None
    on_conflict: tuple[str, ...] | None = None
    extra: dict[str, str] = field(default_factory=dict)  # skipped keys (RPC GET arguments)


def parse_query(params: Iterable[tuple[str, str]], *, skip: Collection[str] = ()) -> Query:
    """Parse a request's query parameters; keys in ``skip`` are returned untouched in ``extra``."""
    select: tuple[SelectItem, ...] = (SelectItem("*"),)
    where: list[Condition] = []
    order: list[OrderTerm] = []
    values: dict[str, int | tuple[str, ...] | None] = {}
    extra: dict[str, str] = {}
    for key, value in params:
        if key in skip:
            extra[key] = value
        elif key == "select":
            select = parse_select(value)
        elif key == "order":
            order.extend(parse_order(value))
        elif key in ("limit", "offset"):
            values[key] = _parse_count(key, value)
        elif key in ("columns", "on_conflict"):
            values[key] = parse_column_list(key, value)
        elif key in LOGIC_KEYS:
            op, negated = LOGIC_KEYS[key]
            where.append(parse_logic(op, negated, value))
        else:
            where.append(parse_filter(_parse_key(key), value))
    limit, offset = values.get("limit"), values.get("offset")
    columns, on_conflict = values.get("columns"), values.get("on_conflict")
    return Query(
        select=select,
        where=tuple(where),
        order=tuple(order),
        limit=limit if isinstance(limit, int) else None,
        offset=offset if isinstance(offset, int) else None,
        columns=columns if isinstance(columns, tuple) else None,
        on_conflict=on_conflict if isinstance(on_conflict, tuple) else None,
        extra=extra,
    )


# --- lexical helpers --------------------------------------------------------------------------


def split_top(text: str, what: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and double quotes; quotes are kept."""
    parts: list[str] = []
    depth, start, i, quoted = 0, 0, 0, False
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise parse_error(f"failed to parse {what} ({text})", "unbalanced ')'")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted or depth:
        problem = "unterminated quote" if quoted else "unbalanced '('"
        raise parse_error(f"failed to parse {what} ({text})", problem)
    parts.append(text[start:])
    return parts


def unquote(text: str) -> str:
    """``"a\\"b"`` → ``a"b``; anything not wholly quoted is returned as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _take_name(text: str, what: str) -> tuple[str, str]:
    """Split ``name.rest`` (name possibly quoted) into (name, rest)."""
    if text.startswith('"'):
        match = re.match(r'"((?:[^"\\]|\\.)*)"', text)
        if not match:
            raise parse_error(f"failed to parse {what} ({text})", "unterminated quote")
        name, rest = unquote(match.group(0)), text[match.end() :]
        if rest and not rest.startswith("."):
            raise parse_error(f"failed to parse {what} ({text})", "expected '.' after name")
        return name, rest[1:]
    name, _, rest = text.partition(".")
    return name, rest


def _check_name(name: str, what: str, raw: str) -> str:
    if not name:
        raise parse_error(f"failed to parse {what} ({raw})", "empty column name")
    if "->" in name:
        raise parse_error(
            f"failed to parse {what} ({raw})", "JSON paths (->, ->>) are not supported by devcloud"
        )
    return name


def _parse_key(key: str) -> str:
    name = unquote(key)
    if name == key and "." in key:
        raise parse_error(
            f"failed to parse filter ({key})",
            "filters on embedded resources are not supported by devcloud",
        )
    return _check_name(name, "filter", key)


def _parse_count(key: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) >= 2**63:
        raise parse_error(f"failed to parse {key} ({value})", "expected a non-negative integer")
    return int(value)


# --- select, columns, order -------------------------------------------------------------------


def parse_select(value: str) -> tuple[SelectItem, ...]:
    items = [_parse_select_item(part.strip(), value) for part in split_top(value, "select")]
    return tuple(items)


def _parse_select_item(item: str, raw: str) -> SelectItem:
    what = "select parameter"
    if item == "*":
        return SelectItem("*")
    if "(" in item or item.startswith("..."):
        raise parse_error(
            f"failed to parse {what} ({raw})",
            "embedded resources are not supported by devcloud",
        )
    body, cast = item, None
    if "::" in item:
        body, _, cast = item.rpartition("::")
        if not _CAST.match(cast):
            raise parse_error(f"failed to parse {what} ({raw})", f"invalid cast '{cast}'")
    alias = None
    match = re.match(r'^((?:"(?:[^"\\]|\\.)*")|[^":]+):(?!:)(.*)$', body)
    if match:
        alias, body = unquote(match.group(1)), match.group(2)
        _check_name(alias, what, raw)
    column = _check_name(unquote(body), what, raw)
    if column == "*" and (alias or cast):
        raise parse_error(f"failed to parse {what} ({raw})", "'*' takes no alias or cast")
    return SelectItem(column, alias, cast)


def parse_column_list(key: str, value: str) -> tuple[str, ...]:
    names = tuple(unquote(part.strip()) for part in split_top(value, key))
    for name in names:
        _check_name(name, key, value)
    return names


def parse_order(value: str) -> list[OrderTerm]:
    return [_parse_order_term(part.strip(), value) for part in split_top(value, "order")]


def _parse_order_term(term: str, raw: str) -> OrderTerm:
    name, rest = _take_name(term, "order")
    _check_name(name, "order", raw)
    modifiers = rest.split(".") if rest else []
    descending = bool(modifiers) and modifiers[0] == "desc"
    if modifiers and modifiers[0] in ("asc", "desc"):
        modifiers.pop(0)
    nulls_first = None
    if modifiers and modifiers[0] in ("nullsfirst", "nullslast"):
        nulls_first = modifiers.pop(0) == "nullsfirst"
    if modifiers:
        raise parse_error(
            f"failed to parse order ({raw})",
            f"unexpected '{modifiers[0]}' in '{term}': "
            "expecting [asc|desc][.nullsfirst|.nullslast]",
        )
    return OrderTerm(name, descending, nulls_first)


# --- filters and logic trees ------------------------------------------------------------------


def parse_filter(column: str, value: str, *, in_tree: bool = False) -> Filter:
    """``[not.]op.value`` for ``column``; values in logic trees may be double-quoted."""
    negated = value.startswith("not.")
    rest = value[4:] if negated else value
    op, dot, operand = rest.partition(".")
    if not dot or op not in OPERATORS:
        detail = f"unknown operator '{op}'" if dot else "expected '<operator>.<value>'"
        raise parse_error(f"failed to parse filter ({value})", detail)
    if op == "in":
        return Filter(column, op, _parse_in_list(operand, value), negated)
    if op == "is":
        keyword = operand.lower()
        if keyword not in IS_VALUES:
            raise parse_error(
                f"failed to parse filter ({value})",
                "is takes null, not_null, true, false or unknown",
            )
        return Filter(column, op, keyword, negated)
    return Filter(column, op, unquote(operand) if in_tree else operand, negated)


def _parse_in_list(operand: str, raw: str) -> tuple[str, ...]:
    if not (operand.startswith("(") and operand.endswith(")")):
        raise parse_error(f"failed to parse filter ({raw})", "in takes a list: in.(a,b)")
    inner = operand[1:-1]
    if not inner:
        return ()
    return tuple(unquote(part) for part in split_top(inner, "filter"))


def parse_logic(op: Literal["and", "or"], negated: bool, value: str) -> Logic:
    """``(cond,cond,...)`` as given to ``or=`` / ``and=``."""
    if not (value.startswith("(") and value.endswith(")")) or len(value) < 3:
        raise parse_error(
            f"failed to parse logic tree ({value})", "expected a parenthesised condition list"
        )
    parts = split_top(value[1:-1], "logic tree")
    return Logic(op, tuple(_parse_condition(part.strip(), value) for part in parts), negated)


def _parse_condition(text: str, raw: str) -> Condition:
    nested = _NESTED.match(text)
    if nested:
        op: Literal["and", "or"] = "and" if nested.group(2) == "and" else "or"
        return parse_logic(op, bool(nested.group(1)), f"({nested.group(3)})")
    name, rest = _take_name(text, "logic tree")
    if not rest:
        raise parse_error(f"failed to parse logic tree ({raw})", f"no operator in '{text}'")
    _check_name(name, "logic tree", raw)
    try:
        return parse_filter(name, rest, in_tree=True)
    except RestError as exc:
        raise parse_error(f"failed to parse logic tree ({raw})", exc.details) from exc
