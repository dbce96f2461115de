"""Local rows <-> cloud rows (daemon/sync/mapping.py) and the injected merge (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.store import doc_ops
from daemon.store.schema import metadata
from daemon.sync.driver import merge_pulled
from daemon.sync.mapping import (
    LOCAL_COLUMNS,
    LOCAL_ONLY,
    cloud_change,
    local_change,
    normalize_timestamp,
)

C1 = "1763700000000-000000-dev-a"
C2 = "1763700000500-000001-dev-a"
C3 = "1763700001000-000000-dev-b"
WS = "01900000-0000-7000-8000-000000000001"
ORG = "01900000-0000-7000-8000-0000000000ff"


def test_local_columns_match_the_store_schema() -> None:
    tables = {**metadata.tables, "documents": doc_ops.documents, "doc_updates": doc_ops.doc_updates}
    for table, columns in LOCAL_COLUMNS.items():
        assert columns == {c.name for c in tables[table].columns}, table


def test_conversation_type_is_renamed_with_its_clock() -> None:
    change = cloud_change(
        "conversations", "c1", WS, {"type": "agent", "name": "n"}, {"type": C2, "name": C1},
        hlc=C2, origin="dev-a",
    )  # fmt: skip
    assert change is not None
    assert change["fields"] == {"conversation_type": "agent", "name": "n"}
    assert change["field_hlc"] == {"conversation_type": C2, "name": C1}
    assert (change["table"], change["id"], change["workspace_id"]) == ("conversations", "c1", WS)


def test_local_only_and_bookkeeping_columns_never_leave() -> None:
    fields = {"id": WS, "name": "w", "path": "/home/me/w", "hlc": C1, "origin": "dev-a"}
    clocks = {"name": C1, "path": C1, "id": C1}
    change = cloud_change("workspaces", WS, WS, fields, clocks, hlc=C1, origin="d", org_id=ORG)
    assert change is not None
    assert set(change["fields"]) == {"name", "org_id"}
    assert set(change["field_hlc"]) == {"name", "org_id"}
    assert change["fields"]["org_id"] == ORG and change["workspace_id"] == WS
    task = {"status": "running", "attempts": 2, "lease_owner": "me", "lease_expires_at": "x"}
    out = cloud_change("tasks", "t1", WS, task, dict.fromkeys(task, C2), hlc=C2, origin="d")
    assert out is not None and set(out["fields"]) == {"status"}


def test_a_change_of_local_only_columns_pushes_nothing() -> None:
    fields = {"path": "/x"}
    assert cloud_change("workspaces", WS, WS, fields, {"path": C1}, hlc=C1, origin="d") is None
    lease = {"lease_owner": "me", "lease_expires_at": None}
    assert cloud_change("tasks", "t", WS, lease, {}, hlc=C1, origin="d") is None


def test_system_and_tool_messages_and_unknown_tables_push_nothing() -> None:
    for role in ("system", "tool"):
        message = {"role": role, "content": "x", "conversation_id": "c"}
        assert cloud_change("messages", "m", WS, message, {}, hlc=C1, origin="d") is None
    assert cloud_change("profiles", "d", WS, {"a": 1}, {}, hlc=C1, origin="d") is None


def test_clocks_are_completed_and_stray_ones_dropped() -> None:
    fields = {"shared_memory": {"k": 1}, "status": "active"}
    clocks = {"shared_memory.k": C2, "shared_memory": C1, "task_goal": C1}
    change = cloud_change("workspaces", WS, WS, fields, clocks, hlc=C3, origin="d")
    assert change is not None
    # map key clocks travel; a clock of a field the change does not carry does not
    assert change["field_hlc"] == {
        "shared_memory.k": C2,
        "shared_memory": C1,
        "status": C3,
    }


@pytest.mark.parametrize(
    ("table", "fields"),
    [
        ("messages", {"id": "m", "conversation_id": "c", "role": "user", "content": "hi",
                      "hlc": C2, "deleted_at": None}),
        ("conversations", {"type": "agent", "name": "n"}),
        ("workspaces", {"name": "w", "path": "/x", "next_steps": None, "shared_memory": {"k": 1}}),
        ("tasks", {"kind": "k", "payload": None, "attempts": 2, "progress": {"p": 1}}),
    ],
)  # fmt: skip
def test_a_one_clock_change_goes_compact_and_means_what_its_clocks_spelt_out_mean(
    table: str, fields: dict[str, Any]
) -> None:
    clocks = dict.fromkeys(fields, C2)
    spelt = cloud_change(table, "r", WS, fields, clocks, hlc=C2, origin="d", org_id=ORG)
    short = cloud_change(
        table, "r", WS, fields, clocks, hlc=C2, origin="d", org_id=ORG, one_clock=True
    )
    assert spelt is not None and short is not None
    # the same change, its clocks given once (JSON maps whole: no clock of a key)
    assert "field_hlc" not in short and short.pop("hlc") == C2
    assert spelt.pop("field_hlc") == dict.fromkeys(spelt["fields"], C2)
    assert short == spelt
    nothing = {"id": "r", "hlc": C2, **dict.fromkeys(LOCAL_ONLY.get(table, ()), 1)}
    assert cloud_change(table, "r", WS, nothing, {}, hlc=C2, origin="d", one_clock=True) is None


def test_nulls_of_not_null_cloud_columns_become_empty_values() -> None:
    ws = cloud_change("workspaces", WS, WS, {"next_steps": None}, {}, hlc=C1, origin="d")
    task = cloud_change("tasks", "t", WS, {"payload": None}, {}, hlc=C1, origin="d")
    assert ws is not None and ws["fields"]["next_steps"] == []
    assert task is not None and task["fields"]["payload"] == {}


def test_updated_at_travels_as_the_store_wrote_it_and_is_never_invented() -> None:
    fields = {"name": "x", "updated_at": "2026-01-01T00:00:00.000Z"}
    clocks = {"name": C2, "updated_at": C2}
    change = cloud_change("conversations", "c", WS, fields, clocks, hlc=C2, origin="d")
    assert change is not None and change["fields"]["updated_at"] == "2026-01-01T00:00:00.000Z"
    assert change["field_hlc"] == {"name": C2, "updated_at": C2}
    bare = cloud_change("conversations", "c", WS, {"name": "x"}, {"name": C2}, hlc=C2, origin="d")
    assert bare is not None and "updated_at" not in bare["fields"]


def cloud_row(**extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "workspace_id": WS,
        "name": "chat",
        "conversation_type": "agent",
        "is_archived": False,
        "started_by": "u",
        "created_at": "2026-11-21T07:09:32.123+00:00",
        "updated_at": "2026-11-21T09:09:32.5+02:00",
        "deleted_at": None,
        "hlc": C2,
        "field_hlc": {"name": C1, "conversation_type": C2, "started_by": C1},
        "origin": "dev-b",
        "_txid": "812",
        "_seq": 44,
        **extra,
    }


def test_pulled_rows_take_local_names_and_forms() -> None:
    change = local_change({"table": "conversations", "id": "c1", "workspace_id": WS,
                           "row": cloud_row()})  # fmt: skip
    assert change is not None
    row = change["row"]
    assert row["type"] == "agent" and "conversation_type" not in row
    assert not {"started_by", "_txid", "_seq"} & set(row)
    assert row["created_at"] == "2026-11-21T07:09:32.123Z"
    assert row["updated_at"] == "2026-11-21T07:09:32.500Z"
    assert row["field_hlc"] == {"name": C1, "type": C2}
    assert (change["table"], change["id"], change["workspace_id"]) == ("conversations", "c1", WS)


def test_pulled_workspaces_and_tasks_lose_cloud_and_local_only_columns() -> None:
    ws = {"id": WS, "org_id": ORG, "name": "w", "slug": None, "created_by": None,
          "field_hlc": {"org_id": C1, "name": C1}, "hlc": C1, "origin": None}  # fmt: skip
    change = local_change({"table": "workspaces", "id": WS, "workspace_id": WS, "row": ws})
    assert change is not None and change["workspace_id"] == WS
    assert change["row"] == {"id": WS, "name": "w", "field_hlc": {"name": C1}, "hlc": C1,
                             "origin": "cloud"}  # fmt: skip
    task = {"id": "t", "workspace_id": WS, "attempts": 0, "kind": "k", "field_hlc": {}}
    out = local_change({"table": "tasks", "row": task})
    assert out is not None and "attempts" not in out["row"] and out["id"] == "t"


def cloud_message() -> dict[str, Any]:
    """A messages row as sync_pull serves it: every cloud column."""
    return {"id": "m1", "workspace_id": WS, "conversation_id": "c1", "role": "user",
            "content": "hi", "sender_user_id": None, "sender_agent_id": None,
            "model_used": None, "created_at": "2026-11-21T07:09:32.123456+00:00",
            "updated_at": "2026-11-21T07:09:32.5+00:00", "deleted_at": None, "hlc": C1,
            "field_hlc": {}, "origin": "dev-b", "_txid": "9", "_seq": 3}  # fmt: skip


def test_a_complete_cloud_row_and_one_lacking_columns_map_alike() -> None:
    full = local_change({"table": "messages", "row": cloud_message()})
    assert full is not None
    assert full["row"] == {"id": "m1", "workspace_id": WS, "conversation_id": "c1",
                           "role": "user", "content": "hi", "deleted_at": None,
                           "created_at": "2026-11-21T07:09:32.123Z",
                           "updated_at": "2026-11-21T07:09:32.500Z", "hlc": C1,
                           "origin": "dev-b", "field_hlc": {}}  # fmt: skip
    # one key order in every process (it becomes the stored field_hlc's order)
    assert list(full["row"]) == [*sorted(set(full["row"]) - {"field_hlc"}), "field_hlc"]
    lacking = {k: v for k, v in cloud_message().items() if k not in ("model_used", "content")}
    partial = local_change({"table": "messages", "row": lacking})
    assert partial is not None
    assert partial["row"] == {k: v for k, v in full["row"].items() if k != "content"}


def test_the_cloud_name_of_a_renamed_column_wins_over_a_stray_local_name() -> None:
    row = {"id": "c1", "type": "stray", "conversation_type": "agent"}
    for order in (row, dict(reversed(row.items()))):
        change = local_change({"table": "conversations", "row": order})
        assert change is not None and change["row"]["type"] == "agent"


def test_unknown_tables_and_malformed_changes_are_left_out() -> None:
    assert local_change({"table": "cloud_agents", "row": {"id": "x"}}) is None
    assert local_change({"table": "messages", "row": None}) is None
    assert local_change({"row": {}}) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-21T07:09:32+00:00", "2026-11-21T07:09:32.000Z"),
        ("2026-11-21T07:09:32.123456+00:00", "2026-11-21T07:09:32.123Z"),
        ("2026-11-21T07:09:32.12+00:00", "2026-11-21T07:09:32.120Z"),
        ("2026-11-21T07:09:32.999999+00:00", "2026-11-21T07:09:32.999Z"),
        ("2026-11-21T07:09:32.\u0661\u0662+00:00", "2026-11-21T07:09:32.\u0661\u0662+00:00"),
        (
            "2026-11-21T07:09:32." + "\u0661" * 6 + "+00:00",
            "2026-11-21T07:09:32." + "\u0661" * 6 + "+00:00",
        ),
        ("2026-11-21T07:09:32.123456+01:00", "2026-11-21T06:09:32.123Z"),
        ("2026-11-21T08:09:32.1+01:00", "2026-11-21T07:09:32.100Z"),
        ("2026-11-21T07:09:32.123Z", "2026-11-21T07:09:32.123Z"),
        ("not a time at all, no", "not a time at all, no"),
        ("short", "short"),
        (None, None),
        (42, 42),
    ],
)
def test_timestamps_are_normalised(value: Any, expected: Any) -> None:
    assert normalize_timestamp(value) == expected


def _t(clock: str) -> str:
    from daemon.store.codec import iso_ms

    return iso_ms(int(clock[:13]))


def local_conversation() -> dict[str, Any]:
    return {
        "id": "c1",
        "workspace_id": WS,
        "name": "chat",
        "type": "chat",
        "is_archived": False,
        "created_at": _t(C1),
        "updated_at": _t(C1),
        "deleted_at": None,
        "hlc": C1,
        "field_hlc": {"name": C1, "type": C1, "is_archived": C1, "deleted_at": C1},
        "origin": "dev-a",
    }


def test_our_own_push_coming_back_changes_nothing_visible() -> None:
    local = local_conversation()
    fields = {k: v for k, v in local.items() if k not in ("hlc", "field_hlc", "origin")}
    clocks = dict.fromkeys(fields, C1) | local["field_hlc"]
    pushed = cloud_change("conversations", "c1", WS, fields, clocks, hlc=C1, origin="dev-a")
    assert pushed is not None
    stored = {**pushed["fields"], "id": "c1", "hlc": C1, "field_hlc": pushed["field_hlc"],
              "origin": "dev-a", "started_by": None, "_txid": "9", "_seq": 1}  # fmt: skip
    stored["created_at"] = stored["created_at"].replace("Z", "+00:00")
    back = local_change({"table": "conversations", "row": stored})
    assert back is not None
    outcome = merge_pulled("conversations", local, back["row"], frozenset())
    assert outcome.changed == frozenset()
    assert outcome.conflicts == ()
    # the clocks the push gave fields the store left unclocked are adopted (same values), so
    # every replica ends with the same field_hlc
    expected = {k: v for k, v in pushed["field_hlc"].items() if k != "conversation_type"}
    assert outcome.row["field_hlc"] == expected | {"type": C1}


def test_an_unclocked_local_field_keeps_its_value_when_the_remote_differs() -> None:
    local = local_conversation()
    remote = {**local, "created_at": _t(C3), "field_hlc": {"created_at": C3}, "hlc": C3}
    outcome = merge_pulled("conversations", local, remote, frozenset())
    assert outcome.row["created_at"] == _t(C1)  # fww: the empty clock is the smaller one
    assert "created_at" not in outcome.row["field_hlc"]


def test_a_remote_edit_wins_and_a_new_row_gets_local_defaults() -> None:
    local = local_conversation()
    remote = {**local, "name": "renamed", "field_hlc": {**local["field_hlc"], "name": C3},
              "hlc": C3, "origin": "dev-b"}  # fmt: skip
    outcome = merge_pulled("conversations", local, remote, frozenset())
    assert outcome.changed == {"name"} and outcome.row["name"] == "renamed"
    assert outcome.row["field_hlc"]["name"] == C3 and outcome.row_changed
    task = {"id": "t", "workspace_id": WS, "kind": "k", "hlc": C1, "field_hlc": {"kind": C1}}
    new = merge_pulled("tasks", None, task, frozenset())
    assert new.row["attempts"] == 0 and new.row["lease_owner"] is None


def test_a_lost_pending_manual_edit_is_a_conflict() -> None:
    local = {"id": WS, "name": "w", "task_goal": "mine", "hlc": C2,
             "field_hlc": {"name": C1, "task_goal": C2}, "origin": "dev-a"}  # fmt: skip
    remote = {"id": WS, "name": "w", "task_goal": "theirs", "hlc": C3,
              "field_hlc": {"name": C1, "task_goal": C3}, "origin": "dev-b"}  # fmt: skip
    outcome = merge_pulled("workspaces", local, remote, frozenset({"task_goal"}))
    assert outcome.row["task_goal"] == "theirs"
    [conflict] = outcome.conflicts
    assert conflict == {"field": "task_goal", "local_value": "mine", "remote_value": "theirs",
                        "local_hlc": C2, "remote_hlc": C3}  # fmt: skip
