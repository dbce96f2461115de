"""Statements built with SQLAlchemy Core, compiled once to SQLite SQL text and cached.

The hot path runs the cached text on the raw ``sqlite3`` connection in aiosqlite's thread (one
thread hop per transaction); SQLAlchemy never sees a connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from daemon.store import schema

_DIALECT = sqlite.dialect(paramstyle="named")
_POSITIONAL = sqlite.dialect(paramstyle="qmark")

#: The columns an outbox / changelog entry is inserted with (all but the AUTOINCREMENT key).
OUTBOX_KEYS: Final = tuple(str(c.name) for c in schema.outbox.columns if c.name != "id")
#: An outbox entry's ``field_hlc`` when every field it carries (``id`` too) has the entry's
#: ``hlc``: what a local write records (one clock for all it writes), and a message's snapshot.
#: Read back as that clock per field (sync_outbox.py ``read_outbox``); it keeps an entry small:
#: a clock is ~60 bytes of JSON per field, half of a new message's entry spelt out.
OUTBOX_ONE_CLOCK: Final = "{}"
CHANGELOG_KEYS: Final = tuple(str(c.name) for c in schema.changelog.columns if c.name != "seq")
#: The last seq ever assigned to a changelog entry (AUTOINCREMENT keeps it past pruning).
LAST_SEQ_SQL: Final = "SELECT seq FROM sqlite_sequence WHERE name = 'changelog'"
#: The linked workspaces (migrations/local/0003_cloud_links.sql): only they get outbox entries.
LINKED_IDS_SQL: Final = "SELECT workspace_id FROM cloud_links"
#: Row counts of the multi-row INSERTs (``insert_many``), largest first.
_CHUNKS: Final = (64, 16, 4, 1)
#: Parameters per statement at most (SQLITE_MAX_VARIABLE_NUMBER of SQLite before 3.32).
_MAX_PARAMS: Final = 999


@dataclass(frozen=True)
class Compiled:
    """SQL text plus the default values of parameters SQLAlchemy generated (e.g. OFFSET 0)."""

    sql: str
    defaults: dict[str, Any]

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**self.defaults, **values} if self.defaults else values


def compile_statement(stmt: sa.ClauseElement, column_keys: Iterable[str] | None = None) -> Compiled:
    compiled = stmt.compile(
        dialect=_DIALECT, column_keys=None if column_keys is None else list(column_keys)
    )
    defaults = {
        key: value
        for key, value in compiled.params.items()
        if key.startswith("param_") and value is not None
    }
    return Compiled(str(compiled), defaults)


def table(name: str) -> sa.Table:
    return schema.metadata.tables[name]


@cache
def insert_sql(name: str, keys: tuple[str, ...]) -> str:
    return compile_statement(sa.insert(table(name)), keys).sql


@cache
def insert_positional_sql(name: str, keys: tuple[str, ...]) -> str:
    """``INSERT INTO name (keys) VALUES (?, …)``, bound from a tuple in ``keys`` order (the hot
    path: cheaper than named parameters from a dict). ``keys`` must follow the table's order."""
    compiled = sa.insert(table(name)).compile(dialect=_POSITIONAL, column_keys=list(keys))
    if tuple(compiled.positiontup or ()) != keys:
        raise ValueError(f"keys of {name} not in column order: {keys}")
    return str(compiled)


@cache
def insert_row_sql(name: str, keys: tuple[str, ...]) -> tuple[str, bool]:
    """The INSERT of a row dict with ``keys``, and whether it is positional (bind the dict's
    values: its keys follow the table's column order) or named (bind the dict)."""
    try:
        return insert_positional_sql(name, keys), True
    except ValueError:
        return insert_sql(name, keys), False


@cache
def update_sql(name: str, keys: frozenset[str]) -> str:
    t = table(name)
    stmt = sa.update(t).where(t.c.id == sa.bindparam("_id"))
    return compile_statement(stmt, sorted(keys)).sql


@cache
def get_sql(name: str) -> str:
    t = table(name)
    return compile_statement(sa.select(t).where(t.c.id == sa.bindparam("_id"))).sql


@cache
def list_sql(
    name: str,
    filters: tuple[str, ...],
    has_cursor: bool,
    live_workspace: bool = False,
    live_conversation: bool = False,
) -> Compiled:
    """Keyset page of live rows: ``filters`` are equality filters, ordered by id.

    ``live_workspace``: leave out the rows of a tombstoned workspace too (a workspace's delete
    hides its children without writing them; a missing workspace row hides nothing).
    ``live_conversation`` (``conversation_id`` among ``filters``): the page is empty when that
    conversation or its workspace is tombstoned (its children are hidden, never written: an
    undelete, a newer ``deleted_at = null``, shows them again); a missing row hides nothing."""
    t = table(name)
    clauses: list[sa.ColumnElement[bool]] = [t.c.deleted_at.is_(None)]
    clauses.extend(t.c[col] == sa.bindparam(col) for col in filters)
    if live_workspace:
        w = schema.workspaces
        gone = sa.exists().where(w.c.id == t.c.workspace_id, w.c.deleted_at.is_not(None))
        clauses.append(~gone)
    if live_conversation:
        clauses.append(~_conversation_gone())
    if has_cursor:
        clauses.append(t.c.id > sa.bindparam("_after"))
    stmt = sa.select(t).where(*clauses).order_by(t.c.id).limit(sa.bindparam("_limit"))
    return compile_statement(stmt)


def _conversation_gone() -> sa.Exists:
    """Whether the conversation ``:conversation_id`` or its workspace is tombstoned: one
    lookup by key, not correlated with the rows listed (SQLite evaluates it once)."""
    c, w = schema.conversations, schema.workspaces
    return (
        sa.exists()
        .select_from(c.outerjoin(w, w.c.id == c.c.workspace_id))
        .where(
            c.c.id == sa.bindparam("conversation_id"),
            sa.or_(c.c.deleted_at.is_not(None), w.c.deleted_at.is_not(None)),
        )
    )


@cache
def exists_sql(name: str, live: bool) -> str:
    t = table(name)
    clauses: list[sa.ColumnElement[bool]] = [t.c.id == sa.bindparam("_id")]
    if live:
        clauses.append(t.c.deleted_at.is_(None))
    return compile_statement(sa.select(sa.literal_column("1")).select_from(t).where(*clauses)).sql


@cache
def live_conversation_workspace_sql() -> str:
    """``(workspace_id, workspace's deleted_at)`` of a live conversation, in one lookup (the
    workspace's deleted_at is NULL when it is live, or when its row is not here)."""
    t, w = schema.conversations, schema.workspaces
    stmt = (
        sa.select(t.c.workspace_id, w.c.deleted_at)
        .select_from(t.outerjoin(w, w.c.id == t.c.workspace_id))
        .where(t.c.id == sa.bindparam("_id"), t.c.deleted_at.is_(None))
    )
    return compile_statement(stmt).sql


@cache
def workspace_deleted_at_sql() -> str:
    """A workspace's ``deleted_at`` (no row: the workspace is not here)."""
    w = schema.workspaces
    return compile_statement(sa.select(w.c.deleted_at).where(w.c.id == sa.bindparam("_id"))).sql


@cache
def meta_get_sql() -> str:
    t = schema.meta
    return compile_statement(sa.select(t.c.value).where(t.c.key == sa.bindparam("key"))).sql


@cache
def meta_delete_sql() -> str:
    t = schema.meta
    return compile_statement(sa.delete(t).where(t.c.key == sa.bindparam("key"))).sql


@cache
def meta_put_sql() -> str:
    t = schema.meta
    stmt = sqlite.insert(t).values(key=sa.bindparam("key"), value=sa.bindparam("value"))
    stmt = stmt.on_conflict_do_update(index_elements=[t.c.key], set_={"value": stmt.excluded.value})
    return compile_statement(stmt).sql


@cache
def changelog_read_sql() -> Compiled:
    t = schema.changelog
    stmt = (
        sa.select(t.c.seq, t.c.topic, t.c.data)
        .where(t.c.seq > sa.bindparam("after"))
        .order_by(t.c.seq)
        .limit(sa.bindparam("_limit"))
    )
    return compile_statement(stmt)


@cache
def changelog_prune_sql() -> str:
    t = schema.changelog
    return compile_statement(sa.delete(t).where(t.c.seq < sa.bindparam("keep_from"))).sql


@cache
def changelog_first_sql() -> str:
    return compile_statement(sa.select(sa.func.min(schema.changelog.c.seq))).sql


@cache
def changelog_prune_sized_sql() -> str:
    """The count prune, returning each pruned entry's ``length(data)`` (changelog_size.py)."""
    t = schema.changelog
    stmt = sa.delete(t).where(t.c.seq < sa.bindparam("keep_from"))
    return compile_statement(stmt.returning(sa.func.length(t.c.data))).sql


@cache
def changelog_sizes_sql() -> str:
    """``(seq, length(data))`` of the entries before ``before``, oldest first."""
    t = schema.changelog
    stmt = (
        sa.select(t.c.seq, sa.func.length(t.c.data))
        .where(t.c.seq < sa.bindparam("before"))
        .order_by(t.c.seq)
    )
    return compile_statement(stmt).sql


@cache
def changelog_chars_after_sql() -> str:
    """The total ``length(data)`` of the entries after ``after``."""
    t = schema.changelog
    stmt = sa.select(sa.func.total(sa.func.length(t.c.data))).where(t.c.seq > sa.bindparam("after"))
    return compile_statement(stmt).sql


def insert_many(
    conn: sqlite3.Connection, table: str, keys: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (values in ``keys`` order), in order, with multi-row INSERTs of a few
    fixed sizes: one SQLite call per up to 64 rows instead of one per row (``executemany``
    steps and resets its statement per row, and an AUTOINCREMENT table's counter is written
    once per statement), about half the cost; the few statements stay cached."""
    done = 0
    for size in _CHUNKS:
        if size * len(keys) > _MAX_PARAMS and size > 1:
            continue
        sql = _values_sql(table, keys, size)
        while len(rows) - done >= size:
            conn.execute(sql, list(chain.from_iterable(rows[done : done + size])))
            done += size


@cache
def _values_sql(table: str, keys: tuple[str, ...], size: int) -> str:
    one = f"({', '.join('?' * len(keys))})"
    return f"INSERT INTO {table} ({', '.join(keys)}) VALUES {', '.join([one] * size)}"
