"""Realtime events in the daemon's terms (daemon/sync/live_map.py, pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daemon.realtime.frames import PostgresChange
from daemon.realtime.presence import Member, format_time
from daemon.sync.live_map import fit_members, member_json, next_away_at, remote_change

WS = "01900000-0000-7000-8000-000000000001"
OTHER_WS = "01900000-0000-7000-8000-000000000002"
CONV = "01900000-0000-7000-8000-0000000000c1"
MSG = "01900000-0000-7000-8000-0000000000a1"
CLOCK = "1763700000000-000000-dev-a"
TOPIC = f"realtime:workspace:{WS}"
ME = "dev-me"


def message_record(**overrides: Any) -> dict[str, Any]:
    """A cloud messages row as the capture trigger sends it (row_to_json)."""
    record: dict[str, Any] = {
        "id": MSG,
        "workspace_id": WS,
        "conversation_id": CONV,
        "role": "user",
        "content": "hello",
        "sender_user_id": None,
        "sender_agent_id": None,
        "model_used": None,
        "created_at": "2026-08-21T12:00:00.123456+00:00",
        "updated_at": "2026-08-21T12:00:00.123+00:00",
        "deleted_at": None,
        "hlc": CLOCK,
        "field_hlc": {"content": CLOCK, "role": CLOCK},
        "origin": "dev-a",
        "_txid": "812",
        "_seq": 40,
    }
    record.update(overrides)
    return record


def change(
    record: dict[str, Any] | None, *, kind: str = "INSERT", table: str = "messages", **kw: Any
) -> PostgresChange:
    return PostgresChange(
        topic=kw.get("topic", TOPIC),
        schema=kw.get("schema", "public"),
        table=table,
        type=kind,
        record=record,
        old_record=None if kind == "INSERT" else {"id": MSG},
        commit_timestamp="2026-08-21T12:00:00Z",
    )


def test_a_complete_row_is_applied_in_local_terms() -> None:
    found = remote_change(change(message_record()), WS, ME)
    assert found.verdict == "apply" and found.change is not None
    assert found.change["table"] == "messages" and found.change["id"] == MSG
    assert found.change["workspace_id"] == WS
    row = found.change["row"]
    assert row["content"] == "hello" and row["hlc"] == CLOCK and row["origin"] == "dev-a"
    assert row["created_at"] == "2026-08-21T12:00:00.123Z"  # the store's timestamp form
    assert row["updated_at"] == "2026-08-21T12:00:00.123Z"
    for cloud_only in ("_txid", "_seq", "sender_user_id", "model_used"):
        assert cloud_only not in row


def test_conversation_type_is_renamed_and_a_workspace_is_its_own_owner() -> None:
    conversation = {
        "id": CONV, "workspace_id": WS, "name": "chat", "conversation_type": "agent",
        "is_archived": False, "started_by": None, "created_at": "2026-08-21T12:00:00+00:00",
        "updated_at": "2026-08-21T12:00:00+00:00", "deleted_at": None, "hlc": CLOCK,
        "field_hlc": {"conversation_type": CLOCK}, "origin": "dev-b",
    }  # fmt: skip
    found = remote_change(change(conversation, table="conversations", kind="UPDATE"), WS, ME)
    assert found.verdict == "apply" and found.change is not None
    assert found.change["row"]["type"] == "agent"
    assert found.change["row"]["field_hlc"] == {"type": CLOCK}
    workspace = {
        "id": WS, "org_id": "o", "name": "w", "slug": None, "description": None,
        "status": "active", "task_goal": None, "current_step": None, "progress_data": {},
        "next_steps": [], "shared_memory": {}, "created_by": None, "last_active_at": None,
        "created_at": "2026-08-21T12:00:00+00:00", "updated_at": "2026-08-21T12:00:00+00:00",
        "deleted_at": None, "hlc": CLOCK, "field_hlc": {}, "origin": "dev-b",
    }  # fmt: skip
    found = remote_change(change(workspace, table="workspaces", kind="UPDATE"), WS, ME)
    assert found.verdict == "apply" and found.change is not None
    assert found.change["workspace_id"] == WS and "path" not in found.change["row"]


MINE = "1763700000001-000000-dev-me"


def test_the_echo_of_our_own_push_is_not_merged() -> None:
    # Every clock is this device's: it has every value (maybe newer ones already).
    own = message_record(hlc=MINE, field_hlc={"content": MINE, "role": MINE}, origin=ME)
    found = remote_change(change(own), WS, ME)
    assert found.verdict == "ignore" and found.reason == "own echo"
    assert remote_change(change(message_record(origin="dev-b")), WS, ME).verdict == "apply"


def test_a_row_whose_origin_is_this_device_but_holds_another_devices_field_is_merged() -> None:
    """``origin`` names the newest clock's device only: another device's older edit pushed
    late into a row this device wrote last must reach this device through realtime."""
    mixed = message_record(hlc=MINE, field_hlc={"content": CLOCK, "role": MINE}, origin=ME)
    found = remote_change(change(mixed), WS, ME)
    assert found.verdict == "apply" and found.change is not None
    assert found.change["row"]["field_hlc"] == {"content": CLOCK, "role": MINE}
    unclocked = message_record(hlc=MINE, field_hlc="not a map", origin=ME)
    assert remote_change(change(unclocked), WS, ME).verdict == "apply"  # the merge judges it


def test_a_row_of_another_workspace_is_ignored() -> None:
    found = remote_change(change(message_record(workspace_id=OTHER_WS)), WS, ME)
    assert found.verdict == "ignore" and found.change is None


@pytest.mark.parametrize(
    ("schema", "table"), [("public", "profiles"), ("auth", "messages"), ("public", "cloud_agents")]
)
def test_tables_that_are_not_synced_are_ignored(schema: str, table: str) -> None:
    found = remote_change(change(message_record(), schema=schema, table=table), WS, ME)
    assert found.verdict == "ignore"


def test_a_record_cut_for_size_asks_for_a_pull_instead() -> None:
    # Realtime drops the big fields of a record too large for the frame ("Payload Too Large").
    cut = {k: v for k, v in message_record().items() if k not in ("content", "field_hlc")}
    found = remote_change(change(cut), WS, ME)
    assert found.verdict == "pull" and found.change is None
    no_clock = message_record()
    del no_clock["hlc"]
    assert remote_change(change(no_clock), WS, ME).verdict == "pull"
    assert remote_change(change(message_record(id=None)), WS, ME).verdict == "pull"


def test_a_delete_or_a_missing_record_asks_for_a_pull() -> None:
    assert remote_change(change(None, kind="DELETE"), WS, ME).verdict == "pull"
    assert remote_change(change(None, kind="UPDATE"), WS, ME).verdict == "pull"


def member(device: str, *, status: str = "active", active_at: float | None = 1000.0) -> Member:
    return Member(
        key=device,
        user_id="u1",
        display_name="Ada",
        device_id=device,
        status=status,
        active_file="notes.md",
        cursor={"line": 3},
        since=format_time(900.0),
        active_at=None if active_at is None else format_time(active_at),
    )


def test_member_json_marks_this_device() -> None:
    shown = member_json(member("dev-a"), "dev-a")
    assert shown == {
        "user_id": "u1",
        "display_name": "Ada",
        "device_id": "dev-a",
        "status": "active",
        "active_file": "notes.md",
        "cursor": {"line": 3},
        "since": "1970-01-01T00:15:00.000Z",
        "active_at": "1970-01-01T00:16:40.000Z",
        "self": True,
    }
    assert member_json(member("dev-b"), "dev-a")["self"] is False


def test_next_away_at_is_the_first_active_member_to_go_idle() -> None:
    members = [
        member("a", active_at=1000.0),
        member("b", active_at=1100.0),
        member("c", status="busy", active_at=500.0),  # busy never turns away
        member("d", status="away", active_at=400.0),
    ]
    assert next_away_at(members, 1200.0) == 1300.0
    assert next_away_at(members, 1300.0) == 1400.0  # a is away already
    assert next_away_at(members, 1400.0) is None
    assert next_away_at([member("e", active_at=None)], 1000.0) == 1200.0  # since 900 + 300
    assert next_away_at([], 0.0) is None


def big_member(
    device_id: str, *, own: bool = False, cursor_bytes: int = 16 * 1024
) -> dict[str, Any]:
    """A member as presence.list shows it, tracking what syncd allows at most: a 16 KiB
    cursor and a 4096-character file path (3 bytes each as UTF-8)."""
    member = Member(
        key=device_id, user_id="u1", display_name="Ada", device_id=device_id, status="active",
        active_file="文" * 4096, cursor="c" * (cursor_bytes - 2),
        since=format_time(1.0), active_at=format_time(2.0),
    )  # fmt: skip
    return member_json(member, ME if own else "someone-else")


def test_fit_members_keeps_this_device_and_what_fits_in_order() -> None:
    members = [big_member(f"dev-{i:02d}") for i in range(40)]
    members.insert(25, big_member(ME, own=True))
    budget = (1 << 20) - 4096
    assert len(orjson.dumps(members)) > 1 << 20  # 41 members of ~28 KiB each: too large
    kept, truncated = fit_members(members, budget)
    assert len(orjson.dumps(kept)) <= budget
    assert truncated == len(members) - len(kept) > 0
    assert [m for m in kept if m["self"]] == [members[25]]  # this device, though late in order
    others = [m for m in members if not m["self"]]
    assert [m for m in kept if not m["self"]] == others[: len(kept) - 1]  # the first in order
    assert kept == [m for m in members if m in kept]  # in their order
    # the next one would not have fitted: as many are kept as fit
    assert len(orjson.dumps([*kept, others[len(kept) - 1]])) > budget


def test_fit_members_skips_a_member_too_large_and_keeps_the_smaller_after_it() -> None:
    small = [big_member(f"dev-{i}", cursor_bytes=100) for i in range(3)]
    huge = big_member("dev-huge", cursor_bytes=4 << 20)  # another client's meta: no limit
    members = [small[0], huge, small[1], big_member(ME, own=True), small[2]]
    kept, truncated = fit_members(members, 1 << 20)
    assert (kept, truncated) == ([small[0], small[1], members[3], small[2]], 1)
    assert fit_members(members[:1], 1 << 20) == (members[:1], 0)
    assert fit_members([], 10) == ([], 0)
    # this device is listed whatever the room
    assert fit_members([huge, members[3]], 100) == ([members[3]], 1)
