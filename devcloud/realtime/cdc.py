"""postgres_changes from PostgreSQL: capture triggers + LISTEN, and per-subscriber delivery.

``start()`` applies ``capture.sql`` (idempotent) and LISTENs on ``devcloud_realtime`` with one
connection held from the pool. Notifications go through a bounded queue to one dispatcher task,
so changes are delivered in commit order.

The triggers notify only for tables some server watches (``devcloud_realtime.watched``): this
feed writes its subscribers' tables there, keyed by its LISTEN connection's backend pid, before a
join is confirmed, and removes them at the next idle tick or unwanted notification after the last
subscriber of a table leaves. So writes nobody subscribes to cost neither NOTIFY nor parsing.

Each notification announces the rows one statement changed, as many as fit (capture.sql). The
notifications waiting in the queue are taken together (up to ``MAX_BATCH`` of them, in commit
order) and their changes handled ``MAX_BATCH`` at a time: subscribers are grouped by identical
claims, and each group judges all the changes its bindings want in one
``ctx.transaction_as(claims)`` (columns and policies read once per table,
the row images of a table in one query: a 1000-row sync_push costs a few round trips, not
thousands), then each subscriber gets its changes in order:

* the columns are those the claims' role may SELECT (none: nothing is delivered);
* the row image the trigger sent (new row for INSERT/UPDATE, old row for DELETE) is checked
  against the SELECT policies that apply to the role (rls.py), so a row is delivered exactly
  when the subscriber could have read it as the change wrote it — also when a later change
  already updated or deleted it (Realtime instead re-reads the row, and sends deletes to all);
* a row too large for the notification is read back by key under the claims (RLS applies).

Filters then run per binding on the record (for DELETE on the old row). DELETE payloads carry
only the primary key, as in Realtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from importlib import resources
from typing import Any

import asyncpg

from devcloud.context import Devcloud
from devcloud.realtime import channel as ch
from devcloud.realtime.changes import (
    Change,
    Column,
    build_payload,
    dumps_text,
    loads_exact,
    matching_ids,
    parse_notifications,
)
from devcloud.realtime.channel import Binding
from devcloud.realtime.hub import Subscriber
from devcloud.realtime.rls import quote_ident, visible_images

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "devcloud_realtime"
CAPTURE_LOCK_KEY = 0x73796E6364_52  # "syncd" + "R": serialises concurrent capture.sql appliers
MAX_PENDING = 10_000
# Changes judged together (one transaction per group of claims), and notifications taken from
# the queue at once. A quarter of a socket's send queue (session.MAX_QUEUE): one batch alone
# never gets a client that keeps up dropped.
MAX_BATCH = 256
LISTENER_CHECK_SECONDS = 5.0
# A joining channel's tables stay watched this long before its bindings must be active (the
# join is confirmed only after they are watched; a join that never activates lets them go).
JOIN_GRACE_SECONDS = 30.0
_WATCH_SQL = "SELECT devcloud_realtime.watch($1, $2::text[], $3::text[])"

TableKey = tuple[str, str]  # (schema, table); table "*" = every table of the schema

_COLUMNS_SQL = """
SELECT a.attname, t.typname
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
  AND has_column_privilege(a.attrelid, a.attnum, 'SELECT')
ORDER BY a.attnum
"""

_PUBLISHED_SQL = """
SELECT p.schemaname, p.tablename, array_agg(a.attname::text) AS columns
FROM pg_catalog.pg_publication_tables p
JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE p.pubname = 'supabase_realtime'
GROUP BY p.schemaname, p.tablename
"""


def capture_sql() -> str:
    return resources.files("devcloud.realtime").joinpath("capture.sql").read_text("utf-8")


class ChangeFeed:
    """LISTEN/NOTIFY change capture feeding the hub's subscribers."""

    def __init__(
        self,
        ctx: Devcloud,
        subscribers: Callable[[], Iterable[Subscriber]],
        *,
        join_grace: float = JOIN_GRACE_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.subscribers = subscribers
        self.join_grace = join_grace
        self._queue: asyncio.Queue[str] = asyncio.Queue(MAX_PENDING)
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._watch_lock = asyncio.Lock()
        self._joining: dict[TableKey, float] = {}  # tables of joins not yet active -> deadline
        self._watched: frozenset[TableKey] | None = None  # as last written, for _watched_pid
        self._watched_pid: int | None = None

    async def start(self) -> None:
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CAPTURE_LOCK_KEY)
            await conn.execute(capture_sql())
        await self._listen()
        await self.update_watch()  # nothing watched yet; forgets the tables of dead servers
        self._task = asyncio.create_task(self._dispatch_loop(), name="realtime-cdc")
        logger.info("realtime.cdc.started")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                # the connection goes back to the pool, alive: its pid must not stay watched
                await listener.execute(_WATCH_SQL, listener.get_server_pid(), [], [])
            with suppress(asyncpg.PostgresError, OSError):
                await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
            await self.ctx.pool.release(listener)

    async def _listen(self) -> None:
        self._listener = await self.ctx.pool.acquire()
        await self._listener.add_listener(NOTIFY_CHANNEL, self._on_notify)

    async def _relisten_if_lost(self) -> None:
        # Changes committed while the LISTEN connection was down are lost (at-most-once, as in
        # Realtime); clients catch up by pulling after every (re)subscribe.
        if self._listener is not None and not self._listener.is_closed():
            return
        logger.warning("realtime.cdc.listener_lost: reconnecting")
        if self._listener is not None:
            with suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                await self.ctx.pool.release(self._listener)
        self._listener = None
        await self._listen()
        await self.update_watch()  # the same tables, under the new connection's pid

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            logger.warning("realtime.cdc.overflow: change dropped (dispatcher too slow)")

    async def _dispatch_loop(self) -> None:
        while True:
            try:  # asyncio.timeout: 3.11's wait_for can swallow stop()'s cancel meeting a change
                async with asyncio.timeout(LISTENER_CHECK_SECONDS):
                    text: str | None = await self._queue.get()
            except TimeoutError:
                text = None
            try:
                if text is None:
                    await self._relisten_if_lost()
                    await self.update_watch()
                else:
                    await self.dispatch_many([text, *self._drain(MAX_BATCH - 1)])
            except Exception:  # supervisor boundary: one bad change must not stop the feed
                logger.exception("realtime.cdc.dispatch_failed")

    def _drain(self, limit: int) -> list[str]:
        """The notifications already queued, up to ``limit`` (they are judged together)."""
        texts: list[str] = []
        while len(texts) < limit and not self._queue.empty():
            texts.append(self._queue.get_nowait())
        return texts

    async def prepare(self, bindings: Sequence[Binding]) -> list[str]:
        """Attach capture triggers to newly published tables; errors for unusable bindings."""
        try:
            async with self.ctx.pool.acquire() as conn:
                await conn.execute("SELECT devcloud_realtime.attach_triggers()")
                rows = await conn.fetch(_PUBLISHED_SQL)
        except (asyncpg.PostgresError, OSError) as exc:
            logger.warning("realtime.cdc.prepare_failed: %s", exc)
            return ["UnableToConnectToProject: the database is not reachable"]
        published = {(r["schemaname"], r["tablename"]): set(r["columns"]) for r in rows}
        errors = [e for e in (_binding_error(b, published) for b in bindings) if e is not None]
        if errors:
            return errors
        deadline = time.monotonic() + self.join_grace
        for key in table_keys(bindings):
            self._joining[key] = deadline
        try:
            await self.update_watch()
        except (asyncpg.PostgresError, OSError) as exc:
            logger.warning("realtime.cdc.watch_failed: %s", exc)
            return ["UnableToConnectToProject: the database is not reachable"]
        return []

    def wanted_tables(self) -> frozenset[TableKey]:
        """The tables this server's subscribers (and the joins under way) bind to."""
        now = time.monotonic()
        self._joining = {key: end for key, end in self._joining.items() if end > now}
        wanted = set(self._joining)
        for subscriber in self.subscribers():
            wanted.update(table_keys(subscriber.config.bindings))
        return frozenset(wanted)

    async def update_watch(self) -> None:
        """Write the wanted tables for the capture triggers, when they changed."""
        async with self._watch_lock:
            listener = self._listener
            if listener is None or listener.is_closed():
                return  # the next idle tick listens again and writes them
            pid = listener.get_server_pid()
            wanted = self.wanted_tables()
            if wanted == self._watched and pid == self._watched_pid:
                return
            ordered = sorted(wanted)
            async with self.ctx.pool.acquire() as conn, conn.transaction():
                if self._watched_pid not in (None, pid):  # an earlier LISTEN connection
                    await conn.execute(_WATCH_SQL, self._watched_pid, [], [])
                await conn.execute(
                    _WATCH_SQL, pid, [k[0] for k in ordered], [k[1] for k in ordered]
                )
            self._watched, self._watched_pid = wanted, pid
            logger.debug("realtime.cdc.watching %s", ordered)

    async def dispatch_many(self, texts: Sequence[str]) -> None:
        """Deliver notifications, in their order, to every subscriber allowed to see them.

        Subscribers are grouped by identical claims; each group judges all the changes it wants
        in one transaction (see ``_fetch``), then each member gets its changes in order.
        """
        if not any(True for _ in self.subscribers()):
            await self.update_watch()  # the last subscriber left: stop the notifications
            return
        changes = _parsed(texts)
        for start in range(0, len(changes), MAX_BATCH):
            await self._deliver_all(changes[start : start + MAX_BATCH])
        bound = self.wanted_tables()
        tables = {(c.schema, c.table) for c in changes}
        if any(key not in bound and (key[0], "*") not in bound for key in tables):
            await self.update_watch()  # nobody wants some table any more

    async def _deliver_all(self, changes: list[Change]) -> None:
        """Judge ``changes`` once per group of identical claims; deliver them in order."""
        groups: dict[str, list[Subscriber]] = {}
        for subscriber in self.subscribers():
            key = json.dumps(subscriber.claims, sort_keys=True, default=str)
            groups.setdefault(key, []).append(subscriber)
        for members in groups.values():
            wants: dict[tuple[str, str, str], bool] = {}  # (schema, table, type): some member
            wanted = [c for c in changes if _wanted_by(members, c, wants)]
            if wanted:
                judged = await self._judged(wanted, members[0].claims)
                shapes: dict[int, _Shape] = {}  # per columns list judged: its derived forms
                for change, (columns, record) in zip(wanted, judged, strict=True):
                    shape = shapes.get(id(columns))
                    if shape is None:
                        shape = shapes[id(columns)] = _Shape(columns)
                    _deliver(change, members, shape, record)

    async def _judged(self, changes: list[Change], claims: dict[str, Any]) -> list[Judged]:
        """``_fetch``, and when its transaction fails (a table dropped meanwhile, a role that may
        not read a table), each change on its own so that one cannot cost the others."""
        try:
            return await self._fetch(changes, claims)
        except asyncpg.PostgresError as exc:
            if len(changes) > 1:
                return [(await self._judged([change], claims))[0] for change in changes]
            if not isinstance(exc, asyncpg.InsufficientPrivilegeError):
                change = changes[0]
                logger.warning(
                    "realtime.cdc.fetch_failed %s.%s: %s", change.schema, change.table, exc
                )
            return [([], None)]

    async def _fetch(self, changes: Sequence[Change], claims: dict[str, Any]) -> list[Judged]:
        """Per change, the columns the claims may read and the record to send (no columns: not
        visible), judged in one transaction: the columns and the policies once per table, the
        row images the trigger sent all at once per table (rls.visible_images)."""
        async with self.ctx.transaction_as(claims) as conn:
            columns_of: dict[TableKey, list[Column]] = {}
            for change in changes:
                key = (change.schema, change.table)
                if key not in columns_of:
                    relation = f"{quote_ident(change.schema)}.{quote_ident(change.table)}"
                    rows = await conn.fetch(_COLUMNS_SQL, relation)
                    columns_of[key] = [Column(r[0], r[1]) for r in rows]
            visible = await _visible(conn, changes, columns_of)
            judged: list[Judged] = []
            for i, change in enumerate(changes):
                columns = columns_of[(change.schema, change.table)]
                if not columns:
                    judged.append(([], None))
                elif _image(change) is not None:  # judged as the change wrote it
                    record = None if change.type == "DELETE" else change.new
                    judged.append((columns, record) if i in visible else ([], None))
                else:  # the row did not fit in the notification: read it as it is now
                    judged.append((columns, await _read_back(conn, change, columns)))
        return judged


Judged = tuple[list[Column], dict[str, Any] | None]


def _parsed(texts: Sequence[str]) -> list[Change]:
    """The changes the notifications announce, in order; what cannot be read is logged."""
    changes: list[Change] = []
    for text in texts:
        try:
            found, problems = parse_notifications(text)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("realtime.cdc.bad_notification: %s", exc)
            continue
        for problem in problems:
            logger.warning("realtime.cdc.bad_notification: %s", problem)
        changes.extend(found)
    return changes


def _wants(subscriber: Subscriber, change: Change) -> bool:
    return any(
        b.wants(change.schema, change.table, change.type) for b in subscriber.config.bindings
    )


def _wanted_by(
    members: list[Subscriber], change: Change, memo: dict[tuple[str, str, str], bool]
) -> bool:
    """Whether some of ``members`` binds to ``change`` (memoised per schema, table and type)."""
    key = (change.schema, change.table, change.type)
    found = memo.get(key)
    if found is None:
        found = memo[key] = any(_wants(s, change) for s in members)
    return found


class _Shape:
    """A judged column list and what every payload of it shares: built once per batch."""

    __slots__ = ("columns", "types", "described")

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        self.types = {column.name: column.type for column in columns}
        self.described = [{"name": column.name, "type": column.type} for column in columns]


def _image(change: Change) -> dict[str, Any] | None:
    """The row image to judge: the old row (or key) of a DELETE, else the new row if sent."""
    return (change.old or change.pk) if change.type == "DELETE" else change.new


async def _visible(
    conn: asyncpg.Connection, changes: Sequence[Change], columns_of: dict[TableKey, list[Column]]
) -> set[int]:
    """Indexes of the changes whose row image the current claims may read."""
    by_table: dict[TableKey, list[int]] = {}
    for i, change in enumerate(changes):
        key = (change.schema, change.table)
        if columns_of[key] and _image(change) is not None:
            by_table.setdefault(key, []).append(i)
    visible: set[int] = set()
    for (schema, table), indexes in by_table.items():
        images = [_image(changes[i]) or {} for i in indexes]
        keys = {name for i in indexes for name in changes[i].pk}
        flags = await visible_images(conn, schema, table, images, keys)
        visible.update(i for i, ok in zip(indexes, flags, strict=True) if ok)
    return visible


async def _read_back(
    conn: asyncpg.Connection, change: Change, columns: list[Column]
) -> dict[str, Any] | None:
    """The changed row as it is now, read under the current claims (RLS applies)."""
    relation = f"{quote_ident(change.schema)}.{quote_ident(change.table)}"
    names = ", ".join(quote_ident(c.name) for c in columns)
    where = " AND ".join(
        f"t.{quote_ident(k)} ="
        f" (jsonb_populate_record(NULL::{relation}, $1::jsonb)).{quote_ident(k)}"
        for k in change.pk
    )
    sql = f"SELECT to_jsonb(r) FROM (SELECT {names} FROM {relation} t WHERE {where}) r"
    value = await conn.fetchval(sql, dumps_text(change.pk))
    return loads_exact(value) if value is not None else None


def _deliver(
    change: Change,
    members: list[Subscriber],
    shape: _Shape,
    record: dict[str, Any] | None,
) -> None:
    columns = shape.columns
    if not columns or (change.type != "DELETE" and record is None):
        return  # invisible to these claims (RLS), or gone already
    for subscriber in members:
        if subscriber.closed:
            continue
        bindings = subscriber.config.bindings
        ids = matching_ids(bindings, change, record, columns, types=shape.types)
        if not ids:
            continue
        select = _select_of(bindings, ids)
        described = shape.described if select is None else None
        payload = build_payload(change, ids, columns, record, select, described=described)
        subscriber.send(ch.push(subscriber.topic, "postgres_changes", payload))


def table_keys(bindings: Iterable[Binding]) -> set[TableKey]:
    """The (schema, table) pairs the bindings watch; table "*" for a whole schema."""
    return {(b.schema, b.table or "*") for b in bindings}


def _binding_error(binding: Binding, published: dict[tuple[str, str], set[str]]) -> str | None:
    """Why a binding cannot work (its table is not published, its filter column does not exist)."""
    if binding.table is None:
        return None
    columns = published.get((binding.schema, binding.table))
    if columns is None:
        return (
            "Unable to subscribe to changes with given parameters. Please check Realtime is"
            f" enabled for the given connect parameters: [schema: {binding.schema},"
            f" table: {binding.table}, filters: []]"
        )
    if binding.filter is not None and binding.filter.column not in columns:
        return f"invalid column for filter {binding.filter.column}"
    return None


def _select_of(bindings: Sequence[Binding], ids: list[int]) -> list[str] | None:
    """The columns to send: the union of the matched bindings' ``select``s, or all of them."""
    chosen: set[str] = set()
    for binding in bindings:
        if binding.id in ids:
            if binding.select is None:
                return None
            chosen.update(binding.select)
    return sorted(chosen)
