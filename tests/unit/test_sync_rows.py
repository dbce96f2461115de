"""Checking a completed pulled row before it is stored (daemon/store/sync_rows.py, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.store.sync_rows import SHAPES, complete_row, is_stored_state, row_problem
from daemon.sync.adapters import merge_pulled

C1 = "1763700000000-000000-dev-a"
WS = "01900000-0000-7000-8000-000000000001"


def message(**changes: Any) -> dict[str, Any]:
    merged = {"workspace_id": WS, "conversation_id": "c1", "role": "user", "content": "hi",
              "created_at": "2026-11-21T07:09:32.123Z", "updated_at": "2026-11-21T07:09:32.123Z",
              "deleted_at": None, "field_hlc": {"content": C1}}  # fmt: skip
    return complete_row(SHAPES["messages"], {**merged, **changes}, {"id": "m1"})


class Text(str):
    """A str subclass is still a scalar (isinstance, not the exact type, decides)."""


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({}, None),
        ({"content": Text("hi")}, None),
        ({"content": None}, "content is missing"),
        ({"content": ["a"]}, "content is not a scalar"),
        ({"deleted_at": {"at": 1}}, "deleted_at is not a scalar"),
        ({"role": "robot"}, "unknown role"),
        ({"content": 7, "deleted_at": 1.5}, None),
    ],
)
def test_row_problem_names_what_cannot_be_stored(
    changes: dict[str, Any], problem: str | None
) -> None:
    assert row_problem(SHAPES["messages"], message(**changes)) == problem


def test_a_completed_row_has_the_table_columns_its_clock_and_origin() -> None:
    row = message()
    assert tuple(row) == SHAPES["messages"].columns
    assert (row["id"], row["hlc"], row["origin"]) == ("m1", C1, "dev-a")
    assert SHAPES["messages"].values(row) == tuple(row.values())


def test_workspace_json_columns_are_not_checked_as_scalars() -> None:
    merged = {"name": "w", "shared_memory": {"k": [1]}, "next_steps": ["a"],
              "created_at": "t", "updated_at": "t", "field_hlc": {"name": C1}}  # fmt: skip
    row = complete_row(SHAPES["workspaces"], merged, {"id": WS})
    assert row_problem(SHAPES["workspaces"], row) is None
    assert row_problem(SHAPES["workspaces"], {**row, "name": ["w"]}) == "name is not a scalar"


# -- is_stored_state: the echo shortcut (a pulled row that IS the stored row) ------------------

C2 = "1763700000001-000000-dev-b"
CONV = "01900000-0000-7000-8000-000000000002"


def stored_and_remote(table: str, remote: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row the store keeps for ``remote`` (merged into nothing, completed) and ``remote``."""
    merged = merge_pulled(table, None, remote, frozenset())
    return complete_row(SHAPES[table], merged.row, remote), remote


def remote_conversation(**changes: Any) -> dict[str, Any]:
    row = {"id": CONV, "workspace_id": WS, "name": "talk", "type": "chat", "is_archived": False,
           "created_at": "2026-11-21T07:09:32.123Z", "updated_at": "2026-11-21T07:09:32.123Z",
           "deleted_at": None, "hlc": C2, "origin": "dev-b",
           "field_hlc": {"name": C2, "is_archived": C1}}  # fmt: skip
    return {**row, **changes}


def remote_message(**changes: Any) -> dict[str, Any]:
    row = {"id": "m1", "workspace_id": WS, "conversation_id": CONV, "role": "user",
           "content": "hi", "created_at": "2026-11-21T07:09:32.123Z",
           "updated_at": "2026-11-21T07:09:32.123Z", "deleted_at": None, "hlc": C1,
           "origin": "dev-a", "field_hlc": {}}  # fmt: skip
    return {**row, **changes}


MESSAGE_FIELDS = ("workspace_id", "conversation_id", "role", "content", "created_at",
                  "updated_at", "deleted_at")  # fmt: skip


@pytest.mark.parametrize(
    ("table", "build", "echo"),
    [
        ("conversations", remote_conversation, {}),
        ("messages", remote_message, {}),
        # A pushed message comes back with a clock per field: the message's one clock.
        ("messages", remote_message, {"field_hlc": dict.fromkeys(MESSAGE_FIELDS, C1)}),
    ],
)
def test_an_echo_of_the_stored_row_is_recognised_and_the_merge_agrees(
    table: str, build: Any, echo: dict[str, Any]
) -> None:
    stored, _ = stored_and_remote(table, build())
    remote = build(**echo)
    assert is_stored_state(stored, remote)
    again = merge_pulled(table, stored, remote, frozenset())  # what the shortcut skips
    assert not again.row_changed and not again.changed


@pytest.mark.parametrize(
    ("table", "build", "changes"),
    [
        ("conversations", remote_conversation, {"name": "other"}),
        ("conversations", remote_conversation, {"is_archived": 0}),  # == False, not the same
        ("conversations", remote_conversation, {"field_hlc": {"name": C1, "is_archived": C1}}),
        ("conversations", remote_conversation, {"field_hlc": {"name": C2, "gone": C2}}),
        ("conversations", remote_conversation, {"origin": "dev-c"}),
        ("conversations", remote_conversation, {"extra": 1}),  # a field the row lacks
        ("messages", remote_message, {"content": "edited"}),
        ("messages", remote_message, {"hlc": C2}),
        ("messages", remote_message, {"field_hlc": {"content": C1}}),  # not one register
        ("messages", remote_message, {"field_hlc": dict.fromkeys(MESSAGE_FIELDS, C2)}),
        (
            "messages",
            remote_message,
            {"field_hlc": {**dict.fromkeys(MESSAGE_FIELDS, C1), "content": C2}},
        ),
        (
            "messages",
            remote_message,
            {"field_hlc": {**dict.fromkeys(MESSAGE_FIELDS, C1), "other": C1}},
        ),
        ("messages", remote_message, {"deleted_at": "2026-11-21T07:09:33.000Z"}),
    ],
)
def test_any_difference_in_value_type_or_clock_is_no_echo(
    table: str, build: Any, changes: dict[str, Any]
) -> None:
    stored, _ = stored_and_remote(table, build())
    assert not is_stored_state(stored, build(**changes))
