"""Tables and statements of cloud sync's store side, compiled once (see sql.py).

The two tables added by migrations/local/0003_cloud_links.sql are declared here, on the
store's shared ``metadata`` (test_migrations checks them column for column). Sets of ids are
passed as ONE JSON-array parameter and expanded by ``json_each``, so a statement compiles
once whatever the page size.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from daemon.store import schema
from daemon.store.sql import Compiled, compile_statement, table
from daemon.types import LOCAL_ONLY_ROLES

cloud_links = sa.Table(
    "cloud_links",
    schema.metadata,
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("org_id", sa.Text, nullable=False),
    sa.Column("path", sa.Text),
    sa.Column("linked_at", sa.Text, nullable=False),
)

sync_parked = sa.Table(
    "sync_parked",
    schema.metadata,
    sa.Column("table_name", sa.Text, primary_key=True),
    sa.Column("row_id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text),
    sa.Column("parent_id", sa.Text, nullable=False),
    sa.Column("row", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)

OUTBOX_COLUMNS = ("id", "table_name", "row_id", "workspace_id", "fields", "field_hlc", "hlc")


def in_json(column: sa.ColumnElement[str], param: str) -> sa.ColumnElement[bool]:
    """``column IN (the elements of the JSON array bound to :param)``."""
    each = sa.func.json_each(sa.bindparam(param)).table_valued("value")
    return column.in_(sa.select(each.c.value))


def json_ids(ids: Iterable[str | None]) -> str:
    """The value of an ``in_json`` parameter: the ids (None left out) as a sorted JSON array."""
    return orjson.dumps(sorted({i for i in ids if i is not None})).decode()


# -- rows -------------------------------------------------------------------------------------


@cache
def rows_by_ids_sql(name: str) -> str:
    t = table(name)
    return compile_statement(sa.select(t).where(in_json(t.c.id, "_ids"))).sql


@cache
def existing_ids_sql(name: str) -> str:
    t = table(name)
    return compile_statement(sa.select(t.c.id).where(in_json(t.c.id, "_ids"))).sql


@cache
def upsert_sql(name: str) -> str:
    """Insert a full row, or overwrite every column of the existing one (named parameters)."""
    t = table(name)
    stmt = sqlite.insert(t)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.id],
        set_={c.name: stmt.excluded[c.name] for c in t.columns if c.name != "id"},
    )
    return compile_statement(stmt, [c.name for c in t.columns]).sql


@cache
def workspace_rows_sql(name: str) -> str:
    """Every row (tombstones too) of one workspace, in id order."""
    t = table(name)
    key = t.c.id if name == "workspaces" else t.c.workspace_id
    assert name != "messages", "messages are snapshot by snapshot_messages_sql"
    return compile_statement(sa.select(t).where(key == sa.bindparam("ws")).order_by(t.c.id)).sql


#: The ``row_id`` of a snapshot range entry (no row has an empty id): one outbox entry that
#: stands for every message a link found in the workspace (sync_outbox.py, "Snapshot ranges").
SNAPSHOT_ROW: Final = ""


def _pushed_messages() -> sa.ColumnElement[bool]:
    """Messages that may leave the device (no local-only role, I6)."""
    m = schema.messages
    roles = sorted(LOCAL_ONLY_ROLES)
    return m.c.role.not_in([sa.literal_column(f"'{r}'") for r in roles])


@cache
def snapshot_conversations_sql() -> str:
    """Each conversation of a workspace in id order, with how many messages to push it holds
    (0 for some: the caller leaves those out): what a snapshot range entry covers.

    Driven from the workspace's conversations, each one's messages counted on
    messages_conversation: a link reads its own workspace's messages, never every message of
    the store (messages have no workspace index, which would cost every send one more index
    write). A message lives in its conversation's workspace (messages.py; the cloud's
    messages_conversation_fkey); the workspace test is kept all the same."""
    c, m = schema.conversations, schema.messages
    count = (
        sa.select(sa.func.count())
        .where(m.c.conversation_id == c.c.id, m.c.workspace_id == c.c.workspace_id)
        .where(_pushed_messages())
        .scalar_subquery()
    )
    stmt = sa.select(c.c.id, count).where(c.c.workspace_id == sa.bindparam("ws")).order_by(c.c.id)
    return compile_statement(stmt).sql


@cache
def snapshot_range_sql() -> Compiled:
    """Up to ``_limit`` messages of one conversation with an id above ``after``, in id order
    (walks messages_conversation: no sort), each as (id, its fields as a JSON object, hlc,
    origin): a snapshot range's rows, as a message's own outbox entry carries them."""
    m = schema.messages
    names = [str(c.name) for c in m.columns if c.name not in schema.CLOCK_COLUMNS]
    pairs: list[sa.ColumnElement[Any]] = []
    for name in names:
        pairs += [sa.literal_column(f"'{name}'"), m.c[name]]
    fields = sa.func.json_object(*pairs)
    stmt = (
        sa.select(m.c.id, fields, m.c.hlc, m.c.origin)
        .where(
            m.c.conversation_id == sa.bindparam("conversation"),
            m.c.id > sa.bindparam("after"),
            _pushed_messages(),
        )
        .order_by(m.c.id)
        .limit(sa.bindparam("_limit"))
    )
    return compile_statement(stmt)


# -- outbox -----------------------------------------------------------------------------------


#: A lost outbox entry (sync_outbox.py ``_keep_lost``: pushed, answered ``superseded`` by a
#: value this device had not seen) is filed under a negative id, below every entry waiting to
#: be pushed: a take (ids above ``_after`` >= 0) and the count (ids above 0) pass it by on
#: the outbox_workspace index, at no cost to the entries that are pushed.
LOST_BELOW: Final = 0


#: The least outbox id (one step into the rowid b-tree): a lost entry is filed below it.
OUTBOX_LEAST_ID_SQL: Final = "SELECT min(id) FROM outbox"


@cache
def outbox_take_sql() -> Compiled:
    """The oldest entries of ONE workspace with an id above ``_after`` (walks the
    (workspace_id, id) index: no sort; ``_after`` >= 0 leaves lost entries out)."""
    o = schema.outbox
    stmt = (
        sa.select(*(o.c[c] for c in OUTBOX_COLUMNS), o.c.origin)
        .where(o.c.workspace_id == sa.bindparam("ws"), o.c.id > sa.bindparam("_after"))
        .order_by(o.c.id)
        .limit(sa.bindparam("_limit"))
    )
    return compile_statement(stmt)


@cache
def outbox_pending_fields_sql() -> str:
    """(row_id, field, entry id, field_hlc) of every outbox entry of the given rows of one
    table, looked up in their workspaces' entries (``_ws``: the outbox_workspace index;
    there is no row index)."""
    o = schema.outbox
    keys = sa.func.json_each(o.c.fields).table_valued("key")
    stmt = (
        sa.select(o.c.row_id, keys.c.key, o.c.id, o.c.field_hlc)
        .select_from(o)
        .join(keys, sa.true())
        .where(
            in_json(o.c.workspace_id, "_ws"),
            o.c.table_name == sa.bindparam("_table"),
            in_json(o.c.row_id, "_ids"),
        )
    )
    return compile_statement(stmt).sql


@cache
def outbox_delete_sql() -> str:
    o = schema.outbox
    return compile_statement(sa.delete(o).where(o.c.id == sa.bindparam("_id"))).sql


@cache
def outbox_attempts_sql() -> str:
    """The most ``attempts`` among the outbox entries whose ids ``_ids`` holds."""
    o = schema.outbox
    stmt = sa.select(sa.func.max(o.c.attempts)).where(in_json(o.c.id, "_ids"))
    return compile_statement(stmt).sql


@cache
def outbox_delete_workspace_sql() -> str:
    o = schema.outbox
    return compile_statement(sa.delete(o).where(o.c.workspace_id == sa.bindparam("ws"))).sql


@cache
def outbox_unlinked_workspaces_sql() -> str:
    """The workspaces (not NULL) with outbox entries that are not linked."""
    o = schema.outbox
    linked = sa.select(cloud_links.c.workspace_id)
    stmt = (
        sa.select(o.c.workspace_id)
        .distinct()
        .where(o.c.workspace_id.is_not(None), o.c.workspace_id.not_in(linked))
    )
    return compile_statement(stmt).sql


@cache
def outbox_delete_chunk_sql() -> Compiled:
    """Delete up to ``_limit`` of one workspace's entries, oldest first (walks the index)."""
    o = schema.outbox
    ids = (
        sa.select(o.c.id)
        .where(o.c.workspace_id == sa.bindparam("ws"))
        .order_by(o.c.id)
        .limit(sa.bindparam("_limit"))
    )
    return compile_statement(sa.delete(o).where(o.c.id.in_(ids.scalar_subquery())))


@cache
def outbox_count_linked_sql() -> str:
    """Entries of linked workspaces waiting to be pushed (not the lost ones: ``LOST_BELOW``),
    a snapshot range entry counted as the messages it has left (at least one; found on the
    partial index outbox_ranges, whose condition ``row_id = ''`` the query repeats)."""
    o = schema.outbox
    linked = sa.select(cloud_links.c.workspace_id)
    one: sa.ColumnElement[int] = sa.literal_column("1")
    left = sa.func.max(sa.func.json_extract(o.c.fields, sa.literal_column("'$.left'")), one) - one
    ranges = (
        sa.select(sa.func.coalesce(sa.func.sum(left), sa.literal_column("0")))
        .where(
            o.c.table_name == sa.literal_column("'messages'"),
            o.c.row_id == sa.literal_column(f"'{SNAPSHOT_ROW}'"),
            o.c.workspace_id.in_(linked),
            o.c.id > sa.literal_column(str(LOST_BELOW)),
        )
        .scalar_subquery()
    )
    stmt = (
        sa.select(sa.func.count() + ranges)
        .select_from(o)
        .where(o.c.workspace_id.in_(linked), o.c.id > sa.literal_column(str(LOST_BELOW)))
    )
    return compile_statement(stmt).sql


@cache
def outbox_fields_sql() -> str:
    o = schema.outbox
    return compile_statement(sa.select(o.c.fields).where(o.c.id == sa.bindparam("_id"))).sql


# -- sync_state, links, parked ----------------------------------------------------------------


@cache
def cursor_get_sql() -> str:
    s = schema.sync_state
    return compile_statement(sa.select(s.c.cursor).where(s.c.scope == sa.bindparam("scope"))).sql


@cache
def cursor_put_sql() -> str:
    s = schema.sync_state
    stmt = sqlite.insert(s).values(
        scope=sa.bindparam("scope"),
        cursor=sa.bindparam("cursor"),
        last_pull_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[s.c.scope],
        set_={
            "cursor": stmt.excluded.cursor,
            "last_pull_at": stmt.excluded.last_pull_at,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    return compile_statement(stmt).sql


@cache
def cursor_delete_sql() -> str:
    s = schema.sync_state
    return compile_statement(sa.delete(s).where(in_json(s.c.scope, "_scopes"))).sql


@cache
def link_put_sql() -> str:
    t = cloud_links
    stmt = sqlite.insert(t)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.workspace_id],
        set_={"org_id": stmt.excluded.org_id, "path": stmt.excluded.path},
    )
    return compile_statement(stmt, [c.name for c in t.columns]).sql


@cache
def link_get_sql() -> str:
    t = cloud_links
    return compile_statement(sa.select(t).where(t.c.workspace_id == sa.bindparam("ws"))).sql


@cache
def links_sql() -> str:
    t = cloud_links
    return compile_statement(sa.select(t).order_by(t.c.linked_at, t.c.workspace_id)).sql


@cache
def link_delete_sql() -> str:
    t = cloud_links
    return compile_statement(sa.delete(t).where(t.c.workspace_id == sa.bindparam("ws"))).sql


@cache
def parked_by_parent_sql() -> str:
    p = sync_parked
    stmt = sa.select(p.c.table_name, p.c.row).where(in_json(p.c.parent_id, "_ids"))
    return compile_statement(stmt.order_by(p.c.table_name, p.c.row_id)).sql


@cache
def parked_get_sql() -> str:
    p = sync_parked
    stmt = sa.select(p.c.row).where(
        p.c.table_name == sa.bindparam("table_name"), p.c.row_id == sa.bindparam("row_id")
    )
    return compile_statement(stmt).sql


@cache
def parked_put_sql() -> str:
    p = sync_parked
    stmt = sqlite.insert(p)
    stmt = stmt.on_conflict_do_update(
        index_elements=[p.c.table_name, p.c.row_id],
        set_={"parent_id": stmt.excluded.parent_id, "row": stmt.excluded.row},
    )
    return compile_statement(stmt, [c.name for c in p.columns]).sql


@cache
def parked_delete_sql() -> str:
    p = sync_parked
    stmt = sa.delete(p).where(
        p.c.table_name == sa.bindparam("table_name"), p.c.row_id == sa.bindparam("row_id")
    )
    return compile_statement(stmt).sql


@cache
def parked_delete_workspace_sql() -> str:
    p = sync_parked
    return compile_statement(sa.delete(p).where(p.c.workspace_id == sa.bindparam("ws"))).sql


# -- conflicts, rejected ----------------------------------------------------------------------


@cache
def conflicts_sql(include_resolved: bool, has_cursor: bool) -> Compiled:
    """A keyset page of conflicts (``_after``, ``_limit``), in id order: the order they arose
    in (UUIDv7 ids)."""
    c = schema.conflicts
    stmt = sa.select(c)
    if not include_resolved:
        stmt = stmt.where(c.c.resolved_at.is_(None))
    return _keyset_page(stmt, c, has_cursor)


@cache
def conflict_get_sql() -> str:
    c = schema.conflicts
    return compile_statement(sa.select(c).where(c.c.id == sa.bindparam("_id"))).sql


@cache
def conflicts_resolve_field_sql() -> str:
    """Mark every open conflict of one field of one row resolved."""
    c = schema.conflicts
    stmt = (
        sa.update(c)
        .where(
            c.c.resolved_at.is_(None),
            c.c.table_name == sa.bindparam("table_name"),
            c.c.row_id == sa.bindparam("row_id"),
            c.c.field == sa.bindparam("field"),
        )
        .values(resolved_at=sa.bindparam("at"))
    )
    return compile_statement(stmt).sql


def _json_path(r: sa.Table, field: str) -> sa.ColumnElement[object]:
    """The rejected change's value of ``field`` (a column name of ours: inlined, so the
    statement has no parameter SQLAlchemy names)."""
    return sa.func.json_extract(r.c.change, sa.literal_column(f"'$.fields.{field}'"))


def _carries_create(r: sa.Table) -> sa.ColumnElement[bool]:
    """The rejected change carried the row's create: its fields hold ``created_at``, which a
    create (a local insert, a link's snapshot, a whole-row push) always writes and no edit
    does. The cloud rejected it, so it does not have the row."""
    return _json_path(r, "created_at").is_not(None)


@cache
def rejected_creates_sql() -> str:
    """(table_name, row_id) of the given rows (``_ids``) whose create the cloud rejected."""
    r = schema.rejected
    stmt = (
        sa.select(r.c.table_name, r.c.row_id)
        .distinct()
        .where(in_json(r.c.row_id, "_ids"), _carries_create(r))
    )
    return compile_statement(stmt).sql


@cache
def rejected_children_sql(column: str) -> str:
    """Ids of rows of ``table_name`` whose rejected create named ``parent`` in ``column``, in
    id order (UUIDv7: the order they were made in)."""
    r = schema.rejected
    parent = _json_path(r, column)
    stmt = (
        sa.select(r.c.row_id)
        .distinct()
        .where(
            r.c.table_name == sa.bindparam("table_name"),
            parent == sa.bindparam("parent"),
            _carries_create(r),
        )
        .order_by(r.c.row_id)
    )
    return compile_statement(stmt).sql


@cache
def rejected_of_row_sql() -> str:
    r = schema.rejected
    stmt = sa.select(r).where(
        r.c.table_name == sa.bindparam("table_name"), r.c.row_id == sa.bindparam("row_id")
    )
    return compile_statement(stmt.order_by(r.c.created_at, r.c.id)).sql


@cache
def rejected_delete_row_sql() -> str:
    r = schema.rejected
    stmt = sa.delete(r).where(
        r.c.table_name == sa.bindparam("table_name"), r.c.row_id == sa.bindparam("row_id")
    )
    return compile_statement(stmt).sql


@cache
def rejected_sql(has_cursor: bool) -> Compiled:
    """A keyset page of rejections (``_after``, ``_limit``), in id order: the order they were
    filed in (UUIDv7 ids)."""
    r = schema.rejected
    return _keyset_page(sa.select(r), r, has_cursor)


def _keyset_page(stmt: sa.Select[Any], t: sa.Table, has_cursor: bool) -> Compiled:
    if has_cursor:
        stmt = stmt.where(t.c.id > sa.bindparam("_after"))
    return compile_statement(stmt.order_by(t.c.id).limit(sa.bindparam("_limit")))


@cache
def count_sql(name: str, open_only: bool = False) -> str:
    t = table(name)
    stmt = sa.select(sa.func.count()).select_from(t)
    if open_only:
        stmt = stmt.where(t.c.resolved_at.is_(None))
    return compile_statement(stmt).sql
