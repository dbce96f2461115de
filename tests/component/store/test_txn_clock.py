"""The clock across restarts without a write per transaction, and pruning in chunks.

``meta.hlc_last`` holds a mark ``CLOCK_LEAD_MS`` ahead of the clock, written only when the
clock reaches it; a clean close stores the exact clock (daemon/store/txn.py).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.config import StoreSettings
from daemon.hlc import Clock, decode, encode
from daemon.store import Store, migrate, txn
from daemon.store.codec import RowCodec, now_ms
from daemon.store.txn import CLOCK_LEAD_MS, WriteContext, WriteOp

from .conftest import rows

HOUR_MS = 3_600_000


def context(path: Path, *, retain: int = 1000) -> WriteContext:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    migrate.migrate(conn)
    codecs = {t: RowCodec(t) for t in ("workspaces", "conversations", "messages", "tasks")}
    return WriteContext(
        conn, clock=Clock("dev"), codecs=codecs, changelog_retain=retain, last_seq=0, first_seq=0
    )


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WriteContext]:
    made = context(tmp_path / "db")
    yield made
    made.conn.close()


def publish(name: str, *, jump_ms: int = 0) -> WriteOp:
    """A changelog entry under a new clock tick (after the clock saw a remote clock
    ``jump_ms`` ahead of the wall, if given); returns the tick."""

    def op(ctx: WriteContext) -> str:
        if jump_ms:
            ctx.clock.receive(encode(now_ms() + jump_ms, 0, "remote"), now_ms())
        stamp = ctx.tick()
        ctx.publish("test.clock", {"id": name, "hlc": stamp.hlc})
        return stamp.hlc

    return op


def orphan_conversation(ctx: WriteContext) -> None:
    """Passes until COMMIT, which fails (deferred foreign key), after _finish ran."""
    ctx.conn.execute("PRAGMA defer_foreign_keys = ON")
    stamp = ctx.tick()
    ctx.conn.execute(
        "INSERT INTO conversations (id, workspace_id, name, type, is_archived, created_at,"
        " updated_at, hlc, field_hlc, origin) VALUES ('c', 'nowhere', 'c', 'chat', 0, ?, ?, ?,"
        " '{}', 'dev')",
        (stamp.iso, stamp.iso, stamp.hlc),
    )


def stored_clock(conn: sqlite3.Connection) -> str:
    return str(rows(conn, "SELECT value FROM meta WHERE key = 'hlc_last'")[0][0])


def test_the_mark_is_written_rarely_and_is_past_every_clock_handed_out(
    ctx: WriteContext,
) -> None:
    meta_writes: list[str] = []
    ctx.conn.set_trace_callback(lambda sql: meta_writes.append(sql) if "INTO meta" in sql else None)
    started = time.monotonic()
    handed_out = []
    for i in range(200):
        outcome = ctx.run_batch([publish(str(i))])
        handed_out.append(outcome.results[0][1])
        assert stored_clock(ctx.conn) > handed_out[-1]
    elapsed_s = time.monotonic() - started
    ctx.conn.set_trace_callback(None)
    # once at the first commit, then once per CLOCK_LEAD_MS of clock time at most
    assert 1 <= len(meta_writes) <= 2 + int(elapsed_s * 1000 / CLOCK_LEAD_MS)


def test_a_clock_jump_moves_the_mark_in_the_same_commit(ctx: WriteContext) -> None:
    ctx.run_batch([publish("before")])
    jumped = ctx.run_batch([publish("jump", jump_ms=HOUR_MS)]).results[0][1]
    assert decode(jumped).wall_ms > now_ms() + HOUR_MS // 2
    assert stored_clock(ctx.conn) > jumped


def test_a_commit_that_fails_after_writing_the_mark_does_not_lose_it(ctx: WriteContext) -> None:
    ctx.run_batch([publish("first")])
    before = stored_clock(ctx.conn)

    def jump_then_fail(ctx: WriteContext) -> None:
        publish("jump", jump_ms=HOUR_MS)(ctx)
        orphan_conversation(ctx)

    with pytest.raises(sqlite3.IntegrityError):
        ctx.run_batch([jump_then_fail])
    assert stored_clock(ctx.conn) == before  # the new mark went with the transaction
    after = ctx.run_batch([publish("after")]).results[0][1]
    assert decode(after).wall_ms > now_ms() + HOUR_MS // 2  # the clock kept its jump...
    assert stored_clock(ctx.conn) > after  # ...and the next commit persisted a mark past it


def test_save_clock_stores_the_exact_clock(ctx: WriteContext) -> None:
    last = ctx.run_batch([publish("a"), publish("b")]).results[-1][1]
    assert stored_clock(ctx.conn) > last  # the mark, ahead
    ctx.save_clock()
    assert stored_clock(ctx.conn) == last == ctx.clock.last


async def test_a_restart_after_a_crash_resumes_past_every_stored_clock(db_path: Path) -> None:
    crashed = await Store.open(db_path, StoreSettings())
    try:
        await crashed.workspaces.create(name="first: writes the mark")
        await crashed._writer.submit(publish("jump", jump_ms=HOUR_MS), small=True)
        ws = await crashed.workspaces.create(name="written an hour ahead")
        assert decode(ws["hlc"]).wall_ms > now_ms() + HOUR_MS // 2
        # Never closed: a second Store sees exactly what a restart after a crash would.
        restarted = await Store.open(db_path, StoreSettings())
        try:
            after = await restarted.workspaces.create(name="after the crash")
            assert after["hlc"] > ws["hlc"]
        finally:
            await restarted.close()
    finally:
        await crashed.close()


async def test_clean_restarts_keep_the_clock_exact_and_do_not_add_up_leads(
    db_path: Path,
) -> None:
    previous = ""
    for i in range(4):
        store = await Store.open(db_path, StoreSettings())
        try:
            ws = await store.workspaces.create(name=f"run {i}")
        finally:
            await store.close()
        assert ws["hlc"] > previous
        previous = ws["hlc"]
        conn = sqlite3.connect(db_path)
        try:
            assert stored_clock(conn) == ws["hlc"]  # exact, not the mark ahead
        finally:
            conn.close()
        assert decode(ws["hlc"]).wall_ms <= now_ms()  # not ahead of the wall clock


def test_pruning_keeps_retain_entries_deleting_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(txn, "PRUNE_SLACK_DIVISOR", 2)  # retain 10: up to 5 entries extra
    ctx = context(tmp_path / "db", retain=10)
    deletes: list[str] = []
    ctx.conn.set_trace_callback(lambda sql: deletes.append(sql) if "DELETE" in sql else None)
    try:
        for i in range(40):
            outcome: Any = ctx.run_batch([publish(str(i))])
            count, first, last = rows(
                ctx.conn, "SELECT count(*), min(seq), max(seq) FROM changelog"
            )[0]
            assert (outcome.first_seq, outcome.last_seq) == (first, last) == (first, i + 1)
            assert min(i + 1, 10) <= count <= 15
    finally:
        ctx.conn.close()
    assert 1 < len(deletes) <= 40 // 5
