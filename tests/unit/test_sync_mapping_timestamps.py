"""local_change normalises each timestamp of a pulled row on its own (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sync.mapping import local_change, normalize_timestamp

PG = "2026-11-21T07:09:32.123456+00:00"
PG2 = "2026-11-21T07:09:33.5+00:00"
OFFSET = "2026-11-21T09:09:32.123+02:00"


class _Text(str):
    """A str subclass: still a timestamp to normalise."""


@pytest.mark.parametrize(
    ("created", "updated", "deleted"),
    [
        (PG, PG, None),  # the usual new row: one text twice
        (PG, PG2, None),
        (PG, PG2, PG),  # the first text again after another one
        (PG, PG, PG2),
        (OFFSET, OFFSET, OFFSET),
        ("", "", None),
        ("2026-11-21", "not a time", 7),
        (1, True, 1.0),  # equal values of other types stay what they were
        (_Text(PG), PG, None),
        (None, None, None),
    ],
)
def test_each_timestamp_is_normalised_on_its_own(created: Any, updated: Any, deleted: Any) -> None:
    row = {"id": "m1", "workspace_id": "w", "conversation_id": "c", "role": "user", "content": "x",
           "created_at": created, "updated_at": updated, "deleted_at": deleted,
           "hlc": "1763700000000-000000-dev-a", "origin": "dev-a"}  # fmt: skip
    change = local_change({"table": "messages", "id": "m1", "row": row})
    assert change is not None
    out = change["row"]
    for name, value in (("created_at", created), ("updated_at", updated), ("deleted_at", deleted)):
        expected = normalize_timestamp(value)
        assert out[name] == expected and type(out[name]) is type(expected), name


def test_the_usual_cloud_timestamps_become_the_store_form() -> None:
    row = {"id": "m1", "created_at": PG, "updated_at": PG2, "deleted_at": None}
    change = local_change({"table": "messages", "id": "m1", "row": row})
    assert change is not None
    assert change["row"]["created_at"] == "2026-11-21T07:09:32.123Z"
    assert change["row"]["updated_at"] == "2026-11-21T07:09:33.500Z"
    assert change["row"]["deleted_at"] is None
