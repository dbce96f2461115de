"""The batch transaction on a real SQLite file: a failing mutation is rolled back alone (a
savepoint each, or for rerunnable mutations a rollback and rerun only when it wrote)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import StoreError
from daemon.hlc import Clock
from daemon.store import migrate
from daemon.store.codec import RowCodec
from daemon.store.txn import WriteContext, WriteOp

from .conftest import rows
from .linking import link_ids


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[WriteContext]:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate.migrate(conn)
    codecs = {t: RowCodec(t) for t in ("workspaces", "conversations", "messages", "tasks")}
    yield WriteContext(
        conn, clock=Clock("dev"), codecs=codecs, changelog_retain=1000, last_seq=0, first_seq=0
    )
    conn.close()


def make_workspace(name: str, *, fail_after_write: bool = False) -> WriteOp:
    def op(ctx: WriteContext) -> dict[str, Any]:
        stamp = ctx.tick()
        row = {
            "id": name,
            "name": name,
            "status": "active",
            "created_at": stamp.iso,
            "updated_at": stamp.iso,
            "hlc": stamp.hlc,
            "field_hlc": {},
            "origin": "dev",
        }
        ctx.insert_row("workspaces", row)
        fields = {"name": name}
        ctx.emit(
            table="workspaces",
            op="insert",
            topic="workspace.created",
            row=row,
            fields=fields,
            stamp=stamp,
        )
        if fail_after_write:
            raise RuntimeError("bug after writing")
        return row

    return op


@pytest.mark.parametrize("rerunnable", [False, True])
def test_failure_after_writes_is_rolled_back_alone(ctx: WriteContext, rerunnable: bool) -> None:
    link_ids(ctx, "a", "b", "c")  # linked: their writes get outbox entries
    outcome = ctx.run_batch(
        [make_workspace("a"), make_workspace("b", fail_after_write=True), make_workspace("c")],
        rerunnable=rerunnable,
    )
    assert [ok for ok, _ in outcome.results] == [True, False, True]
    assert isinstance(outcome.results[1][1], RuntimeError)
    assert [e.data["id"] for e in outcome.events] == ["a", "c"]
    assert [e.seq for e in outcome.events] == [1, 2]
    assert rows(ctx.conn, "SELECT id FROM workspaces ORDER BY id") == [("a",), ("c",)]
    assert rows(ctx.conn, "SELECT row_id FROM outbox ORDER BY id") == [("a",), ("c",)]
    assert outcome.last_seq == 2 and outcome.first_seq == 1


def test_lone_failure_rolls_back_and_commits_nothing(ctx: WriteContext) -> None:
    outcome = ctx.run_batch([make_workspace("x", fail_after_write=True)])
    assert outcome.results[0][0] is False and outcome.events == []
    assert rows(ctx.conn, "SELECT count(*) FROM workspaces") == [(0,)]
    assert rows(ctx.conn, "SELECT count(*) FROM changelog") == [(0,)]
    assert not ctx.conn.in_transaction


@pytest.mark.parametrize("rerunnable", [False, True])
def test_sqlite_errors_become_store_errors(ctx: WriteContext, rerunnable: bool) -> None:
    outcome = ctx.run_batch([make_workspace("dup"), make_workspace("dup")], rerunnable=rerunnable)
    assert outcome.results[0][0] is True
    ok, error = outcome.results[1]
    assert not ok and isinstance(error, StoreError)
    assert isinstance(error.__cause__, sqlite3.IntegrityError)


def test_failed_commit_raises_and_keeps_seqs_consistent(ctx: WriteContext) -> None:
    ctx.run_batch([make_workspace("a")])
    ctx.conn.execute("PRAGMA query_only = ON")  # the next COMMIT (any write) fails
    with pytest.raises(sqlite3.Error):
        ctx.run_batch([make_workspace("b")])
    ctx.conn.execute("PRAGMA query_only = OFF")
    assert not ctx.conn.in_transaction
    outcome = ctx.run_batch([make_workspace("c")])
    assert [e.seq for e in outcome.events] == [2]


class Counted:
    """Ops that count their runs, and the SAVEPOINT statements the connection executed."""

    def __init__(self, ctx: WriteContext) -> None:
        self.runs: dict[str, int] = {}
        self.savepoints = 0
        ctx.conn.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        self.savepoints += statement.startswith("SAVEPOINT")

    def op(self, name: str, *, fail: str = "") -> WriteOp:
        inner = make_workspace(name, fail_after_write=fail == "after write")

        def op(ctx: WriteContext) -> Any:
            self.runs[name] = self.runs.get(name, 0) + 1
            if fail == "before write":
                raise ValueError("refused input")
            if fail == "links only":
                ctx.set_linked("phantom", True)
                raise ValueError("refused after linking")
            return inner(ctx)

        return op


def test_rerunnable_batch_takes_one_savepoint_and_runs_each_op_once(ctx: WriteContext) -> None:
    counted = Counted(ctx)
    ops = [counted.op("a"), counted.op("b", fail="before write"), counted.op("c")]
    outcome = ctx.run_batch(ops, rerunnable=True)
    assert [ok for ok, _ in outcome.results] == [True, False, True]
    assert isinstance(outcome.results[1][1], ValueError)
    assert counted.runs == {"a": 1, "b": 1, "c": 1}
    assert counted.savepoints == 1  # the batch's, none per op
    assert [e.seq for e in outcome.events] == [1, 2]
    assert rows(ctx.conn, "SELECT id FROM workspaces ORDER BY id") == [("a",), ("c",)]


def test_guarded_batch_takes_a_savepoint_per_op(ctx: WriteContext) -> None:
    counted = Counted(ctx)
    ctx.run_batch([counted.op("a"), counted.op("b")])
    assert counted.savepoints == 2


def test_rerunnable_batch_reruns_guarded_after_a_failure_that_wrote(ctx: WriteContext) -> None:
    counted = Counted(ctx)
    ops = [counted.op("a"), counted.op("b", fail="after write"), counted.op("c")]
    outcome = ctx.run_batch(ops, rerunnable=True)
    assert counted.runs == {"a": 2, "b": 2, "c": 1}  # c never ran before the rollback
    assert [ok for ok, _ in outcome.results] == [True, False, True]
    assert [e.data["id"] for e in outcome.events] == ["a", "c"]
    assert [e.seq for e in outcome.events] == [1, 2]  # the first pass left no gap
    assert rows(ctx.conn, "SELECT id FROM workspaces ORDER BY id") == [("a",), ("c",)]
    assert rows(ctx.conn, "SELECT seq, row_id FROM changelog") == [(1, "a"), (2, "c")]


def test_rerunnable_batch_reloads_links_changed_by_a_failed_op(ctx: WriteContext) -> None:
    counted = Counted(ctx)
    outcome = ctx.run_batch([counted.op("a"), counted.op("b", fail="links only")], rerunnable=True)
    assert [ok for ok, _ in outcome.results] == [True, False]
    assert counted.runs == {"a": 2, "b": 2}
    assert not ctx.syncs("phantom")
