"""JSON numbers the daemon stores exactly, and JSON whose numbers orjson cannot hold (pure).

JSON allows any number; the daemon keeps JSON values with orjson, which holds an integer in
[-2**63, 2**64 - 1] exactly and reads any other number as a double: an integer beyond that
range arrives as the nearest double (changed, silently), and a number beyond the double range
(``1e400``, an integer of more than 308 digits) is refused as not JSON at all.

The rule (the local API's params, the store's JSON values, pulled rows alike): a number is
kept only if it is an integer within the signed 64-bit range (SQLite's and the cloud's
``bigint``), or any other number of less than 2**63 in magnitude (a double). A number of 2**63
or more in magnitude is refused whether it came as an integer or as a float: once orjson has
read it, the two cannot be told apart, and keeping the double would change what the writer
sent. (PostgreSQL's jsonb, which takes any number, also answers ``1e20`` as
``100000000000000000000``.) Such a number is ``is_wide``; ``wide_path`` says where one is.

``loads`` is ``orjson.loads`` that never refuses valid JSON for its numbers: JSON orjson
refuses only because a number is beyond the double range is decoded by the standard library,
each such number (and any integer literal of more than 1000 digits) as a ``WideNumber`` that
keeps its text. JSON nested deeper than orjson reads (1024 levels; PostgreSQL's jsonb and
PostgREST take deeper) is read with every array or object below ``CUT_DEPTH`` levels replaced
by null: what holds it is still nested deeper than the store can write (``too_deep``), so it
is refused or set aside as a whole, never stored cut. Everything else orjson refuses is still
refused (``orjson.JSONDecodeError``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "WIDE_FLOAT",
    "WIDE_NUMBER",
    "WideNumber",
    "has_wide",
    "is_number_error",
    "is_utf8",
    "is_wide",
    "loads",
    "loads_exact",
    "too_deep",
    "wide_path",
]

INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1
#: A float of this magnitude or more may have been an integer beyond 64 bits (see above).
WIDE_FLOAT: Final = float(1 << 63)
WIDE_NUMBER: Final = (
    "holds a number that cannot be stored exactly (an integer beyond the signed 64-bit range,"
    " or any number of 2**63 or more in magnitude): send it as a string"
)
#: orjson's reason for refusing a number beyond the double range.
_INFINITY: Final = "infinity"
#: The longest integer literal decoded to an exact int by ``loads_exact`` (Python refuses to
#: convert more than 4300 digits by default, and the conversion is quadratic).
_INT_DIGITS: Final = 1000
#: orjson's nesting limit, kept on the fallback path.
_MAX_DEPTH: Final = 1024
#: The deepest nesting orjson writes (``orjson.dumps``: "Recursion limit reached" past it), so
#: the deepest JSON value the store keeps.
MAX_STORED_DEPTH: Final = 254
#: ``loads`` of JSON nested deeper than orjson reads keeps this many levels (see the module
#: doc): a value cut there is nested deeper than ``MAX_STORED_DEPTH`` wherever it starts, as long
#: as it starts within the first 40 levels (a pull page's rows, a Realtime frame's record).
CUT_DEPTH: Final = MAX_STORED_DEPTH + 40
#: What matters when cutting: strings (skipped whole, they may hold brackets) and brackets.
_STRUCTURE: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class WideNumber:
    """A JSON number beyond what orjson holds, as its text (``text``). Never stored: only
    decoded, to be refused or set aside, and echoed as sent where an id must be."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        if _NUMBER.fullmatch(text) is None:
            raise ValueError("not a JSON number")
        self.text = text

    def __repr__(self) -> str:
        return f"WideNumber({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WideNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def is_wide(item: Any) -> bool:
    """Whether ``item`` is a number that cannot be kept exactly (see the module doc)."""
    if isinstance(item, float):
        return not -WIDE_FLOAT < item < WIDE_FLOAT
    if isinstance(item, int) and not isinstance(item, bool):
        return not INT64_MIN <= item <= INT64_MAX
    return isinstance(item, WideNumber)


def has_wide(value: Any) -> bool:
    """Whether ``value`` (decoded JSON) holds a wide number anywhere: ``wide_path`` without
    the paths, cheap enough for every JSON value written or pulled (~1 us for a small map)."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is float:
            if not -WIDE_FLOAT < item < WIDE_FLOAT:
                return True
        elif kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return True
        elif kind is not str and kind is not bool and item is not None and is_wide(item):
            return True  # (a WideNumber, a subclass: the exact types come first, being usual)
    return False


def wide_path(value: Any) -> str | None:
    """Where in ``value`` a wide number is (``"a.b[0]"``, ``""`` for ``value`` itself), or
    None when it holds none."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, f"{path}.{key}" if path else key) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
        elif is_wide(item):
            return path
    return None


def is_number_error(exc: orjson.JSONDecodeError) -> bool:
    """Whether orjson refused valid JSON only for a number beyond the double range (as far as
    it read: ``loads_exact`` tells the rest)."""
    return _INFINITY in exc.msg


def loads(data: bytes | str) -> Any:
    """``orjson.loads``, except for valid JSON orjson refuses for a number beyond the double
    range (``loads_exact``'s) or for its nesting (cut at ``CUT_DEPTH``, see the module doc).
    Raises ``orjson.JSONDecodeError`` for anything else orjson refuses."""
    try:
        return _loads(data)
    except orjson.JSONDecodeError:
        cut = cut_deep(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        if cut is None:
            raise
        return _loads(cut)


def cut_deep(data: bytes, depth: int = CUT_DEPTH) -> bytes | None:
    """``data`` (JSON text) with each array or object nested below ``depth`` levels replaced
    by ``null``; None when nothing is nested that deep."""
    parts: list[bytes] = []
    level = kept = 0
    cut_from: int | None = None
    for found in _STRUCTURE.finditer(data):
        bracket = found.group()
        if bracket in (b"[", b"{"):
            level += 1
            if level == depth + 1:
                cut_from = found.start()
        elif bracket in (b"]", b"}"):
            if level == depth + 1 and cut_from is not None:
                parts += (data[kept:cut_from], b"null")
                kept, cut_from = found.end(), None
            level -= 1
    if not parts:
        return None
    parts.append(data[kept:])
    return b"".join(parts)


def too_deep(value: Any) -> bool:
    """Whether ``value`` (decoded JSON) is nested deeper than the store can write
    (``MAX_STORED_DEPTH``)."""
    if type(value) is not dict and type(value) is not list:
        return False
    try:
        orjson.dumps(value)
    except TypeError as exc:
        return str(exc) == "Recursion limit reached"
    return False


def _loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not is_number_error(exc):
            raise
        try:
            return loads_exact(data)
        except ValueError:
            raise exc from None


def loads_exact(data: bytes | str, *, lone_surrogates: bool = False) -> Any:
    """``data`` decoded by the standard library: integers of up to 1000 digits exactly (orjson
    rounds those beyond 64 bits), longer integers and numbers beyond the double range as
    ``WideNumber``s. ValueError for what orjson refuses for another reason than its numbers
    (not JSON, NaN, a lone surrogate, nested too deep). ``lone_surrogates``: text holding a
    lone surrogate (``"\\ud800"``, valid JSON that UTF-8 cannot carry) is decoded as it is, for
    a caller that refuses it where it can say where."""
    try:
        decoded = json.loads(data, parse_int=_int, parse_float=_float, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if not _as_orjson_reads(decoded, lone_surrogates):
        raise ValueError("not what orjson reads")
    return decoded


def _int(text: str) -> int | WideNumber:
    digits = len(text) - text.startswith("-")
    return int(text) if digits <= _INT_DIGITS else WideNumber(text)


def _float(text: str) -> float | WideNumber:
    value = float(text)
    return WideNumber(text) if value in (float("inf"), float("-inf")) else value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")  # NaN, Infinity: the standard library takes them


def _as_orjson_reads(value: Any, lone_surrogates: bool = False) -> bool:
    """What the standard library decoded is what orjson would take but for its numbers: no
    text with a lone surrogate (``"\\ud800"``, unless ``lone_surrogates``), nesting within
    orjson's limit."""
    utf8 = _any_text if lone_surrogates else is_utf8
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > _MAX_DEPTH:
                return False
            if isinstance(item, dict):
                if not all(utf8(key) for key in item):
                    return False
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and not utf8(item):
            return False
    return True


def _any_text(text: str) -> bool:
    return True


def is_utf8(text: str) -> bool:
    """``text`` holds no lone surrogate (UTF-8 can carry it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
