"""sync_push: per-field clocks decide, one result per change, bad changes never fail the batch."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from .kit import Cloud, change, hlc, new_id, now_ms, race


@pytest.fixture
async def team(cloud: Cloud) -> dict[str, Any]:
    alice, bob = await cloud.user("alice@a.io"), await cloud.user("bob@b.io")
    org_a, org_b = await cloud.org("A", alice), await cloud.org("B", bob)
    ws_b = await cloud.workspace(org_b, "theirs")
    return {"alice": alice, "bob": bob, "org_a": org_a, "org_b": org_b, "ws_b": ws_b}


def statuses(results: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r["status"], r.get("reason")) for r in results]


async def new_workspace(cloud: Cloud, team: dict[str, Any]) -> tuple[str, str]:
    """A workspace and a conversation in org A, created through sync_push by Alice."""
    ws, conv = new_id(), new_id()
    results = await cloud.push(
        team["alice"],
        [
            change("workspaces", ws, ws, {"org_id": team["org_a"], "name": "w"}, cloud.clock(1)),
            change("conversations", conv, ws, {"name": "c"}, cloud.clock(2)),
        ],
    )
    assert statuses(results) == [("applied", None), ("applied", None)]
    return ws, conv


async def test_new_rows_are_applied_with_their_clocks(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, conv = await new_workspace(cloud, team)
    row = await cloud.row("conversations", conv)
    assert row is not None
    assert row["name"] == "c" and row["workspace_id"] == ws
    assert row["field_hlc"] == {"name": cloud.clock(2)}
    assert row["hlc"] == cloud.clock(2) and row["origin"] == "dev1"
    assert int(row["_txid"]) > 0 and row["_seq"] > 0


async def test_new_rows_are_written_and_pulled_in_batch_order(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    ws, conv = await new_workspace(cloud, team)
    ids = [new_id() for _ in range(40)]  # random ids: their hash order is not the batch's
    batch = [
        change("messages", i, ws, {"conversation_id": conv, "role": "user", "content": str(n)},
               cloud.clock(10 + n))
        for n, i in enumerate(ids)
    ]  # fmt: skip
    assert statuses(await cloud.push(team["alice"], batch)) == [("applied", None)] * 40
    page = await cloud.pull(team["alice"], workspace_id=ws)
    assert [c["id"] for c in page["changes"] if c["table"] == "messages"] == ids


async def test_fields_merge_by_clock(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, conv = await new_workspace(cloud, team)
    alice = team["alice"]
    # two devices edit different fields concurrently: both edits survive
    results = await cloud.push(
        alice,
        [
            change("conversations", conv, ws, {"name": "from laptop"}, cloud.clock(5, "laptop")),
            change(
                "conversations", conv, ws, {"is_archived": True}, cloud.clock(4, "phone"), "phone"
            ),
        ],
    )
    assert statuses(results) == [("applied", None), ("applied", None)]
    # an older write of name loses, and says so
    results = await cloud.push(
        alice, [change("conversations", conv, ws, {"name": "stale"}, cloud.clock(3, "phone"))]
    )
    assert statuses(results) == [("superseded", None)]
    row = await cloud.row("conversations", conv)
    assert row is not None
    assert (row["name"], row["is_archived"]) == ("from laptop", True)
    assert row["field_hlc"]["name"] == cloud.clock(5, "laptop")
    assert row["hlc"] == cloud.clock(5, "laptop")
    assert row["origin"] == "laptop"  # the device of the newest clock, not the last pusher


async def test_a_batch_sent_twice_changes_nothing(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, conv = await new_workspace(cloud, team)
    msg, task = new_id(), new_id()
    batch = [
        change("conversations", conv, ws, {"name": "renamed"}, cloud.clock(10)),
        change(
            "messages",
            msg,
            ws,
            {"conversation_id": conv, "role": "user", "content": "hi", "sender_user_id": None},
            cloud.clock(11),
        ),
        change("tasks", task, ws, {"kind": "build", "priority": 2}, cloud.clock(12)),
    ]
    first = await cloud.push(team["alice"], batch)
    assert statuses(first) == [("applied", None)] * 3
    before = [await cloud.row(t, i) for t, i in (("conversations", conv), ("messages", msg),
                                                 ("tasks", task))]  # fmt: skip
    second = await cloud.push(team["alice"], batch)
    assert statuses(second) == [("applied", None)] * 3  # equal clocks: already applied
    after = [await cloud.row(t, i) for t, i in (("conversations", conv), ("messages", msg),
                                                ("tasks", task))]  # fmt: skip
    assert after == before  # not even _txid/_seq moved: no echo for pullers


async def test_rejections_do_not_fail_the_batch(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, conv = await new_workspace(cloud, team)
    good, bad_type, system, skewed, theirs, foreign_ws = (new_id() for _ in range(6))
    far_future = hlc(now_ms() + 2 * 3600_000)
    results = await cloud.push(
        team["alice"],
        [
            change("tasks", bad_type, ws, {"kind": "k", "priority": "high"}, cloud.clock(20)),
            change(
                "messages",
                system,
                ws,
                {"conversation_id": conv, "role": "system", "content": "secret prompt"},
                cloud.clock(21),
            ),  # fmt: skip
            change("tasks", skewed, ws, {"kind": "k"}, far_future),
            change("tasks", theirs, team["ws_b"], {"kind": "k"}, cloud.clock(22)),
            change(
                "workspaces",
                foreign_ws,
                foreign_ws,
                {"org_id": team["org_b"], "name": "x"},
                cloud.clock(23),
            ),  # fmt: skip
            {"table": "secrets", "id": new_id(), "fields": {}, "field_hlc": {}},
            change("tasks", good, ws, {"kind": "k", "priority": 1}, cloud.clock(24)),
            "not a change",
            change("tasks", new_id(), ws, {"kind": "k", "owner": "x"}, cloud.clock(25)),
            change("tasks", new_id(), ws, {"kind": "k"}, "yesterday"),
        ],
    )
    assert statuses(results) == [
        ("rejected", "invalid"),
        ("rejected", "invalid"),
        ("rejected", "clock_skew"),
        ("rejected", "forbidden"),
        ("rejected", "forbidden"),
        ("rejected", "unknown_table"),
        ("applied", None),
        ("rejected", "invalid"),
        ("rejected", "invalid"),
        ("rejected", "invalid"),
    ]
    assert results[0]["id"] == bad_type and results[0]["table"] == "tasks"
    assert "local-only" in results[1]["detail"]
    assert await cloud.row("tasks", good) is not None
    for rejected in (bad_type, skewed, theirs):
        assert await cloud.row("tasks", rejected) is None
    assert await cloud.row("messages", system) is None
    assert await cloud.row("workspaces", foreign_ws) is None


async def test_rows_of_another_organisation_are_forbidden(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    # Bob's task exists; Alice tries to overwrite it, once naming its real workspace and once
    # pretending it lives in her own.
    ws, _ = await new_workspace(cloud, team)
    task = new_id()
    assert statuses(
        await cloud.push(
            team["bob"], [change("tasks", task, team["ws_b"], {"kind": "k"}, cloud.clock(1))]
        )  # fmt: skip
    ) == [("applied", None)]
    results = await cloud.push(
        team["alice"],
        [
            change("tasks", task, team["ws_b"], {"status": "pwned"}, cloud.clock(50)),
            change("tasks", task, ws, {"status": "pwned"}, cloud.clock(51)),
            change("workspaces", team["ws_b"], team["ws_b"], {"name": "pwned"}, cloud.clock(52)),
        ],
    )
    assert statuses(results) == [("rejected", "forbidden")] * 3
    row = await cloud.row("tasks", task)
    assert row is not None and row["status"] == "queued"


async def test_a_row_cannot_move_to_another_workspace(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, conv = await new_workspace(cloud, team)
    ws2, _ = await new_workspace(cloud, team)
    results = await cloud.push(
        team["alice"], [change("conversations", conv, ws2, {"name": "moved"}, cloud.clock(60))]
    )
    assert statuses(results) == [("rejected", "invalid")]


async def test_messages_are_append_only(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, conv = await new_workspace(cloud, team)
    msg = new_id()
    fields = {"conversation_id": conv, "role": "assistant", "content": "first"}
    await cloud.push(team["alice"], [change("messages", msg, ws, fields, cloud.clock(30))])
    rewritten = dict(fields, content="rewritten")
    results = await cloud.push(
        team["alice"],
        [
            change("messages", msg, ws, rewritten, cloud.clock(31)),
            change("messages", msg, ws, {"deleted_at": "2026-01-02T03:04:05Z"}, cloud.clock(32)),
        ],
    )
    assert [r["status"] for r in results] == ["superseded", "applied"], results
    row = await cloud.row("messages", msg)
    assert row is not None
    assert row["content"] == "first"
    assert row["deleted_at"] is not None and row["deleted_at"].startswith("2026-01-02T03:04:05")


async def test_sender_must_be_the_caller(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, conv = await new_workspace(cloud, team)
    mine, forged = new_id(), new_id()
    base = {"conversation_id": conv, "role": "user", "content": "x"}
    results = await cloud.push(
        team["alice"],
        [
            change("messages", mine, ws, dict(base, sender_user_id=team["alice"]), cloud.clock(1)),
            change("messages", forged, ws, dict(base, sender_user_id=team["bob"]), cloud.clock(2)),
        ],
    )
    assert statuses(results) == [("applied", None), ("rejected", "forbidden")]


async def test_json_maps_merge_per_key(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, _ = await new_workspace(cloud, team)
    alice = team["alice"]

    def edit(keys: dict[str, Any], clock: str, **extra: str) -> dict[str, Any]:
        clocks = {f"shared_memory.{k}": clock for k in keys} | extra
        return change("workspaces", ws, ws, {"shared_memory": keys}, clocks)

    await cloud.push(alice, [edit({"a": 1, "b": 2}, cloud.clock(40, "laptop"))])
    await cloud.push(alice, [edit({"b": 20, "c": 3}, cloud.clock(41, "phone"))])
    await cloud.push(alice, [edit({"a": 100}, cloud.clock(39, "tablet"))])  # older: loses
    await cloud.push(alice, [edit({"c": None}, cloud.clock(42, "laptop"))])  # tombstone
    row = await cloud.row("workspaces", ws)
    assert row is not None
    assert row["shared_memory"] == {"a": 1, "b": 20, "c": None}
    assert row["field_hlc"]["shared_memory.b"] == cloud.clock(41, "phone")
    assert row["field_hlc"]["shared_memory.c"] == cloud.clock(42, "laptop")
    # a whole-map replacement (base clock) drops every older key
    replace = change(
        "workspaces",
        ws,
        ws,
        {"shared_memory": {"z": 26}},
        {"shared_memory": cloud.clock(43), "shared_memory.z": cloud.clock(43)},
    )
    assert statuses(await cloud.push(alice, [replace])) == [("applied", None)]
    row = await cloud.row("workspaces", ws)
    assert row is not None
    assert row["shared_memory"] == {"z": 26}
    assert {k for k in row["field_hlc"] if k.startswith("shared_memory")} == {
        "shared_memory",
        "shared_memory.z",
    }


async def test_first_writer_wins_fields(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, _ = await new_workspace(cloud, team)
    task = new_id()
    alice, bob = team["alice"], team["bob"]
    await cloud.push(alice, [change("tasks", task, ws, {"kind": "k", "created_by": None},
                                    cloud.clock(1))])  # fmt: skip
    await cloud.push(alice, [change("tasks", task, ws, {"created_by": bob}, cloud.clock(9))])
    await cloud.push(alice, [change("tasks", task, ws, {"created_by": alice}, cloud.clock(5))])
    await cloud.push(alice, [change("tasks", task, ws, {"created_by": None}, cloud.clock(20))])
    row = await cloud.row("tasks", task)
    assert row is not None
    assert row["created_by"] == alice  # non-null beats null; the earliest non-null write wins
    assert row["field_hlc"]["created_by"] == cloud.clock(5)


async def test_deleted_rows_stay_deleted_until_a_newer_undelete(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    ws, conv = await new_workspace(cloud, team)
    alice = team["alice"]
    stamp = "2026-05-05T00:00:00Z"
    await cloud.push(alice, [change("conversations", conv, ws, {"deleted_at": stamp},
                                    cloud.clock(10))])  # fmt: skip
    await cloud.push(alice, [change("conversations", conv, ws, {"name": "edit"}, cloud.clock(11))])
    row = await cloud.row("conversations", conv)
    assert row is not None and row["deleted_at"] is not None and row["name"] == "edit"
    await cloud.push(alice, [change("conversations", conv, ws, {"deleted_at": None},
                                    cloud.clock(12))])  # fmt: skip
    row = await cloud.row("conversations", conv)
    assert row is not None and row["deleted_at"] is None


async def test_service_role_may_push_anywhere(cloud: Cloud, team: dict[str, Any]) -> None:
    task = new_id()
    results = await cloud.push(
        None, [change("tasks", task, team["ws_b"], {"kind": "k"}, cloud.clock(1))],
        role="service_role",
    )  # fmt: skip
    assert statuses(results) == [("applied", None)]


async def test_a_malformed_batch_is_an_error(cloud: Cloud, team: dict[str, Any]) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await cloud.fetch_as(team["alice"], """SELECT public.sync_push('{"not": "a list"}')""")
    assert await cloud.push(team["alice"], []) == []


async def test_concurrent_pushes_of_one_new_row_merge(cloud: Cloud, team: dict[str, Any]) -> None:
    """Two devices create the same row at once (a retry racing its original): the second waits
    for the first, then merges into its row instead of failing on the primary key."""
    ws, _ = await new_workspace(cloud, team)
    task = new_id()
    first = [change("tasks", task, ws, {"kind": "k", "status": "one"}, cloud.clock(70, "a"))]
    second = [change("tasks", task, ws, {"kind": "k", "priority": 7}, cloud.clock(71, "b"))]
    r1, r2 = await race(cloud, team["alice"], first, second)
    assert statuses(r1) == statuses(r2) == [("applied", None)]
    row = await cloud.row("tasks", task)
    assert row is not None
    assert (row["status"], row["priority"]) == ("one", 7)
    assert row["field_hlc"]["kind"] == cloud.clock(70, "a")  # fww: the first write of kind


async def test_several_changes_of_one_row_in_one_batch(cloud: Cloud, team: dict[str, Any]) -> None:
    ws, _ = await new_workspace(cloud, team)
    task = new_id()
    results = await cloud.push(
        team["alice"],
        [
            change("tasks", task, ws, {"kind": "k", "status": "a"}, cloud.clock(80)),
            change("tasks", task, ws, {"status": "b"}, cloud.clock(82)),
            change("tasks", task, ws, {"status": "stale"}, cloud.clock(81)),
            change("tasks", task, ws, {"status": "b"}, cloud.clock(82)),  # a repeat
            change("tasks", new_id(), ws, {"kind": "k", "attempts": "many"}, cloud.clock(83)),
        ],
    )
    assert statuses(results) == [
        ("applied", None),
        ("applied", None),
        ("superseded", None),
        ("applied", None),
        ("rejected", "invalid"),
    ]
    row = await cloud.row("tasks", task)
    assert row is not None and row["status"] == "b"


@pytest.mark.parametrize(
    ("fields", "clocks", "status", "detail"),
    [
        # all clocks equal (checked once) or all different (each checked): fine
        ({"kind": "k", "priority": 1}, "same", "applied", None),
        ({"kind": "k", "priority": 1}, {"kind": 1, "priority": 2}, "applied", None),
        ({"kind": "k", "priority": 1}, {"kind": 1}, "invalid", "field priority has no clock"),
        ({"kind": "k"}, {"kind": None}, "invalid", "bad clock for kind"),
        ({"kind": "k"}, {"kind": "17637000000x0-000001-dev1"}, "invalid", "bad clock for kind"),
        # one bad clock among different ones
        ({"kind": "k", "priority": 1}, {"kind": 1, "priority": "x" * 30}, "invalid", "priority"),
        ({"kind": "k", "priority": 1}, {"kind": 1, "priority": "future"}, "clock_skew", "ahead"),
        ({"kind": "k"}, {"kind": 1, "status": 1}, "invalid", "clock for status, which the"),
        ({"kind": "k"}, {"kind": 1, "progress.a": 1}, "applied", None),  # a key of a map field
        ({"kind": "k"}, {"kind": 1, "priority.a": 1}, "invalid", "clock for priority.a"),
        # the malformed clock is reported before the skewed one
        ({"kind": "k", "priority": 1}, {"kind": "future", "priority": "p"}, "invalid", "bad clock"),
    ],
)
async def test_every_clock_is_checked(
    cloud: Cloud,
    team: dict[str, Any],
    fields: dict[str, Any],
    clocks: str | dict[str, Any],
    status: str,
    detail: str | None,
) -> None:
    ws, _ = await new_workspace(cloud, team)
    future = hlc(now_ms() + 2 * 3600_000)

    def resolve(value: Any) -> Any:  # n: a distinct well-formed clock; "future": skewed
        if isinstance(value, int):
            return cloud.clock(30 + value)
        return future if value == "future" else value

    if isinstance(clocks, dict):
        field_hlc = {k: resolve(v) for k, v in clocks.items()}
    else:
        field_hlc = dict.fromkeys(fields, cloud.clock(30))
    task = new_id()
    [result] = await cloud.push(team["alice"], [change("tasks", task, ws, fields, field_hlc)])
    if status == "applied":
        assert result["status"] == "applied", result
        row = await cloud.row("tasks", task)
        assert row is not None and row["hlc"] == max(field_hlc.values())
    else:
        assert (result["status"], result["reason"]) == ("rejected", status), result
        assert detail is not None and detail in result["detail"], result
        assert await cloud.row("tasks", task) is None
