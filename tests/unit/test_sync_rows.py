"""Checking a completed pulled row before it is stored (daemon/store/sync_rows.py, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.store.sync_rows import SHAPES, complete_row, row_problem

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
