"""sync_push's compact form: a change with one ``hlc`` instead of ``field_hlc`` (every field
under that clock) is classified, merged and stored exactly as the same change with that clock
spelt out per field; a change carrying both, or a bad ``hlc``, is rejected alone."""

from __future__ import annotations

from typing import Any

import pytest

from .kit import Cloud, change, hlc, new_id, now_ms


@pytest.fixture
async def team(cloud: Cloud) -> dict[str, Any]:
    alice = await cloud.user("alice@a.io")
    org = await cloud.org("A", alice)
    return {"alice": alice, "org": org}


def compact(
    table: str, row_id: str, workspace_id: str, fields: dict[str, Any], clock: str
) -> dict[str, Any]:
    """The change in the compact form, as a daemon sends a row written in one local write."""
    spelt = change(table, row_id, workspace_id, fields, clock)
    del spelt["field_hlc"]
    return {**spelt, "hlc": clock}


def statuses(results: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r["status"], r.get("reason")) for r in results]


STAMP = "2026-11-21T07:09:32.123Z"


def rows_of(conv: str) -> list[tuple[str, dict[str, Any]]]:
    """One new row of each kind a push creates, with every field it may carry (JSON maps
    included, as whole values)."""
    return [
        ("conversations", {"name": "c", "conversation_type": "chat", "is_archived": False,
                           "created_at": STAMP, "updated_at": STAMP}),
        ("messages", {"conversation_id": conv, "role": "user", "content": "hi",
                      "created_at": STAMP, "updated_at": STAMP, "deleted_at": None}),
        ("tasks", {"kind": "build", "payload": {"a": 1}, "progress": {"done": 2},
                   "priority": 3, "status": "queued", "created_at": STAMP,
                   "updated_at": STAMP}),
    ]  # fmt: skip


def stored_form(row: dict[str, Any] | None) -> dict[str, Any]:
    """A stored row without what differs between two rows pushed alike."""
    assert row is not None
    return {k: v for k, v in row.items() if k not in ("id", "_txid", "_seq")}


async def test_a_compact_change_is_stored_as_its_clocks_spelt_out(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    alice, org = team["alice"], team["org"]
    ws_fields = {"org_id": org, "name": "w", "shared_memory": {"k": "v"}, "next_steps": ["x"],
                 "created_at": STAMP, "updated_at": STAMP}  # fmt: skip
    ws_a, ws_b = new_id(), new_id()
    results = await cloud.push(
        alice,
        [
            change("workspaces", ws_a, ws_a, ws_fields, cloud.clock(1)),
            compact("workspaces", ws_b, ws_b, ws_fields, cloud.clock(1)),
        ],
    )
    assert statuses(results) == [("applied", None)] * 2
    ws_row = await cloud.row("workspaces", ws_b)
    assert stored_form(ws_row) == stored_form(await cloud.row("workspaces", ws_a))
    assert ws_row is not None and ws_row["hlc"] == cloud.clock(1)
    conv_a, conv_b = new_id(), new_id()
    for (table, fields_a), (_, fields_b) in zip(rows_of(conv_a), rows_of(conv_b), strict=True):
        id_a = conv_a if table == "conversations" else new_id()
        id_b = conv_b if table == "conversations" else new_id()
        results = await cloud.push(
            alice,
            [
                change(table, id_a, ws_a, fields_a, cloud.clock(2)),
                compact(table, id_b, ws_b, fields_b, cloud.clock(2)),
            ],
        )
        assert statuses(results) == [("applied", None)] * 2, table
        a, b = stored_form(await cloud.row(table, id_a)), stored_form(await cloud.row(table, id_b))
        assert b.pop("workspace_id") == ws_b and a.pop("workspace_id") == ws_a
        if table == "messages":
            assert b.pop("conversation_id") == conv_b and a.pop("conversation_id") == conv_a
            assert b["field_hlc"] == {}  # the one-register form (0003), as for a's
        assert b == a, table
        assert b["hlc"] == cloud.clock(2) and b["origin"] == "dev1"


async def test_a_compact_change_merges_by_its_one_clock(cloud: Cloud, team: dict[str, Any]) -> None:
    alice, ws, conv = team["alice"], new_id(), new_id()
    setup = [
        compact("workspaces", ws, ws, {"org_id": team["org"], "name": "w"}, cloud.clock(1)),
        compact("conversations", conv, ws, {"name": "c", "is_archived": False}, cloud.clock(5)),
    ]
    assert statuses(await cloud.push(alice, setup)) == [("applied", None)] * 2
    before = await cloud.row("conversations", conv)
    # the same change again: already applied, and nothing moves (no echo for pullers)
    assert statuses(await cloud.push(alice, setup[1:])) == [("applied", None)]
    assert await cloud.row("conversations", conv) == before
    # an older one loses, and says so
    stale = compact("conversations", conv, ws, {"name": "stale"}, cloud.clock(4, "phone"))
    assert statuses(await cloud.push(alice, [stale])) == [("superseded", None)]
    # a newer one of one field wins that field only, under its clock
    newer = compact("conversations", conv, ws, {"name": "renamed"}, cloud.clock(6, "phone"))
    assert statuses(await cloud.push(alice, [newer])) == [("applied", None)]
    row = await cloud.row("conversations", conv)
    assert row is not None and before is not None
    assert (row["name"], row["is_archived"]) == ("renamed", False)
    assert row["field_hlc"] == {**before["field_hlc"], "name": cloud.clock(6, "phone")}
    assert (row["hlc"], row["origin"]) == (cloud.clock(6, "phone"), "phone")
    # several changes of one row in one batch (the one-by-one path) merge alike
    twice = [
        compact("conversations", conv, ws, {"name": "first"}, cloud.clock(7)),
        compact("conversations", conv, ws, {"is_archived": True}, cloud.clock(8)),
    ]
    assert statuses(await cloud.push(alice, twice)) == [("applied", None)] * 2
    row = await cloud.row("conversations", conv)
    assert row is not None
    assert (row["name"], row["is_archived"], row["hlc"]) == ("first", True, cloud.clock(8))


async def test_a_bad_compact_change_is_rejected_alone(cloud: Cloud, team: dict[str, Any]) -> None:
    alice, ws = team["alice"], new_id()
    made = compact("workspaces", ws, ws, {"org_id": team["org"], "name": "w"}, cloud.clock(1))
    assert statuses(await cloud.push(alice, [made])) == [("applied", None)]
    both = {**change("conversations", new_id(), ws, {"name": "b"}, cloud.clock(2)),
            "hlc": cloud.clock(2)}  # fmt: skip
    not_text = {**compact("conversations", new_id(), ws, {"name": "n"}, cloud.clock(2)),
                "hlc": 17}  # fmt: skip
    malformed = compact("conversations", new_id(), ws, {"name": "m"}, "yesterday")
    ahead = hlc(now_ms() + 2 * 3600_000)
    skewed = compact("conversations", new_id(), ws, {"name": "s"}, ahead)
    good = compact("conversations", new_id(), ws, {"name": "g"}, cloud.clock(3))
    results = await cloud.push(alice, [both, not_text, malformed, skewed, good])
    assert statuses(results) == [
        ("rejected", "invalid"),
        ("rejected", "invalid"),
        ("rejected", "invalid"),
        ("rejected", "clock_skew"),
        ("applied", None),
    ]
    assert [r["detail"] for r in results[:3]] == [
        "a change carries field_hlc or hlc, not both",
        "hlc must be a string",
        "bad clock hlc",
    ]
    assert ahead in results[3]["detail"]
    for rejected in (both, not_text, malformed, skewed):
        assert await cloud.row("conversations", rejected["id"]) is None
    assert await cloud.row("conversations", good["id"]) is not None
