"""The write transaction: what a mutation sees while it runs in the writer's connection thread.

A mutation is a plain function ``op(ctx: WriteContext) -> result``. The writer runs a batch of
them in ONE transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) in one thread hop; when the batch has
more than one mutation a failing one is rolled back alone and the others still commit (group
commit): each runs inside its own SAVEPOINT, or, for a batch of ``rerunnable`` mutations, the
batch runs without one per mutation (two statements less each, ~5 µs of a ~70 µs write) and is
rolled back and run again that way only if a mutation failed after writing something (a failure
that wrote nothing, the usual refused input, needs no undo). Every visible change goes through
``emit``: it writes the outbox entry (what a push needs) and the changelog entry (what UIs see)
in the same transaction as the row.

Only a LINKED workspace's changes get an outbox entry (``syncs``; a row without a workspace
too): an unlinked workspace is local-only data (I6), and linking snapshots its whole state into
the outbox (sync_outbox.py). The set of linked ids is read from ``cloud_links`` at creation;
``link_op``/``unlink_op`` change it as their last step (``set_linked``), so the next op of the
same batch sees it. A batch or savepoint that changed it and rolls back reloads it, and a failed
transaction makes the next batch reload it first: it never misses a committed link.

An inline write (run on the event loop's thread) must never block the loop: it opens its
transaction with ``try_begin``, which gives up at once when another connection holds the
database lock; ``run_batch`` alone (in the writer's thread) waits up to ``busy_timeout``. Once the
writer runs (``learn_busy_timeout``), the connection's own ``busy_timeout`` is 0, so a BEGIN costs
no PRAGMA: only a thread BEGIN that met a lock raises the timeout, for that one retry.

The clock survives a restart without a write per transaction: ``meta.hlc_last`` holds a
high-water mark ``CLOCK_LEAD_MS`` ahead of the clock, rewritten (inside the committing
transaction) only when the clock reaches it, so it is always past every clock value any
committed row, outbox or changelog entry carries. A start resumes from it: after a crash the
clock may run up to ``CLOCK_LEAD_MS`` ahead of the wall time (harmless; never backwards). A
clean close stores the exact clock instead (``save_clock``), so restarts do not add up leads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.errors import DaemonError, StoreError
from daemon.events import ChangeEvent
from daemon.hlc import MAX_WALL_MS, Clock, encode
from daemon.store.changelog_size import read_size, save_size, size_cut
from daemon.store.codec import RowCodec, dump_json_text, iso_ms, now_ms, shown_row
from daemon.store.failures import store_failure
from daemon.store.sql import (
    CHANGELOG_KEYS,
    LAST_SEQ_SQL,
    LINKED_IDS_SQL,
    OUTBOX_KEYS,
    OUTBOX_ONE_CLOCK,
    changelog_first_sql,
    changelog_prune_sized_sql,
    changelog_prune_sql,
    exists_sql,
    get_sql,
    insert_positional_sql,
    insert_row_sql,
    meta_put_sql,
    update_sql,
)

WriteOp = Callable[["WriteContext"], Any]
#: How far ahead of the clock its persisted high-water mark is written (see the module doc).
CLOCK_LEAD_MS = 1000
#: Pruning lets the changelog exceed ``changelog_retain`` (and ``changelog_retain_bytes``) by
#: up to this fraction of it, so a long-running store deletes old entries in chunks rather than
#: one with every commit.
PRUNE_SLACK_DIVISOR = 1024
#: StoreSettings' default, for contexts built without one (tests).
DEFAULT_RETAIN_BYTES = 64 << 20


@dataclass(slots=True)
class Stamp:
    """The clock and wall time of one mutation."""

    hlc: str
    ms: int
    iso: str


@dataclass
class BatchOutcome:
    """What a committed batch produced: one result or exception per op, and the new events."""

    results: list[tuple[bool, Any]] = field(default_factory=list)
    events: list[ChangeEvent] = field(default_factory=list)
    last_seq: int = 0
    first_seq: int = 0
    changes: int = 0  # rows the batch inserted, updated or deleted
    chars: int = 0  # the size of the changelog entries' data it wrote (changelog_size.py)
    #: workspaces whose outbox the batch grew without an event that says so (``queue_push``)
    pushes: frozenset[str] = frozenset()


class WriteContext:
    """Owned by the writer thread; only mutations running in a batch touch it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        clock: Clock,
        codecs: dict[str, RowCodec],
        changelog_retain: int,
        last_seq: int,
        first_seq: int,
        changelog_retain_bytes: int = DEFAULT_RETAIN_BYTES,
        changelog_chars: int | None = None,
    ) -> None:
        """``changelog_chars``: the size of the kept entries (``read_size``; read here when
        not given)."""
        self.conn = conn
        self.clock = clock
        self.device_id = clock.device_id
        self.codecs = codecs
        self._retain = changelog_retain
        self._last_seq = last_seq
        self._first_seq = first_seq
        self._prune_slack = changelog_retain // PRUNE_SLACK_DIVISOR
        self._retain_chars = changelog_retain_bytes
        self._chars_slack = changelog_retain_bytes // PRUNE_SLACK_DIVISOR
        if changelog_chars is None:
            changelog_chars = read_size(conn, first_seq, last_seq)
        self._chars = changelog_chars  # the kept entries' size, as committed
        #: is that size (and the first/last seq) the one in meta? Not known at start (a store
        #: written before the record existed has none): a clean close writes it at least once
        self._chars_saved = False
        self._op_chars = 0  # the size of the entries the running op wrote
        self._events: list[ChangeEvent] = []
        self._pushes: set[str] = set()  # (queue_push) of the op running
        self._wait_busy = ""  # the PRAGMA that restores busy_timeout (learn_busy_timeout)
        #: wall ms of the persisted high-water mark of the clock; 0: unknown, write it at the
        #: next commit (a fresh start, or a commit that failed after writing it)
        self._clock_mark = 0
        self._iso_second = -1  # tick's memo of the ISO text of the current second
        self._iso_prefix = ""
        self._linked: set[str] = set()
        self._links_version = 0  # bumped by set_linked: did an op change the set?
        self._links_stale = False  # a transaction failed: reload before the next batch
        self.reload_links()

    # -- used by mutations -------------------------------------------------------------------

    def tick(self) -> Stamp:
        ms = now_ms()
        second, millis = divmod(ms, 1000)
        if second != self._iso_second:  # iso_ms's text, its date part computed once a second
            self._iso_second, self._iso_prefix = second, iso_ms(second * 1000)[:-4]
        return Stamp(self.clock.now(ms), ms, f"{self._iso_prefix}{millis:03d}Z")

    def stamp(self) -> Stamp:
        """The current wall time under the clock as it is (no tick): for bookkeeping entries
        that are no change of their own (status, rejections, conflicts, pulled pages)."""
        ms = now_ms()
        return Stamp(self.clock.last, ms, iso_ms(ms))

    def fetch(self, table: str, id: str) -> dict[str, Any] | None:
        values = self.conn.execute(get_sql(table), {"_id": id}).fetchone()
        return None if values is None else self.codecs[table].decode(values)

    def fetch_shown(self, table: str, id: str) -> dict[str, Any] | None:
        """``fetch``, a damaged row too (codec.py ``decode_shown``)."""
        values = self.conn.execute(get_sql(table), {"_id": id}).fetchone()
        return None if values is None else self.codecs[table].decode_shown(values)

    def exists(self, table: str, id: str, *, live: bool = True) -> bool:
        return self.conn.execute(exists_sql(table, live), {"_id": id}).fetchone() is not None

    def insert_row(self, table: str, row: dict[str, Any]) -> None:
        codec = self.codecs[table]
        params = row if codec.plain else codec.encode(row)  # only read here: no copy needed
        sql, positional = insert_row_sql(table, tuple(params))
        self.conn.execute(sql, tuple(params.values()) if positional else params)

    def update_row(self, table: str, id: str, changes: dict[str, Any]) -> None:
        params = self.codecs[table].encode(changes)
        sql = update_sql(table, frozenset(params))
        params["_id"] = id
        self.conn.execute(sql, params)

    def emit(
        self,
        *,
        table: str,
        op: str,
        topic: str,
        row: dict[str, Any],
        fields: dict[str, Any],
        stamp: Stamp,
        outbox: bool = True,
        clocks: dict[str, str] | None = None,
    ) -> None:
        """Record a change of ``row``: an outbox entry with the changed ``fields`` and their
        clocks (unless ``outbox`` is false or the row's workspace is not linked: local-only
        data), and a changelog entry. ``clocks``: the entry's clock per field (or map key),
        when not every field carries the stamp's clock."""
        row_id = row["id"]
        workspace_id = workspace_of(table, row)
        if outbox and self.syncs(workspace_id):
            self.conn.execute(
                insert_positional_sql("outbox", OUTBOX_KEYS),
                self.outbox_values(table, op, row_id, workspace_id, fields, stamp, clocks),
            )
        shown = shown_row(table, row)  # as readers see it: no tombstoned map keys
        text = dump_json_text(shown)
        cursor = self.conn.execute(
            insert_positional_sql("changelog", CHANGELOG_KEYS),
            (topic, row_id, workspace_id, text, stamp.iso),  # CHANGELOG_KEYS
        )
        self._op_chars += len(text)
        seq = cursor.lastrowid
        assert seq is not None
        self._events.append(ChangeEvent(seq, topic, dict(shown)))  # callers may keep `row`

    def queue_push(self, workspace_id: str) -> None:
        """Say that this op wrote outbox entries of ``workspace_id`` that no changelog entry of
        this device announces (the events that wake a push: sync/driver.py), e.g. a new
        document's row: once committed, the push listeners hear of it (``BatchOutcome.pushes``)."""
        self._pushes.add(workspace_id)

    def syncs(self, workspace_id: str | None) -> bool:
        """Whether a local change of a row of ``workspace_id`` gets an outbox entry: its
        workspace is linked (a row without a workspace: yes)."""
        return workspace_id is None or workspace_id in self._linked

    def set_linked(self, workspace_id: str, linked: bool) -> None:
        """Record a link or unlink written in the current transaction (its op's last step)."""
        if linked:
            self._linked.add(workspace_id)
        else:
            self._linked.discard(workspace_id)
        self._links_version += 1

    def reload_links(self) -> None:
        """Read the set of linked workspaces from the database (as this connection sees it)."""
        self._linked = {row[0] for row in self.conn.execute(LINKED_IDS_SQL)}
        self._links_stale = False

    def outbox_entry(
        self,
        table: str,
        op: str,
        row_id: str,
        workspace_id: str | None,
        fields: dict[str, Any],
        stamp: Stamp,
    ) -> dict[str, Any]:
        """``outbox_values`` by column name (for a named INSERT)."""
        values = self.outbox_values(table, op, row_id, workspace_id, fields, stamp)
        return dict(zip(OUTBOX_KEYS, values, strict=True))

    def outbox_values(
        self,
        table: str,
        op: str,
        row_id: str,
        workspace_id: str | None,
        fields: dict[str, Any],
        stamp: Stamp,
        clocks: dict[str, str] | None = None,
    ) -> tuple[Any, ...]:
        """The outbox row of a local change of ``fields`` (each under the stamp's clock: the
        one-clock form, ``OUTBOX_ONE_CLOCK``, unless ``clocks`` says otherwise), in
        OUTBOX_KEYS order: the parameters of a positional INSERT (the hot path)."""
        clocks_text = OUTBOX_ONE_CLOCK if clocks is None else dump_json_text(clocks)
        return (table, row_id, workspace_id, op, dump_json_text(fields), clocks_text,
                stamp.hlc, self.device_id, stamp.iso, 0)  # fmt: skip

    def add_events(self, events: Sequence[ChangeEvent], chars: int) -> None:
        """Announce changelog entries the caller wrote itself in bulk, in seq order.

        For writers that insert a page of changelog rows with one ``executemany``; the events'
        seqs must be the seqs those rows got; ``chars``: the total ``len`` of their ``data``.
        """
        self._events.extend(events)
        self._op_chars += chars

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """A changelog-only entry: no row, no outbox entry (e.g. a status snapshot)."""
        stamp = self.stamp()
        self.emit(table="status", op="update", topic=topic, row=data, fields={}, stamp=stamp,
                  outbox=False)  # fmt: skip

    # -- used by the writer ------------------------------------------------------------------

    def learn_busy_timeout(self) -> None:
        """Remember the connection's ``busy_timeout``, then set it to 0: from now on a BEGIN
        waits only where it may (``begin``), and ``try_begin`` costs no PRAGMA."""
        timeout = int(self.conn.execute("PRAGMA busy_timeout").fetchone()[0])
        self._wait_busy = f"PRAGMA busy_timeout = {timeout}"
        self.conn.execute("PRAGMA busy_timeout = 0")

    def restore_busy_timeout(self) -> None:
        """Give the connection its ``busy_timeout`` back (the writer stopped: whatever runs on
        the connection now waits as configured)."""
        if self._wait_busy:
            self.conn.execute(self._wait_busy)
            self._wait_busy = ""

    def try_begin(self) -> bool:
        """``BEGIN IMMEDIATE`` without waiting; ``False`` if another connection holds the lock.

        Only after ``learn_busy_timeout`` (the connection's timeout is 0 then).
        """
        if not self._wait_busy:
            raise StoreError("try_begin before learn_busy_timeout")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                return False
            raise
        return True

    def begin(self) -> None:
        """``BEGIN IMMEDIATE``, waiting up to ``busy_timeout`` for another connection's lock
        (in the writer's thread only: it may block)."""
        conn = self.conn
        if not self._wait_busy:  # the writer is not running: the connection waits by itself
            conn.execute("BEGIN IMMEDIATE")
        elif not self.try_begin():
            conn.execute(self._wait_busy)  # met a lock: wait for it this once
            try:
                conn.execute("BEGIN IMMEDIATE")
            finally:
                conn.execute("PRAGMA busy_timeout = 0")

    def run_batch(
        self,
        ops: Sequence[WriteOp],
        *,
        begun: bool = False,
        until: float = 0.0,
        rerunnable: bool = False,
    ) -> BatchOutcome:
        """Run ``ops`` in one transaction (``begun``: the caller opened it with ``try_begin``);
        raise only if the transaction itself failed.

        ``until``: a ``time.perf_counter()`` deadline past which no further op starts (at least
        one runs); the ops not run have no result (``len(outcome.results) < len(ops)``).
        ``rerunnable``: the caller vouches that running an op again after its writes were rolled
        back is harmless (it touches nothing but the transaction and this context): the ops
        then run without a savepoint each (see the module doc).
        """
        conn = self.conn
        outcome = BatchOutcome()
        if not begun:
            self.begin()
        changes_before = conn.total_changes
        links_before = self._links_version
        chars_before = self._chars
        try:
            if self._links_stale:
                self.reload_links()
            if len(ops) == 1:
                # A lone write needs no savepoint: if it fails, the whole transaction goes.
                keep = self._run_op(ops[0], outcome)
            elif rerunnable:
                outcome = self._run_unguarded(ops, until)
                keep = True
            else:
                self._run_guarded(ops, outcome, until)
                keep = True
            if keep and conn.total_changes != changes_before:
                self._finish(outcome)
                outcome.changes = conn.total_changes - changes_before
                conn.execute("COMMIT")
            elif conn.in_transaction:  # (SQLite ends it itself on e.g. a full disk)
                conn.execute("ROLLBACK")  # failed, or nothing written: skip the commit
                if self._links_version != links_before:
                    self.reload_links()
        except BaseException:
            self._pushes.clear()
            self._links_stale = True  # a link or unlink may be gone with the transaction
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._clock_mark = 0  # a mark written by _finish may be gone with the transaction
            self._chars = chars_before  # (and a prune, and the size it saved)
            self._chars_saved = False
            self._reload_seqs()
            raise
        outcome.last_seq, outcome.first_seq = self._last_seq, self._first_seq
        return outcome

    def _run_op(self, op: WriteOp, outcome: BatchOutcome) -> bool:
        """Run one op; record its result or its (translated) exception; True if it succeeded."""
        self._events = []
        self._op_chars = 0
        try:
            result = op(self)
        except Exception as exc:
            self._pushes.clear()
            outcome.results.append((False, _translate(exc, self.conn)))
            return False
        outcome.results.append((True, result))
        outcome.events.extend(self._events)
        outcome.chars += self._op_chars
        if self._pushes:  # (rare: most ops' outbox entries come with their events)
            outcome.pushes = outcome.pushes | self._pushes
            self._pushes.clear()
        return True

    def _run_guarded(self, ops: Sequence[WriteOp], outcome: BatchOutcome, until: float) -> None:
        for op in ops:
            if _past(until, outcome):
                break
            self._run_in_savepoint(op, outcome)

    def _run_unguarded(self, ops: Sequence[WriteOp], until: float) -> BatchOutcome:
        """Run ``ops`` with no savepoint each; if one fails after writing (or changing the
        linked set), roll the batch back and run it again with one savepoint per op."""
        conn = self.conn
        outcome = BatchOutcome()
        links_before = self._links_version
        conn.execute("SAVEPOINT batch")
        for op in ops:
            if _past(until, outcome):
                break
            changes, links = conn.total_changes, self._links_version
            if self._run_op(op, outcome):
                continue
            self._fail_if_ended(outcome)
            if conn.total_changes != changes or self._links_version != links:
                self._roll_back_to("batch", links_before)
                outcome = BatchOutcome()
                self._run_guarded(ops, outcome, until)
                break
        conn.execute("RELEASE batch")
        return outcome

    def _run_in_savepoint(self, op: WriteOp, outcome: BatchOutcome) -> None:
        self.conn.execute("SAVEPOINT op")
        links_before = self._links_version
        if not self._run_op(op, outcome):
            self._fail_if_ended(outcome)
            self._roll_back_to("op", links_before)
        self.conn.execute("RELEASE op")

    def _fail_if_ended(self, outcome: BatchOutcome) -> None:
        """SQLite rolled the whole transaction back as the last op failed (it does on a full
        disk or an I/O error): the batch fails, with that op's error."""
        if not self.conn.in_transaction:
            raise outcome.results[-1][1]

    def _roll_back_to(self, savepoint: str, links_before: int) -> None:
        """Undo the writes since ``savepoint``; reload the linked set if an op changed it since
        (``links_before``: its version then), as the rest of the transaction sees it."""
        self.conn.execute(f"ROLLBACK TO {savepoint}")
        if self._links_version != links_before:
            self.reload_links()

    def save_clock(self) -> None:
        """Store the exact clock (at a clean close, no write pending): the next start resumes
        from it rather than from the mark ahead of it. Only if a mark was written meanwhile."""
        if self._clock_mark:
            self.conn.execute(meta_put_sql(), {"key": "hlc_last", "value": self.clock.last})
            self._clock_mark = 0

    def _finish(self, outcome: BatchOutcome) -> None:
        """Persist the clock's mark if the clock reached it, and prune the changelog, inside
        the batch's transaction."""
        wall = self.clock.wall_ms
        if wall >= self._clock_mark:
            self._save_mark(wall)
        if not outcome.events:
            return
        last = outcome.events[-1].seq
        if self._first_seq == 0:
            self._first_seq = outcome.events[0].seq
        self._last_seq = last
        self._chars += outcome.chars
        self._chars_saved = False
        keep_from = last - self._retain + 1
        pruned = keep_from > self._first_seq + self._prune_slack
        if pruned:  # by count
            self._prune(keep_from, None)
        if self._chars > self._retain_chars + self._chars_slack:  # by size (the newest stays)
            keep_from, removed = size_cut(self.conn, last, self._chars - self._retain_chars)
            if keep_from:
                self._prune(keep_from, removed)
                pruned = True
        if pruned:
            self.save_changelog_size()

    def _prune(self, keep_from: int, removed: int | None) -> None:
        """Delete the entries before ``keep_from``; ``removed``: their size if known."""
        if removed is None:
            found = self.conn.execute(changelog_prune_sized_sql(), {"keep_from": keep_from})
            removed = sum(int(size) for (size,) in found.fetchall())
        else:
            self.conn.execute(changelog_prune_sql(), {"keep_from": keep_from})
        self._chars -= removed
        self._first_seq = keep_from

    def save_changelog_size(self) -> None:
        """Record the kept entries' size in ``meta`` (changelog_size.py), unless it is
        already: in a pruning transaction, or at a clean close."""
        if not self._chars_saved:
            save_size(self.conn, self._first_seq, self._last_seq, self._chars)
            self._chars_saved = True

    def _save_mark(self, wall: int) -> None:
        """Write a value past every clock value handed out so far (the clock is at ``wall``)."""
        if wall + CLOCK_LEAD_MS <= MAX_WALL_MS:
            mark, value = wall + CLOCK_LEAD_MS, encode(wall + CLOCK_LEAD_MS, 0, self.device_id)
        else:  # no room ahead: the exact clock, written again whenever it moves
            mark, value = wall, self.clock.last
        self.conn.execute(meta_put_sql(), {"key": "hlc_last", "value": value})
        self._clock_mark = mark

    def _reload_seqs(self) -> None:
        self._last_seq, self._first_seq = read_seqs(self.conn)


def _past(until: float, outcome: BatchOutcome) -> bool:
    """The batch's deadline ``until`` (0: none) has passed and at least one op has run."""
    return bool(until and outcome.results and time.perf_counter() > until)


def read_seqs(conn: sqlite3.Connection) -> tuple[int, int]:
    """(last seq ever assigned, oldest retained seq or 0 when the changelog is empty)."""
    row = conn.execute(LAST_SEQ_SQL).fetchone()
    last = int(row[0]) if row else 0
    first = conn.execute(changelog_first_sql()).fetchone()[0]
    return last, int(first) if first is not None else 0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def workspace_of(table: str, row: dict[str, Any]) -> str | None:
    """The workspace a row belongs to (a workspace belongs to itself)."""
    return row["id"] if table == "workspaces" else row.get("workspace_id")


def _translate(exc: Exception, conn: sqlite3.Connection) -> Exception:
    if isinstance(exc, DaemonError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return store_failure(exc, "write failed", conn)
    return exc
