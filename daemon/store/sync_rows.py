"""Pulled rows as the store keeps them: per-table shapes, completing and checking a merged
row, which UI event a merge makes, and the page's changelog buffer (multi-row INSERTs).

Pure helpers except ``ChangeBuffer.flush``, ``unpushed`` and ``unpushed_fields``, which run
inside the page's write transaction.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, Final

import orjson

from daemon.events import ChangeEvent
from daemon.jsonnumbers import has_wide, too_deep
from daemon.store import sync_sql as q
from daemon.store.codec import load_json
from daemon.store.schema import CLOCK_COLUMNS, JSON_COLUMNS
from daemon.store.sql import CHANGELOG_KEYS, LAST_SEQ_SQL, insert_many
from daemon.store.sql import table as sa_table
from daemon.store.txn import WriteContext
from daemon.types import MESSAGE_ROLES

BOOKKEEPING = CLOCK_COLUMNS | {"id"}
_SCALAR = (str, int, float, type(None))
#: The exact types of ``_SCALAR`` values as JSON decoding makes them (a one-pass check).
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
#: daemon.hlc's clock pattern (the device id is group 1).
_CLOCK = re.compile(r"^\d{13}-\d{6}-([A-Za-z0-9_.:-]+)$")
#: A clock both the merge (``is_clock``) and ``origin_of`` accept, ASCII only (``rows_as_is``,
#: sync.adapters.new_rows_as_is); its device part starts at ``DEVICE_AT``.
PLAIN_CLOCK = re.compile(r"[0-9]{13}-[0-9]{6}-[A-Za-z0-9_.:-]+")
DEVICE_AT = 21
_ABSENT = object()


@dataclass(frozen=True)
class TableShape:
    """What the store needs to know to write a pulled row of one table."""

    name: str
    entity: str
    columns: tuple[str, ...]
    #: (parent table, column): foreign keys a row must satisfy
    parents: tuple[tuple[str, str], ...]
    #: values for NOT NULL columns a cloud row may lack (the DDL defaults), and the empty
    #: value that stands for null in a JSON column (as the repositories store it)
    defaults: dict[str, Any]
    required: tuple[str, ...] = ()
    scalar_columns: tuple[str, ...] = ()
    #: row -> tuple of its values in ``columns`` order (positional INSERT parameters); the
    #: same for ``required`` and ``scalar_columns`` (derived, C speed: see ``_getter``)
    values: Callable[[dict[str, Any]], tuple[Any, ...]] = field(
        init=False, compare=False, repr=False
    )
    required_values: Callable[[dict[str, Any]], tuple[Any, ...]] = field(
        init=False, compare=False, repr=False
    )
    scalar_values: Callable[[dict[str, Any]], tuple[Any, ...]] = field(
        init=False, compare=False, repr=False
    )
    #: the keys a remote row stored as it is may have (``rows_as_is``)
    as_is_keys: frozenset[str] = field(init=False, compare=False, repr=False)
    #: the events of a row (``change_topic``): created, updated, deleted
    topics: tuple[str, str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        topics = tuple(f"{self.entity}.{what}" for what in ("created", "updated", "deleted"))
        object.__setattr__(self, "topics", topics)
        object.__setattr__(self, "as_is_keys", frozenset({*self.columns, "field_hlc"}))
        object.__setattr__(self, "values", _getter(self.columns))
        object.__setattr__(self, "required_values", _getter(self.required))
        object.__setattr__(self, "scalar_values", _getter(self.scalar_columns))

    @classmethod
    def of(cls, name: str, entity: str, parents: Any, defaults: dict[str, Any]) -> TableShape:
        t = sa_table(name)
        columns = tuple(str(c.name) for c in t.columns)
        required = tuple(str(c.name) for c in t.columns if not c.nullable)
        scalars = tuple(c for c in columns if c not in JSON_COLUMNS[name])
        return cls(name, entity, columns, parents, defaults, required, scalars)


def _getter(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``row -> (row[k] for k in keys)`` as a tuple, at C speed (itemgetter)."""
    if len(keys) == 1:
        one = itemgetter(keys[0])
        return lambda row: (one(row),)
    if not keys:
        return lambda row: ()
    return itemgetter(*keys)


SHAPES: dict[str, TableShape] = {
    "workspaces": TableShape.of(
        "workspaces",
        "workspace",
        (),
        {
            "status": "active",
            "progress_data": {},
            "next_steps": [],
            "shared_memory": {},
            "field_hlc": {},
        },
    ),
    "conversations": TableShape.of(
        "conversations",
        "conversation",
        (("workspaces", "workspace_id"),),
        {"type": "chat", "is_archived": False, "field_hlc": {}},
    ),
    "messages": TableShape.of(
        "messages",
        "message",
        (("workspaces", "workspace_id"), ("conversations", "conversation_id")),
        {},
    ),
    "tasks": TableShape.of(
        "tasks",
        "task",
        (("workspaces", "workspace_id"),),
        {
            "status": "queued",
            "priority": 0,
            "payload": {},
            "progress": {},
            "attempts": 0,
            "field_hlc": {},
        },
    ),
}


def complete_row(
    shape: TableShape, merged: dict[str, Any], remote: dict[str, Any]
) -> dict[str, Any]:
    """The merged row as stored: local columns only, defaults, ``hlc`` (the greatest field
    clock) and ``origin`` (the device part of ``hlc``)."""
    columns = shape.columns
    row = dict(zip(columns, map(merged.get, columns), strict=True))
    for column, default in shape.defaults.items():
        if row[column] is None:
            row[column] = default.copy() if isinstance(default, dict | list) else default
    row["id"] = remote["id"]
    clocks = merged.get("field_hlc")
    if not isinstance(clocks, dict):
        clocks = {}
    if "field_hlc" in row:
        row["field_hlc"] = clocks = dict(clocks)
    hlc = max(clocks.values(), default=None) or merged.get("hlc") or remote.get("hlc")
    row["hlc"] = hlc
    row["origin"] = origin_of(hlc) or merged.get("origin") or remote.get("origin") or "cloud"
    return row


def origin_of(hlc: Any) -> str | None:
    """The device that made a row's last change: the device part of its row clock (None for a
    row without a well-formed clock). A pure function of the merged clocks, so every replica
    that merged the same changes names the same origin, whichever side a change came from."""
    if not isinstance(hlc, str):
        return None
    match = _CLOCK.match(hlc)  # hlc.decode's test, without building a Timestamp per row
    return None if match is None else match.group(1)


def rows_as_is(shape: TableShape, remotes: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The stored rows of ``remotes``, new rows of a table the merge stores as they are when
    each holds one clock for all its fields; None unless every one does.

    What ``complete_row(shape, merge(None, remote).row, remote)`` gives such a row (the merge
    keeps every field under ``hlc``; ``hlc`` is then the row clock and ``origin`` its device),
    made in one pass over the page: a remote row qualifies with no key but the shape's columns
    and ``field_hlc``, an ASCII clock (accepted by the merge and by ``origin_of`` alike), and
    a ``field_hlc`` that is empty or gives some of its fields that same clock. Anything else
    (a bad clock, a stray key) returns None, so the caller's per-row path decides and says
    why. Whether the rows can be stored is left to the INSERTs (``PageApplier.run_new``: the
    table's constraints refuse what ``row_problem`` names, and the page then takes that path).
    """
    allowed, columns, fullmatch = shape.as_is_keys, shape.columns, PLAIN_CLOCK.fullmatch
    rows: list[dict[str, Any]] = []
    for remote in remotes:
        hlc, clocks = remote.get("hlc"), remote.get("field_hlc")
        if (
            not remote.keys() <= allowed
            or type(hlc) is not str
            or fullmatch(hlc) is None
            or (clocks and not _one_clock(clocks, hlc, remote))
        ):
            return None
        row = dict(zip(columns, map(remote.get, columns), strict=True))
        row["origin"] = hlc[DEVICE_AT:]
        rows.append(row)
    if shape.defaults:
        for row in rows:
            for column, default in shape.defaults.items():
                if row[column] is None:
                    row[column] = default.copy() if isinstance(default, dict | list) else default
    return rows


def _one_clock(clocks: Any, hlc: str, remote: dict[str, Any]) -> bool:
    """``clocks`` (a remote ``field_hlc``) give only fields of ``remote`` a clock, all ``hlc``:
    the merge takes such a row as it is, as with no ``field_hlc`` (a pushed message's clocks)."""
    return (
        type(clocks) is dict
        and clocks.keys() <= remote.keys() - BOOKKEEPING
        and all(clock == hlc for clock in clocks.values())  # (a clock may be any JSON value)
    )


def _all_storable(shape: TableShape, rows: Sequence[dict[str, Any]]) -> bool:
    """No row has a problem ``row_problem`` would name (a few C-speed passes over them all)."""
    scalars = chain.from_iterable(map(shape.scalar_values, rows))
    if not _SCALAR_TYPES.issuperset(map(type, scalars)):
        return False
    if None in chain.from_iterable(map(shape.required_values, rows)):  # (C-level: no genexpr)
        return False
    return shape.name != "messages" or {row["role"] for row in rows} <= MESSAGE_ROLES


@dataclass
class Unpushed:
    """The outbox entries of some stored rows, for the merge (``unpushed``).

    ``fields``: per row id, the fields of its entries waiting to be pushed; ``lost``: per row
    id, its lost entries (``q.LOST_BELOW``: pushed, superseded by a value not seen here yet) as
    (entry id, clock per field)."""

    fields: dict[str, set[str]] = field(default_factory=dict)
    lost: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    def pending(self, row_id: str, row: dict[str, Any]) -> frozenset[str]:
        """The fields of stored ``row`` with an unpushed local edit: waiting to be pushed, or
        lost while the row still holds the lost value (its clock)."""
        found = set(self.fields.get(row_id, ()))
        clocks = row.get("field_hlc") or {}
        for _, lost in self.lost.get(row_id, ()):
            found.update(name for name, clock in lost.items() if clocks.get(name) == clock)
        return frozenset(found)

    def overtaken(self, rows: dict[str, dict[str, Any]]) -> list[int]:
        """Lost entries whose values no row of ``rows`` (the rows after the merge) holds any
        more: the value that beat them arrived (or a newer local edit replaced them)."""
        overtaken: list[int] = []
        for row_id, entries in self.lost.items():
            row = rows.get(row_id)
            if row is None:
                continue
            clocks = row.get("field_hlc") or {}
            overtaken.extend(
                entry_id
                for entry_id, lost in entries
                if all(clocks.get(n) != c for n, c in lost.items())
            )
        return overtaken


def unpushed(
    conn: sqlite3.Connection, table: str, ids: str, workspace_ids: Iterable[str | None]
) -> Unpushed:
    """The outbox entries of the stored rows ``ids`` (an ``in_json`` parameter) of ``table``;
    ``workspace_ids``: the rows' workspaces, whose entries are searched (the outbox has no
    index by row)."""
    found = Unpushed()
    params = {"_table": table, "_ids": ids, "_ws": q.json_ids(workspace_ids)}
    seen: set[int] = set()
    for row_id, key, entry_id, clocks in conn.execute(q.outbox_pending_fields_sql(), params):
        if entry_id > q.LOST_BELOW:
            found.fields.setdefault(row_id, set()).add(key)
        elif entry_id not in seen:  # (a lost entry spells its clocks out: sync_outbox.py)
            seen.add(entry_id)
            found.lost.setdefault(row_id, []).append((entry_id, orjson.loads(clocks)))
    return found


def unpushed_fields(
    conn: sqlite3.Connection, table: str, ids: str, workspace_ids: Iterable[str | None]
) -> dict[str, frozenset[str]]:
    """The fields with unpushed outbox entries (lost ones too) of the stored rows ``ids`` (an
    ``in_json`` parameter) of ``table``, per row id (see ``unpushed``)."""
    found = unpushed(conn, table, ids, workspace_ids)
    fields = found.fields
    for row_id, entries in found.lost.items():
        for _, lost in entries:
            fields.setdefault(row_id, set()).update(lost)
    return {row_id: frozenset(keys) for row_id, keys in fields.items()}


def is_stored_state(local: dict[str, Any], remote: dict[str, Any]) -> bool:
    """True when ``remote`` holds nothing the stored ``local`` row lacks: each of its values
    is the stored one (same type too) under the stored clock. Merging a state into a state
    that contains it changes nothing under any rule (I4, I5), so such a row (an echo of our
    own push, a duplicate) needs neither a merge nor a write. Only for tables whose values
    are all scalars (the caller checks: no JSON column but ``field_hlc``).

    Clocks: with a ``field_hlc`` column, both sides' must be equal; without one (messages),
    the stored row is one register under its ``hlc``, so the remote clocks must be that
    clock for exactly its fields (or absent, the remote being one register too).
    """
    clocks = remote.get("field_hlc")
    if "field_hlc" in local:
        if clocks != local["field_hlc"] or (clocks and not clocks.keys() <= remote.keys()):
            return False
    elif clocks and not _one_register(clocks, local.get("hlc"), remote):
        return False
    get = local.get
    for name, value in remote.items():
        if name == "field_hlc":
            continue
        stored = get(name, _ABSENT)
        if stored is not value and (type(stored) is not type(value) or stored != value):
            return False
    return True


def _one_register(clocks: Any, hlc: Any, remote: dict[str, Any]) -> bool:
    """``clocks`` give every field of ``remote`` (and nothing else) the one clock ``hlc``."""
    if type(clocks) is not dict or not clocks or any(c != hlc for c in clocks.values()):
        return False
    return clocks.keys() == remote.keys() - BOOKKEEPING


#: The JSON value columns of each table (any JSON: the cloud's jsonb may hold any number).
VALUE_COLUMNS: Final = {
    name: tuple(sorted(columns - CLOCK_COLUMNS)) for name, columns in JSON_COLUMNS.items()
}


def wide_fields(table: str, row: dict[str, Any]) -> list[str]:
    """The JSON value columns of a pulled row holding a number the store does not keep exactly
    (daemon/jsonnumbers.py: the local API refuses it, so the row could not be written back)."""
    return [c for c in VALUE_COLUMNS.get(table, ()) if c in row and has_wide(row[c])]


def deep_fields(table: str, row: dict[str, Any]) -> list[str]:
    """The JSON value columns of a pulled row nested deeper than the store can write
    (daemon/jsonnumbers.py ``too_deep``; the local API refuses such values alike)."""
    return [c for c in VALUE_COLUMNS.get(table, ()) if c in row and too_deep(row[c])]


def without_fields(row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``row`` without the fields ``names`` and their clocks (a map's keys' too): as if the
    change had not carried them (the merge keeps what this device has)."""
    out = {k: v for k, v in row.items() if k not in names}
    clocks = row.get("field_hlc")
    if isinstance(clocks, dict):
        out["field_hlc"] = {
            k: c for k, c in clocks.items() if str(k).partition(".")[0] not in names
        }
    return out


def row_problem(shape: TableShape, row: dict[str, Any]) -> str | None:
    """Why a completed row cannot be stored (None: it can). Foreign keys are checked apart."""
    if _all_storable(shape, (row,)):  # the common all-good row; the loops name the culprit
        return None
    for column in shape.required:
        if row[column] is None:
            return f"{column} is missing"
    for column in shape.scalar_columns:
        if not isinstance(row[column], _SCALAR):
            return f"{column} is not a scalar"
    if shape.name == "messages" and row["role"] not in MESSAGE_ROLES:
        return "unknown role"
    return None


def change_topic(
    shape: TableShape, local: dict[str, Any] | None, row: dict[str, Any], changed: frozenset[str]
) -> str | None:
    """The UI event a merge makes: None for an echo (nothing visible changed), for a row that
    arrives deleted, and for edits of a row that stays deleted."""
    if not changed or (changed - BOOKKEEPING).isdisjoint(row):
        return None
    now_visible = row["deleted_at"] is None
    if local is not None and local.get("deleted_at") is None:  # was visible
        return shape.topics[1] if now_visible else shape.topics[2]
    return shape.topics[0] if now_visible else None


def conflict_view(record: dict[str, Any]) -> dict[str, Any]:
    """A conflicts row as the API returns it (values decoded)."""
    view = {k: v for k, v in record.items() if k != "table_name"}
    view["table"] = record["table_name"]
    view["local_value"] = load_json(record["local_value"])
    view["remote_value"] = load_json(record["remote_value"])
    return view


@dataclass
class ChangeBuffer:
    """Changelog entries of one page, written in order with multi-row INSERTs."""

    entries: list[tuple[str, str, str | None, dict[str, Any]]] = field(default_factory=list)

    def add(self, topic: str, row: dict[str, Any], workspace_id: str | None) -> None:
        self.entries.append((topic, row["id"], workspace_id, row))

    def flush(self, ctx: WriteContext, created_at: str) -> int:
        """Insert the entries and hand their events to the transaction; return how many."""
        entries, self.entries = self.entries, []
        if not entries:
            return 0
        dumps = orjson.dumps
        params = [
            (topic, row_id, workspace_id, dumps(data).decode(), created_at)
            for topic, row_id, workspace_id, data in entries
        ]
        insert_many(ctx.conn, "changelog", CHANGELOG_KEYS, params)  # CHANGELOG_KEYS order
        # AUTOINCREMENT under one writer: the statement's rows got consecutive seqs.
        last = int(ctx.conn.execute(LAST_SEQ_SQL).fetchone()[0])
        first = last - len(entries) + 1
        events = [ChangeEvent(first + i, e[0], e[3]) for i, e in enumerate(entries)]
        ctx.add_events(events, sum(len(p[3]) for p in params))
        return len(entries)
