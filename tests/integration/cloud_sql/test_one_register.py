"""The one-register form of stored clocks: field_hlc {} with a row clock means every field
carries that clock (daemon/sync/merge.py, RowState.from_row). sync_push stores a new message
whose fields share one clock that way, and every cloud reader of stored clocks expands it."""

from __future__ import annotations

from typing import Any

import pytest

from .kit import Cloud, change, new_id

FIELDS = {
    "conversation_id": None,  # set per test
    "role": "user",
    "content": "hello",
    "created_at": "2026-01-01T00:00:00.000Z",
    "updated_at": "2026-01-01T00:00:00.000Z",
    "deleted_at": None,
}


@pytest.fixture
async def team(cloud: Cloud) -> dict[str, Any]:
    alice = await cloud.user("alice@a.io")
    org = await cloud.org("A", alice)
    ws, conv = new_id(), new_id()
    results = await cloud.push(
        alice,
        [
            change("workspaces", ws, ws, {"org_id": org, "name": "w"}, cloud.clock(1)),
            change("conversations", conv, ws, {"name": "c"}, cloud.clock(2)),
        ],
    )
    assert [r["status"] for r in results] == ["applied", "applied"], results
    return {"alice": alice, "ws": ws, "conv": conv}


def message(team: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**FIELDS, "conversation_id": team["conv"], **fields}


async def seq_of(cloud: Cloud, msg: str) -> int:
    return int(await cloud.pool.fetchval("SELECT _seq FROM public.messages WHERE id = $1", msg))


async def test_a_new_message_of_one_clock_is_stored_as_one_register(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    msg, clock = new_id(), cloud.clock(10, "laptop")
    push = [change("messages", msg, team["ws"], message(team), clock, origin="laptop")]
    assert [r["status"] for r in await cloud.push(team["alice"], push)] == ["applied"]
    row = await cloud.row("messages", msg)
    assert row is not None
    assert (row["field_hlc"], row["hlc"], row["origin"]) == ({}, clock, "laptop")
    page = await cloud.pull(team["alice"], workspace_id=team["ws"])
    [pulled] = [c["row"] for c in page["changes"] if c["id"] == msg]
    assert (pulled["field_hlc"], pulled["hlc"]) == ({}, clock)

    # the batch sent again: already applied (the expanded clocks are equal), nothing written
    seq = await seq_of(cloud, msg)
    assert [r["status"] for r in await cloud.push(team["alice"], push)] == ["applied"]
    assert await seq_of(cloud, msg) == seq


@pytest.mark.parametrize("shape", ["two clocks", "no deleted_at"])
async def test_other_new_messages_keep_their_clocks(
    cloud: Cloud, team: dict[str, Any], shape: str
) -> None:
    msg, fields = new_id(), message(team)
    clocks = dict.fromkeys(fields, cloud.clock(10))
    if shape == "two clocks":
        clocks["deleted_at"] = cloud.clock(11)
    else:
        del fields["deleted_at"], clocks["deleted_at"]
    results = await cloud.push(team["alice"], [change("messages", msg, team["ws"], fields, clocks)])
    assert [r["status"] for r in results] == ["applied"]
    row = await cloud.row("messages", msg)
    assert row is not None and row["field_hlc"] == clocks


async def test_a_one_register_message_merges_as_every_field_at_its_clock(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    msg, clock = new_id(), cloud.clock(20)
    await cloud.push(team["alice"], [change("messages", msg, team["ws"], message(team), clock)])
    deleted = {"deleted_at": "2026-02-02T00:00:00Z"}

    # a delete older than the message's one clock loses to its deleted_at = null
    older = change("messages", msg, team["ws"], deleted, cloud.clock(19))
    assert [r["status"] for r in await cloud.push(team["alice"], [older])] == ["superseded"]
    row = await cloud.row("messages", msg)
    assert row is not None and row["deleted_at"] is None and row["field_hlc"] == {}

    # a newer one wins; the row leaves the form with one clock per column
    newer = change("messages", msg, team["ws"], deleted, cloud.clock(21, "phone"))
    assert [r["status"] for r in await cloud.push(team["alice"], [newer])] == ["applied"]
    row = await cloud.row("messages", msg)
    assert row is not None and row["deleted_at"] is not None
    columns = set(row) - {"id", "hlc", "field_hlc", "origin", "_txid", "_seq"}
    delete = cloud.clock(21, "phone")
    assert row["field_hlc"] == {**dict.fromkeys(columns, clock), "deleted_at": delete}
    assert (row["hlc"], row["origin"]) == (delete, "phone")


async def test_a_plain_write_to_a_one_register_row_keeps_the_other_clocks(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    """A delete through REST (the trigger's cloud clock) on a message stored in the form."""
    msg, clock = new_id(), cloud.clock(30)
    await cloud.push(team["alice"], [change("messages", msg, team["ws"], message(team), clock)])
    status = await cloud.execute_as(
        team["alice"], "UPDATE public.messages SET deleted_at = now() WHERE id = $1", msg
    )
    assert status == "UPDATE 1"
    row = await cloud.row("messages", msg)
    assert row is not None and row["deleted_at"] is not None and row["origin"] == "cloud"
    columns = set(row) - {"id", "hlc", "field_hlc", "origin", "_txid", "_seq"}
    assert row["field_hlc"] == {**dict.fromkeys(columns, clock), "deleted_at": row["hlc"]}
    assert row["hlc"] > clock
