"""What every repository shares: the page type, input checks, reads, and the generic
update / tombstone mutations of mutable rows (per-field clocks).

A deleted workspace (a tombstone, from this device or pulled from another) freezes its
children without writing them: no cascade, no outbox entry but the workspace's own, so every
device applies the same rule to the same rows. Local writes that create or change a row of a
tombstoned workspace are refused with InvalidInput naming the field the caller passed (as a
create in an unknown or deleted workspace is); lists leave such rows out, so listing a deleted
workspace's conversations or tasks answers an empty page, as for an unknown workspace (and as
``workspace.list`` leaves the workspace out; ``get`` still shows each row as stored). A deleted
conversation freezes its messages alike: ``message.send`` refuses, and listing them (or those
of a conversation of a deleted workspace) answers an empty page, as for an unknown
conversation. Pulled rows are applied as they come (daemon/store/sync*.py): this is a rule of
the local API only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from daemon.errors import DamagedRow, InvalidInput, NotFound
from daemon.jsonmaps import map_patch, same, text_at
from daemon.jsonnumbers import WIDE_NUMBER, has_wide, wide_path
from daemon.store.codec import RowCodec, decode_cursor, encode_cursor, list_scope
from daemon.store.engine import Writer, run_in_thread
from daemon.store.ids import is_uuid
from daemon.store.schema import CLOCK_COLUMNS, MAP_COLUMNS
from daemon.store.sql import Compiled, get_sql, list_sql, workspace_deleted_at_sql
from daemon.store.txn import Stamp, WriteContext, WriteOp

MAX_LIMIT = 1000
#: PostgreSQL's text and jsonb cannot hold U+0000: a row holding it could never be pushed, and
#: its batch would fail (22P05) again and again, holding back every row behind it. Refused.
NUL_TEXT = "must not contain U+0000 (the NUL character), which the cloud cannot store"
#: A list page ends early once its rows hold this much text (JSON columns are text too): 1000
#: messages of 512 KiB would make one reply of half a gigabyte, more than a client takes in
#: one frame (ui_bridge.client: 64 MiB) or should hold at once. ``next_cursor`` goes on.
PAGE_BYTES = 8 << 20
Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Page:
    """One page of a keyset-paginated list; pass ``next_cursor`` back to get the next one."""

    items: list[dict[str, Any]]
    next_cursor: str | None


# -- input checks (pure; raise InvalidInput naming the field) ---------------------------------


def text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string")
    return no_nul(field, value)


def optional_text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string or null")
    return no_nul(field, value)


def no_nul(field: str, value: str) -> str:
    if "\x00" in value:
        raise InvalidInput(field, NUL_TEXT)
    return value


def integer(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**53:
        raise InvalidInput(field, "must be an integer")
    return value


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def json_value(field: str, value: Any) -> Any:
    """``value`` if it is JSON the store keeps as it is: no text holding U+0000, and only
    numbers kept exactly (daemon/jsonnumbers.py: the local API refuses the others alike)."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        _refuse_wide(field, value)
        raise InvalidInput(field, "must be a JSON value") from None
    if has_wide(value):
        _refuse_wide(field, value)
    if b"\\u0000" in encoded:  # (orjson escapes U+0000 so; an escaped backslash may precede)
        where = text_at(value, lambda text: "\x00" in text)
        if where is not None:
            raise InvalidInput(field, f"{NUL_TEXT} {where}".rstrip())
    return value


def _refuse_wide(field: str, value: Any) -> None:
    where = wide_path(value)
    if where is not None:
        raise InvalidInput(field, f"{WIDE_NUMBER} at {where}" if where else WIDE_NUMBER)


# JSON columns are NOT NULL in the cloud: a null is stored as the column's empty value, here as
# there, so that a row pulled back from the cloud equals the row this device wrote.


def json_object(field: str, value: Any) -> dict[str, Any]:
    """A JSON object; null is stored as ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be an object or null")
    return json_value(field, value)  # type: ignore[no-any-return]


def json_array(field: str, value: Any) -> list[Any]:
    """A JSON array; null is stored as ``[]``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(field, "must be an array or null")
    return json_value(field, value)  # type: ignore[no-any-return]


def json_document(field: str, value: Any) -> Any:
    """Any JSON value; null is stored as ``{}`` (a task's payload and progress)."""
    return {} if value is None else json_value(field, value)


def identifier(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 100:
        raise InvalidInput(field, "must be an id string")
    return value


def limit_value(limit: Any) -> int:
    value = integer("limit", limit)
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {MAX_LIMIT}")
    return value


def require_workspace(ctx: WriteContext, workspace_id: str) -> None:
    """InvalidInput unless the live workspace exists (checked inside the write)."""
    if not ctx.exists("workspaces", workspace_id):
        raise InvalidInput("workspace_id", missing(ctx, "workspaces", "workspace", workspace_id))


def missing(ctx: WriteContext, table: str, entity: str, id: str) -> str:
    """Why no live row of ``table`` has ``id``: it is deleted, or unknown (a refusal's text; one
    more lookup, on the refusal's path only)."""
    if ctx.exists(table, id, live=False):
        return f"{entity} {id!r} is deleted"
    return f"unknown {entity} {id!r}"


def require_live_workspace_of(ctx: WriteContext, row: dict[str, Any], entity: str) -> None:
    """InvalidInput on ``id`` when ``row``'s workspace is tombstoned (see the module doc)."""
    workspace_id = row.get("workspace_id")
    if workspace_id is None:
        return
    found = ctx.conn.execute(workspace_deleted_at_sql(), {"_id": workspace_id}).fetchone()
    if found is not None and found[0] is not None:
        raise InvalidInput("id", deleted_workspace(entity, row["id"], workspace_id))


def deleted_workspace(entity: str, id: str, workspace_id: str) -> str:
    """Why a write into a deleted workspace is refused."""
    return (
        f"{entity} {id!r} belongs to deleted workspace {workspace_id!r}:"
        " the rows of a deleted workspace can no longer change"
    )


def check_fields(fields: Mapping[str, Any], checks: Mapping[str, Check]) -> dict[str, Any]:
    """Validate a partial update; unknown fields are refused."""
    if not fields:
        raise InvalidInput("fields", "nothing to update")
    out: dict[str, Any] = {}
    for name, value in fields.items():
        check = checks.get(name)
        if check is None:
            raise InvalidInput(name, "unknown or read-only field")
        out[name] = check(name, value)
    return out


# -- repositories -----------------------------------------------------------------------------


class Repo:
    """Reads through the reader connection, writes through the group-committing writer."""

    table: str
    entity: str
    #: rows belong to a workspace: lists leave out those of a tombstoned one
    in_workspace: bool = False
    #: rows belong to a conversation (a ``conversation_id`` filter): lists of a tombstoned
    #: conversation, or of one in a tombstoned workspace, are empty
    in_conversation: bool = False

    def __init__(self, writer: Writer, reader: aiosqlite.Connection, codec: RowCodec) -> None:
        self._writer = writer
        self._reader = reader
        self._codec = codec

    async def get(self, id: str) -> dict[str, Any]:
        """The row (tombstoned rows too, with ``deleted_at`` set); NotFound if absent."""
        identifier("id", id)
        row = await run_in_thread(self._reader, _read_one, self._codec, get_sql(self.table), id)
        if row is None:
            raise NotFound(self.entity, id)
        return row

    async def _list(
        self,
        filters: dict[str, Any],
        *,
        limit: int,
        cursor: str | None,
        cursor_field: str,
        bare_ids: bool = False,
    ) -> Page:
        keys = tuple(sorted(filters))
        return await read_page(
            self._reader,
            self._codec.decode_shown,
            lambda after: list_sql(
                self.table, keys, after, self.in_workspace, self.in_conversation
            ),
            filters,
            limit=limit,
            cursor=cursor,
            cursor_field=cursor_field,
            bare_ids=bare_ids,
        )

    def _write(self, op: WriteOp) -> Awaitable[dict[str, Any]]:
        """``op``'s result once committed (not a coroutine itself: one less per write)."""
        return self._writer.submit(op, small=True)


def _read_one(
    conn: sqlite3.Connection, codec: RowCodec, sql: str, id: str
) -> dict[str, Any] | None:
    values = conn.execute(sql, {"_id": id}).fetchone()
    return None if values is None else codec.decode_shown(values)


async def read_page(
    reader: aiosqlite.Connection,
    decode: Callable[[tuple[Any, ...]], dict[str, Any]],
    query: Callable[[bool], Compiled],
    params: dict[str, Any],
    *,
    limit: int,
    cursor: str | None,
    cursor_field: str = "cursor",
    bare_ids: bool = False,
) -> Page:
    """One page of a keyset list ordered by id. ``query(after)`` is its statement, which binds
    ``_limit`` and, when ``after`` (a ``cursor`` was given), ``_after``: the id the page starts
    after. ``decode`` makes each item of a row's values. A cursor is refused by any list but
    the one (with the same ``params``) that returned it; with ``bare_ids``, ``cursor`` may also
    be an id (the rows after it)."""
    limit = limit_value(limit)
    scope = list_scope(query(False).sql, params)
    if cursor is None:
        after = None
    elif bare_ids and is_uuid(cursor):
        after = cursor
    else:
        after = decode_cursor(cursor, cursor_field, scope)
    compiled = query(after is not None)
    bound = compiled.params({**params, "_limit": limit + 1})
    if after is not None:
        bound["_after"] = after
    rows, more = await run_in_thread(reader, _read_page, decode, compiled.sql, bound, limit)
    return Page(rows, encode_cursor(rows[-1]["id"], scope) if more else None)


def _read_page(
    conn: sqlite3.Connection,
    decode: Callable[[tuple[Any, ...]], dict[str, Any]],
    sql: str,
    params: dict[str, Any],
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` rows, fewer once they hold ``PAGE_BYTES`` of text (at least one row);
    and whether more rows follow."""
    rows: list[dict[str, Any]] = []
    size = 0
    for values in conn.execute(sql, params):
        if len(rows) == limit or size >= PAGE_BYTES:
            return rows, True
        rows.append(decode(values))
        size += sum(len(v) if isinstance(v, str | bytes) else 8 for v in values)
    return rows, False


# -- generic mutations of mutable rows ----------------------------------------------------------


def live_row(
    ctx: WriteContext, table: str, entity: str, id: str, *, repairs: Collection[str] = ()
) -> dict[str, Any]:
    """The row a write changes (inside it): NotFound unless it exists and is live (``deleted``
    when it is tombstoned), InvalidInput when its workspace is deleted (module doc). A damaged
    row (DamagedRow) only when the write overwrites every damaged column (``repairs``, never
    its clocks): then with those columns null and named in ``damaged``."""
    try:
        row = ctx.fetch(table, id)
    except DamagedRow as exc:
        if "field_hlc" in exc.columns or not set(exc.columns).issubset(repairs):
            raise
        row = ctx.fetch_shown(table, id)
    if row is None or row["deleted_at"] is not None:
        raise NotFound(entity, id, deleted=row is not None)
    require_live_workspace_of(ctx, row, entity)
    return row


def update_op(
    table: str,
    entity: str,
    id: str,
    fields: dict[str, Any],
    topic: str,
    *,
    guard: Callable[[dict[str, Any]], None] | None = None,
) -> WriteOp:
    """Partial update: only fields whose value changes get a new clock; no change, no event.
    A row of a deleted workspace refuses (InvalidInput, see the module doc); so does whatever
    ``guard(row)`` (the stored row, inside the write) raises."""

    def op(ctx: WriteContext) -> dict[str, Any]:
        row = live_row(ctx, table, entity, id, repairs=fields)
        if guard is not None:
            guard(row)
        damaged = row.pop("damaged", ())  # overwritten here: the update repairs them
        changes = {
            k: v for k, v in fields.items() if k in damaged or not same_value(table, k, row[k], v)
        }
        if not changes:
            return row
        return write_changes(ctx, table, row, changes, op="update", topic=topic)

    return op


def delete_op(table: str, entity: str, id: str, topic: str) -> WriteOp:
    """Tombstone: ``deleted_at`` is written like any field; deleting twice changes nothing.
    A live row of a deleted workspace refuses (InvalidInput, see the module doc)."""

    def op(ctx: WriteContext) -> dict[str, Any]:
        row = ctx.fetch(table, id)
        if row is None:
            raise NotFound(entity, id)
        if row["deleted_at"] is not None:
            return row
        require_live_workspace_of(ctx, row, entity)
        return write_changes(ctx, table, row, {"deleted_at": None}, op="delete", topic=topic)

    return op


def write_changes(
    ctx: WriteContext,
    table: str,
    row: dict[str, Any],
    changes: dict[str, Any],
    *,
    op: str,
    topic: str,
) -> dict[str, Any]:
    """Write ``changes`` (and ``updated_at``) to ``row`` under one new clock.

    Every field written, ``updated_at`` included, gets that clock, in the row's ``field_hlc``
    and in the outbox entry alike: what this device stores is exactly what it pushes, so the
    change coming back from the cloud is recognised as its own (no event, nothing moves).

    A JSON map that merges key by key (``MAP_COLUMNS``) is given as its new whole value, and
    only the keys that differ from the stored one are written, each under the clock as
    ``"<field>.<key>"`` (a removed key as null, a tombstone): rule R3 of daemon/sync/merge.py,
    whose ``build_edit`` writes the same ``map_patch``. Two devices that change different keys
    of one map both keep theirs.
    """
    stamp = ctx.tick()
    if op == "delete":
        changes = {"deleted_at": stamp.iso}
    written = {**changes, "updated_at": stamp.iso}
    clocks = dict.fromkeys(written, stamp.hlc)
    stored = written
    maps = MAP_COLUMNS.get(table, frozenset()).intersection(changes)
    if maps:
        stored = dict(written)
        for name in maps:
            patch = map_patch(row[name], changes[name])
            written[name] = patch
            stored[name] = {**(row[name] or {}), **patch}
            del clocks[name]
            clocks.update((f"{name}.{key}", stamp.hlc) for key in patch)
    write: dict[str, Any] = {**stored, "hlc": stamp.hlc, "origin": ctx.device_id}
    if "field_hlc" in row:
        write["field_hlc"] = {**row["field_hlc"], **clocks}
    ctx.update_row(table, row["id"], write)
    row.update(write)
    ctx.emit(
        table=table,
        op=op,
        topic=topic,
        row=row,
        fields=written,
        stamp=stamp,
        clocks=clocks if maps else None,
    )
    return row


def same_value(table: str, name: str, old: Any, new: Any) -> bool:
    """Whether writing ``new`` over ``old`` changes nothing a reader sees."""
    if name in MAP_COLUMNS.get(table, ()):
        return not map_patch(old, new)
    return same(old, new)


def insert_new(
    ctx: WriteContext, table: str, row: dict[str, Any], stamp: Stamp, topic: str
) -> None:
    """Insert a row created at ``stamp``: every column it sets (``id`` and bookkeeping aside)
    gets the stamp's clock, in the row's ``field_hlc`` and in the outbox entry alike."""
    fields = new_row_fields(row)
    row["hlc"] = stamp.hlc
    row["origin"] = ctx.device_id
    row["field_hlc"] = dict.fromkeys((k for k in fields if k != "id"), stamp.hlc)
    ctx.insert_row(table, row)
    ctx.emit(table=table, op="insert", topic=topic, row=row, fields=fields, stamp=stamp)


def new_row_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The synced fields of a new row (what its outbox entry carries)."""
    return {k: v for k, v in row.items() if k not in CLOCK_COLUMNS}
