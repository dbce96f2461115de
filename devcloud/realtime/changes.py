"""postgres_changes (sans-I/O): the capture trigger's notification in, the event payload out.

The trigger (capture.sql) sends ``{"schema","table","type","commit_timestamp","rows": [{"pk"
[,"old_pk"][,"new"][,"old"]}, …]}``: a statement's changed rows, in order, as many to a
notification as NOTIFY's 8000 bytes allow (``parse_notifications``). The server judges each
row once per distinct set of subscriber claims (row-level security decides who gets it, see
cdc.py) and builds, per channel, Realtime's payload::

    {"ids": [binding ids], "data": {"schema","table","commit_timestamp","type","columns",
     "record"?, "old_record"?, "errors": null}}

INSERT has ``record`` and no ``old_record``; UPDATE has both (``old_record`` = the primary key,
as with the default replica identity); DELETE has only ``old_record`` (the primary key).
``record`` is the row as the change wrote it (the trigger's image) when the notification had
room for it, else the row as read back at delivery time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from devcloud.realtime.channel import CHANGE_EVENTS, Binding
from devcloud.realtime.filters import matches

# supabase-py's websockets refuses frames over 1 MiB; keep a record well below that.
MAX_RECORD_BYTES = 900_000
SMALL_FIELD_BYTES = 64
TOO_LARGE = "Error 413: Payload Too Large"
# orjson reads an integer beyond 64 bits as a float (rounded): one this large in magnitude.
_ROUNDED = float(2**63)


@dataclass(frozen=True)
class Change:
    """One committed row change, as announced by the capture trigger."""

    schema: str
    table: str
    type: str  # INSERT | UPDATE | DELETE
    commit_timestamp: str
    pk: dict[str, Any]  # the row's key (for DELETE, the deleted row's)
    old_pk: dict[str, Any] | None = None  # UPDATE: the key before the update
    old: dict[str, Any] | None = None  # DELETE: the old row when it fitted in the notification
    new: dict[str, Any] | None = None  # INSERT/UPDATE: the new row when it fitted


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # pg_type.typname: int8, text, uuid, _text, …


def parse_notifications(text: str) -> tuple[list[Change], list[str]]:
    """Decode a ``devcloud_realtime`` notification: its changes in order, and why each row that
    is not a change was left out. Raises ValueError when the notification itself is not one."""
    data = loads_exact(text)
    if not isinstance(data, dict):
        raise ValueError("notification is not a JSON object")
    rows = data.get("rows")
    if not isinstance(rows, list):
        raise ValueError("notification rows are not a JSON array")
    found: list[Change] = []
    problems: list[str] = []
    for row in rows:
        try:
            found.append(_change(data, row))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(str(exc) or type(exc).__name__)
    return found, problems


def _change(head: dict[str, Any], row: Any) -> Change:
    """One change: the statement's facts from ``head``, the row's from ``row``."""
    if not isinstance(row, dict):
        raise ValueError("notification row is not a JSON object")
    kind = head.get("type")
    if kind not in CHANGE_EVENTS:
        raise ValueError(f"unknown change type {kind!r}")
    pk = row.get("pk")
    if not isinstance(pk, dict) or not pk:
        raise ValueError("notification lacks the primary key")
    return Change(
        schema=str(head["schema"]),
        table=str(head["table"]),
        type=kind,
        commit_timestamp=str(head["commit_timestamp"]),
        pk=pk,
        old_pk=row.get("old_pk") if isinstance(row.get("old_pk"), dict) else None,
        old=row.get("old") if isinstance(row.get("old"), dict) else None,
        new=row.get("new") if isinstance(row.get("new"), dict) else None,
    )


def filter_row(change: Change, record: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The values filters are evaluated on: the new row, or for DELETE the old one."""
    if change.type == "DELETE":
        return change.old or change.pk
    return record or {}


def matching_ids(
    bindings: Iterable[Binding],
    change: Change,
    record: Mapping[str, Any] | None,
    columns: Sequence[Column],
    *,
    types: Mapping[str, str] | None = None,
) -> list[int]:
    """Ids of the bindings (of one channel) this change reaches, in binding order, unique.
    ``types``: ``columns`` as name -> type, when the caller has it already."""
    if types is None:
        types = {column.name: column.type for column in columns}
    row = filter_row(change, record)
    ids: list[int] = []
    for binding in bindings:
        if not binding.wants(change.schema, change.table, change.type):
            continue
        if binding.filter is not None and binding.filter.column not in types:
            continue  # a column the subscriber may not read cannot be filtered on
        if matches(binding.filter, row, types) and binding.id not in ids:
            ids.append(binding.id)
    return ids


def build_payload(
    change: Change,
    ids: list[int],
    columns: Sequence[Column],
    record: Mapping[str, Any] | None,
    select: Sequence[str] | None = None,
    *,
    described: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The ``postgres_changes`` payload for one channel. ``described``: ``columns`` as the
    payload lists them, when the caller has it already (shared, never changed: the payload is
    encoded at once)."""
    if select is not None:
        keep = set(select) | set(change.pk)
        columns = [column for column in columns if column.name in keep]
        described = None
    if described is None:
        described = [{"name": column.name, "type": column.type} for column in columns]
    data: dict[str, Any] = {
        "schema": change.schema,
        "table": change.table,
        "commit_timestamp": change.commit_timestamp,
        "type": change.type,
        "columns": described,
        "errors": None,
    }
    if change.type != "DELETE" and record is not None:
        projected = {c.name: record[c.name] for c in columns if c.name in record}
        data["record"], errors = _limit_size(projected)
        data["errors"] = errors
    if change.type == "UPDATE":
        data["old_record"] = dict(change.old_pk or change.pk)
    elif change.type == "DELETE":
        data["old_record"] = dict(change.pk)
    return {"ids": ids, "data": data}


def _limit_size(record: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    if _json_size(record) <= MAX_RECORD_BYTES:
        return record, None
    small = {k: v for k, v in record.items() if _json_size(v) <= SMALL_FIELD_BYTES}
    return small, [TOO_LARGE]


def loads_exact(text: str) -> Any:
    """JSON to Python: orjson (several times faster on a busy feed), unless the value holds a
    float of 2**63 or more in magnitude, which may be an integer beyond 64 bits that orjson
    rounded: then the standard library reads it again, exactly. (Looking at the parsed values
    costs a fraction of a pattern search over the text, which tried a match at every digit of
    every HLC and uuid and cost several times the parse.)"""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. a number beyond a double: the standard library
        return json.loads(text)
    return json.loads(text) if _may_be_rounded(value) else value


def _may_be_rounded(value: Any) -> bool:
    """Whether ``value`` holds a float orjson may have made of an integer beyond 64 bits."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float and not -_ROUNDED < item < _ROUNDED:
            return True
    return False


def dumps_text(value: Any) -> str:
    """Python to JSON text: orjson, or the standard library for integers beyond 64 bits."""
    return _dumps(value).decode()


def _dumps(value: Any) -> bytes:
    """``value`` as UTF-8 JSON (see ``dumps_text``)."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, default=str, ensure_ascii=False).encode()


def _json_size(value: Any) -> int:
    """The size of ``value`` as JSON, in UTF-8 bytes (as it travels)."""
    return len(_dumps(value))
