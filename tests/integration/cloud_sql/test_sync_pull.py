"""sync_pull: every committed row exactly once, in commit-safe order, whatever the commit order."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest

from daemon.sync.cloud.records import cursor_position
from devcloud.schema import apply_all
from tests.helpers import wait_for

from .kit import Cloud, change, new_id


@pytest.fixture
async def team(cloud: Cloud) -> dict[str, Any]:
    alice, bob = await cloud.user("alice@a.io"), await cloud.user("bob@b.io")
    org_a, org_b = await cloud.org("A", alice), await cloud.org("B", bob)
    return {
        "alice": alice,
        "bob": bob,
        "ws_a": await cloud.workspace(org_a, "a1"),
        "ws_a2": await cloud.workspace(org_a, "a2"),
        "ws_b": await cloud.workspace(org_b, "b1"),
    }


async def pull_all(
    cloud: Cloud, user: str, cursor: str | None = None, *, limit: int = 1000, **kw: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Pull pages until has_more is false; returns every change and the last cursor."""
    changes: list[dict[str, Any]] = []
    for _ in range(10_000):
        page = await cloud.pull(user, cursor, limit, **kw)
        assert len(page["changes"]) <= limit
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["has_more"]:
            return changes, cursor
    raise AssertionError("pull never finished")


async def pull_until(
    cloud: Cloud, user: str, cursor: str | None, count: int, *, limit: int = 1000, **kw: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Pull until ``count`` changes have arrived. A transaction still running anywhere on the
    server (another test's, another database's) holds back what committed after it began."""
    changes: list[dict[str, Any]] = []

    async def arrived() -> bool:
        nonlocal cursor
        more, cursor = await pull_all(cloud, user, cursor, limit=limit, **kw)
        changes.extend(more)
        return len(changes) >= count

    await wait_for(arrived, message=f"{count} changes to be pulled")
    return changes, cursor


def positions(changes: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(int(c["row"]["_txid"]), c["row"]["_seq"]) for c in changes]


def conversation(cloud: Cloud, ws: str, conv: str, messages: int) -> list[dict[str, Any]]:
    """The changes of a new conversation ``conv`` in ``ws`` and of its ``messages``."""
    batch = [change("conversations", conv, ws, {"name": "c"}, cloud.clock(1))]
    return batch + [
        change("messages", new_id(), ws,
               {"conversation_id": conv, "role": "user", "content": f"m{i}"}, cloud.clock(2 + i))
        for i in range(messages)
    ]  # fmt: skip


async def test_pages_cover_every_row_once_in_order(cloud: Cloud, team: dict[str, Any]) -> None:
    alice, ws = team["alice"], team["ws_a"]
    conv = new_id()
    batch = conversation(cloud, ws, conv, 20)
    batch += [change("tasks", new_id(), ws, {"kind": "k"}, cloud.clock(30 + i)) for i in range(5)]
    assert {r["status"] for r in await cloud.push(alice, batch)} == {"applied"}

    expected = {c["id"] for c in batch} | {team["ws_a"], team["ws_a2"]}
    changes, cursor = await pull_until(cloud, alice, None, len(expected), limit=7)
    ids = [c["id"] for c in changes]
    assert sorted(ids) == sorted(expected), "every visible row exactly once"
    assert positions(changes) == sorted(positions(changes))
    assert len(set(positions(changes))) == len(changes)
    assert cursor is not None and cursor == "{}:{}".format(*positions(changes)[-1])
    by_id = {c["id"]: c for c in changes}
    row = by_id[conv]
    assert row["table"] == "conversations" and row["workspace_id"] == ws
    assert row["row"]["field_hlc"] == {"name": cloud.clock(1)} and row["row"]["origin"] == "dev1"
    assert by_id[ws]["workspace_id"] == ws and by_id[ws]["table"] == "workspaces"

    # nothing new: an empty page, the cursor stays
    page = await cloud.pull(alice, cursor)
    assert page == {"changes": [], "cursor": cursor, "has_more": False}
    # an update moves its row past the cursor: the next pull carries its latest state
    await cloud.push(alice, [change("conversations", conv, ws, {"name": "new"}, cloud.clock(99))])
    changes, _ = await pull_until(cloud, alice, cursor, 1)
    assert [(c["id"], c["row"]["name"]) for c in changes] == [(conv, "new")]


async def test_pull_sees_only_what_the_caller_may_see(cloud: Cloud, team: dict[str, Any]) -> None:
    changes, _ = await pull_until(cloud, team["bob"], None, 1)
    assert [c["id"] for c in changes] == [team["ws_b"]]
    changes, _ = await pull_until(cloud, team["alice"], None, 1, workspace_id=team["ws_a2"])
    assert [c["id"] for c in changes] == [team["ws_a2"]]
    changes, _ = await pull_until(cloud, team["alice"], None, 2)
    assert {c["id"] for c in changes} == {team["ws_a"], team["ws_a2"]}
    changes, _ = await pull_all(cloud, team["alice"], workspace_id=team["ws_b"])
    assert changes == []


async def test_bad_arguments_are_errors(cloud: Cloud, team: dict[str, Any]) -> None:
    for cursor, limit in (("not-a-cursor", 10), ("1:2:3", 10), (None, 0)):
        with pytest.raises(asyncpg.InvalidParameterValueError, match="sync_pull: bad|limit"):
            await cloud.pull(team["alice"], cursor, limit)
    for cursor in ("not-a-cursor", "1:2:3", "-1:2"):
        with pytest.raises(asyncpg.InvalidParameterValueError, match="sync_pull_count: bad"):
            await cloud.pull_count(team["alice"], cursor)
        with pytest.raises(asyncpg.InvalidParameterValueError, match="sync_pull_marks: bad"):
            await cloud.pull_marks(team["alice"], cursor)
    for step in (0, -1, 10_001):
        with pytest.raises(asyncpg.InvalidParameterValueError, match="step must be 1 to 10000"):
            await cloud.pull_marks(team["alice"], None, step)


async def test_the_count_is_what_the_pulls_from_that_cursor_serve(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """sync_pull_count(cursor, workspace_id): the rows the pages after ``cursor`` hold, for
    every cursor a pull passes, of one workspace or of all the caller may see."""
    alice, bob, ws = team["alice"], team["bob"], team["ws_a"]
    batch = conversation(cloud, ws, new_id(), 12)
    batch += [change("tasks", new_id(), team["ws_a2"], {"kind": "k"}, cloud.clock(20))]
    assert {r["status"] for r in await cloud.push(alice, batch)} == {"applied"}
    # 2 workspaces + 1 conversation + 12 messages + 1 task (bob's organisation's row is not hers)
    await pull_until(cloud, alice, None, 16)  # (until no transaction holds any of them back)

    for workspace_id, total in ((None, 16), (ws, 14), (team["ws_b"], 0)):
        cursor, served = None, 0
        assert await cloud.pull_count(alice, None, workspace_id) == total
        while True:
            page = await cloud.pull(alice, cursor, 5, workspace_id)
            served += len(page["changes"])
            cursor = page["cursor"]
            assert await cloud.pull_count(alice, cursor, workspace_id) == total - served
            if not page["has_more"]:
                break
        assert served == total
    assert await cloud.pull_count(bob) == 1
    assert await cloud.pull_count(bob, None, ws) == 0


async def test_the_marks_are_where_the_pages_from_that_cursor_end(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """sync_pull_marks(cursor, step, workspace_id): the count as sync_pull_count says, and
    the cursor of every step-th row after ``cursor``: where the pages of ``step`` rows from
    it end, from every cursor a pull passes, of one workspace or of all. A page asked from
    a mark after rows between the marks were updated (moved past every cursor) reaches past
    that mark: the pages from the marks overlap, and serve every row."""
    alice, ws = team["alice"], team["ws_a"]
    batch = conversation(cloud, ws, new_id(), 12)
    batch += [change("tasks", new_id(), team["ws_a2"], {"kind": "k"}, cloud.clock(20))]
    assert {r["status"] for r in await cloud.push(alice, batch)} == {"applied"}
    await pull_until(cloud, alice, None, 16)

    for workspace_id, step in ((None, 5), (ws, 5), (ws, 1), (ws, 14), (team["ws_b"], 3)):
        cursor, ends, seen = None, [], 0
        while True:
            page = await cloud.pull(alice, cursor, step, workspace_id)
            seen += len(page["changes"])
            if len(page["changes"]) == step:
                ends.append(page["cursor"])
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        marks = await cloud.pull_marks(alice, None, step, workspace_id)
        assert marks == {"count": seen, "marks": ends}
        # from a cursor in the middle: the marks after it
        if len(ends) > 1:
            after = await cloud.pull_marks(alice, ends[0], step, workspace_id)
            assert after == {"count": seen - step, "marks": ends[1:]}
    assert await cloud.pull_marks(team["bob"], None, 5, ws) == {"count": 0, "marks": []}

    # rows between the first two marks are updated: the page from the first mark reaches
    # past the second one, so the page from the second overlaps it and misses nothing
    marks = (await cloud.pull_marks(alice, None, 5, ws))["marks"]
    _, end = await pull_all(cloud, alice, workspace_id=ws)
    first = await cloud.pull(alice, None, 5, ws)
    moved = [c["id"] for c in first["changes"] if c["table"] == "messages"][:2]
    updates = [
        change("messages", i, ws, {"deleted_at": "2026-11-22T08:00:00+00:00"}, cloud.clock(30))
        for i in moved
    ]
    assert {r["status"] for r in await cloud.push(alice, updates)} == {"applied"}
    await pull_until(cloud, alice, end, 2, workspace_id=ws)  # (the updates are served)
    from_first = await cloud.pull(alice, None, 5, ws)
    assert {c["id"] for c in from_first["changes"]}.isdisjoint(moved)
    assert cursor_position(from_first["cursor"]) > cursor_position(marks[0])  # type: ignore[operator]
    from_second = await cloud.pull(alice, marks[0], 5, ws)
    overlap = {c["id"] for c in from_first["changes"]} & {c["id"] for c in from_second["changes"]}
    assert len(overlap) == 2


class Writer:
    """One open transaction writing tasks as a member, like a REST request that takes its time."""

    def __init__(self, conn: asyncpg.Connection, ws: str) -> None:
        self.conn, self.ws, self.ids = conn, ws, []

    async def write(self) -> str:
        task = await self.conn.fetchval(
            "INSERT INTO tasks (workspace_id, kind) VALUES ($1, 'k') RETURNING id::text", self.ws
        )
        self.ids.append(task)
        return str(task)


async def open_writers(
    cloud: Cloud, stack: AsyncExitStack, user: str, ws: str, n: int
) -> AsyncIterator[Writer]:
    for _ in range(n):
        conn = await stack.enter_async_context(cloud.ctx.transaction_as(cloud.claims(user)))
        yield Writer(conn, ws)


async def test_transactions_committing_out_of_order_are_never_skipped(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """THE gap test: T1 writes first, T2 writes after it and commits first. A cursor on the
    sequence alone would hand out T2's row, move past it, and skip T1's rows for ever."""
    alice, ws = team["alice"], team["ws_a"]
    _, cursor = await pull_until(cloud, alice, None, 2)  # the two workspaces of org A
    seen: list[dict[str, Any]] = []

    t1_cm = cloud.ctx.transaction_as(cloud.claims(alice))
    t2_cm = cloud.ctx.transaction_as(cloud.claims(alice))
    t1, t2 = Writer(await t1_cm.__aenter__(), ws), Writer(await t2_cm.__aenter__(), ws)
    try:
        first = await t1.write()
        second = await t2.write()
        third = await t1.write()  # T1 keeps writing after T2's row: _seq is now interleaved
        await t2_cm.__aexit__(None, None, None)  # T2 commits first

        page = await cloud.pull(alice, cursor)
        assert page["changes"] == [], "T2 committed, but T1 (older) is still running: wait"
        assert page["cursor"] == cursor
    finally:
        await t1_cm.__aexit__(None, None, None)  # T1 commits last

    changes, cursor = await pull_until(cloud, alice, cursor, 3)
    seen += changes
    assert [c["id"] for c in seen] == [first, third, second]  # T1's rows, then T2's
    assert (await pull_all(cloud, alice, cursor))[0] == []


async def test_many_interleaved_transactions_each_row_exactly_once(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """Eight transactions write interleaved rows and commit in a random order, with a pull
    (small pages) after every commit: every committed row arrives exactly once."""
    alice, ws = team["alice"], team["ws_a"]
    rng = random.Random(20261121)
    _, cursor = await pull_until(cloud, alice, None, 2)  # the two workspaces of org A
    seen: list[str] = []
    async with AsyncExitStack() as stack:
        writers = [w async for w in open_writers(cloud, stack, alice, ws, 8)]
        for _ in range(40):
            await rng.choice(writers).write()
        order = list(range(len(writers)))
        rng.shuffle(order)
        committed: set[str] = set()
        # commit one at a time (closing its transaction), pulling in between
        for i in order:
            await writers[i].conn.execute("COMMIT")
            await writers[i].conn.execute("BEGIN")  # the context manager commits this empty one
            committed |= set(writers[i].ids)
            changes, cursor = await pull_all(cloud, alice, cursor, limit=3)
            seen += [c["id"] for c in changes]
            assert set(seen) <= committed, "never a row of a running transaction"
    written = [t for w in writers for t in w.ids]
    changes, cursor = await pull_until(cloud, alice, cursor, len(written) - len(seen), limit=3)
    seen += [c["id"] for c in changes]
    assert sorted(seen) == sorted(written)
    assert len(seen) == len(set(seen)) == 40


async def test_a_page_is_exactly_limit_rows_and_the_jsonb_version_is_replaced(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """The extra (limit + 1)-th row only sets has_more; re-applying the schema over the former
    jsonb-returning sync_pull replaces it (CREATE OR REPLACE cannot change a return type)."""
    alice, ws = team["alice"], team["ws_a"]
    batch = [change("tasks", new_id(), ws, {"kind": "k"}, cloud.clock(i)) for i in range(3)]
    assert {r["status"] for r in await cloud.push(alice, batch)} == {"applied"}
    first = await cloud.pull(alice, None, 2, workspace_id=ws)
    assert len(first["changes"]) == 2 and first["has_more"] is True
    assert first["cursor"] == "{}:{}".format(*positions(first["changes"])[-1])
    rest = await cloud.pull(alice, first["cursor"], 2, workspace_id=ws)
    assert len(rest["changes"]) == 2 and rest["has_more"] is False  # 3 tasks + the workspace

    async with cloud.pool.acquire() as conn:
        await conn.execute("DROP FUNCTION public.sync_pull(text, integer, uuid)")
        await conn.execute(
            'CREATE FUNCTION public.sync_pull(cursor text DEFAULT NULL, "limit" integer '
            "DEFAULT 1000, workspace_id uuid DEFAULT NULL) RETURNS jsonb LANGUAGE sql "
            "AS $$ SELECT '{}'::jsonb $$"
        )
        await apply_all(conn)
        returns = await conn.fetchval(
            "SELECT prorettype::regtype::text FROM pg_proc "
            "WHERE oid = 'public.sync_pull(text, integer, uuid)'::regprocedure"
        )
    assert returns == "json"
    assert await cloud.pull(alice, None, 2, workspace_id=ws) == first
