"""sync_push's less travelled paths: a batch whose new row another transaction creates at the
same moment (the INSERT fails on the primary key and the table's changes are redone on the slow
path, one by one), and clocks that are not all equal (each one is checked)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from tests.helpers import wait_for

from .kit import PUSH, Cloud, change, lock_waiters, new_id, race


@pytest.fixture
async def team(cloud: Cloud) -> dict[str, Any]:
    alice = await cloud.user("alice@a.io")
    org = await cloud.org("A", alice)
    ws = await cloud.workspace(org, "w")
    conv = new_id()
    [result] = await cloud.push(alice, [change("conversations", conv, ws, {"name": "c"},
                                               cloud.clock(1))])  # fmt: skip
    assert result["status"] == "applied", result
    return {"alice": alice, "ws": ws, "conv": conv}


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["status"] for r in results]


async def test_a_batch_racing_a_new_row_applies_every_change(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """The second batch fails on the primary key of the row the first one created, is redone
    change by change: the raced row is merged, the batch's other new rows are written."""
    ws, task, other = team["ws"], new_id(), new_id()
    first = [change("tasks", task, ws, {"kind": "k", "status": "one"}, cloud.clock(10, "a"))]
    second = [
        change("tasks", other, ws, {"kind": "k", "status": "other"}, cloud.clock(11, "b")),
        change("tasks", task, ws, {"kind": "k", "priority": 7}, cloud.clock(12, "b")),
        change("tasks", new_id(), ws, {"kind": "k", "attempts": "many"}, cloud.clock(13, "b")),
    ]
    r1, r2 = await race(cloud, team["alice"], first, second)
    assert statuses(r1) == ["applied"]
    assert statuses(r2) == ["applied", "applied", "rejected"]
    assert r2[2]["reason"] == "invalid"
    row = await cloud.row("tasks", task)
    assert row is not None
    assert (row["status"], row["priority"]) == ("one", 7)
    assert row["field_hlc"]["kind"] == cloud.clock(10, "a")  # fww: the first write of kind
    assert row["field_hlc"]["priority"] == cloud.clock(12, "b")
    written = await cloud.row("tasks", other)
    assert written is not None and written["status"] == "other"


async def test_a_message_retried_while_its_original_commits_is_written_once(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    ws, conv, message = team["ws"], team["conv"], new_id()
    fields = {"conversation_id": conv, "role": "user", "content": "hello"}
    push = [change("messages", message, ws, fields, cloud.clock(20))]
    r1, r2 = await race(cloud, team["alice"], push, push)
    assert statuses(r1) == statuses(r2) == ["applied"]  # the retry: already applied
    count = await cloud.pool.fetchval("SELECT count(*) FROM public.messages WHERE id = $1", message)
    assert count == 1
    row = await cloud.row("messages", message)
    assert row is not None and row["content"] == "hello"
    assert row["field_hlc"] == dict.fromkeys(fields, cloud.clock(20))


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (None, "bad clock for priority"),  # null among well-formed clocks
        (17, "bad clock for priority"),  # not a string
        ("", "bad clock for priority"),
    ],
)
async def test_a_bad_clock_among_different_ones_is_rejected(
    cloud: Cloud, team: dict[str, Any], bad: Any, detail: str
) -> None:
    task = new_id()
    field_hlc = {"kind": cloud.clock(30), "status": cloud.clock(31), "priority": bad}
    fields = {"kind": "k", "status": "s", "priority": 1}
    [result] = await cloud.push(team["alice"], [change("tasks", task, team["ws"], fields,
                                                       field_hlc)])  # fmt: skip
    assert (result["status"], result["reason"]) == ("rejected", "invalid"), result
    assert detail in result["detail"], result
    assert await cloud.row("tasks", task) is None


async def test_a_repeatable_read_push_racing_a_new_row_fails_to_be_retried(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """A transaction whose snapshot cannot see the row created meanwhile gets a serialization
    failure (the caller retries the push), not a rejection of the change."""
    ws, task = team["ws"], new_id()
    first = [change("tasks", task, ws, {"kind": "k", "status": "one"}, cloud.clock(40, "a"))]
    second = [change("tasks", task, ws, {"kind": "k", "priority": 7}, cloud.clock(41, "b"))]
    claims = json.dumps(cloud.claims(team["alice"]))
    async with cloud.ctx.transaction_as(cloud.claims(team["alice"])) as conn1:
        await conn1.fetchval(PUSH, json.dumps(first))
        conn2 = await cloud.pool.acquire()
        try:
            await conn2.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await conn2.execute(
                "SELECT set_config('role', 'authenticated', true),"
                " set_config('request.jwt.claims', $1, true)",
                claims,
            )
            racing = asyncio.create_task(conn2.fetchval(PUSH, json.dumps(second)))

            async def second_is_waiting() -> bool:
                return await lock_waiters(cloud) > 0

            await wait_for(second_is_waiting, message="the second push to wait for the first")
        except BaseException:
            await cloud.pool.release(conn2)
            raise
    try:
        with pytest.raises(asyncpg.SerializationError):
            await racing
    finally:
        await conn2.execute("ROLLBACK")
        await cloud.pool.release(conn2)
    row = await cloud.row("tasks", task)
    assert row is not None and row["status"] == "one"
    assert "priority" not in row["field_hlc"]  # the second push changed nothing
