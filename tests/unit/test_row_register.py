"""Rows that are one register (``hlc``, no ``field_hlc``) are checked as carefully as rows
with a clock per field: ``RowState.from_row`` refuses the same input with the same error."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sync.merge import InvalidRow, RowState

C1 = "1763700000000-000000-dev-a"


def error_of(build: Any) -> tuple[str, str]:
    with pytest.raises(InvalidRow) as caught:
        build()
    return caught.value.field, caught.value.message


@pytest.mark.parametrize(
    "fields",
    [
        {"b": 1, "a": 2},
        {"b": 1, "a.x": 2},
        {"b": 1, "": 2},
        {"b": 1, 7: 2},
    ],
)
@pytest.mark.parametrize("hlc", [C1, "not-a-clock", C1[:12], ["no"], 5])
def test_a_register_row_is_refused_exactly_as_its_per_field_clocks_would_be(
    fields: dict[Any, Any], hlc: Any
) -> None:
    per_field = dict.fromkeys(fields, hlc)
    if fields == {"b": 1, "a": 2} and hlc == C1:  # the one valid input
        state = RowState.from_row({"id": "r", **fields, "hlc": hlc})
        assert state == RowState(fields, per_field)
        return
    expected = error_of(lambda: RowState(fields, per_field))
    assert error_of(lambda: RowState.from_row({"id": "r", **fields, "hlc": hlc})) == expected


def test_a_register_row_without_fields_needs_no_valid_clock() -> None:
    assert RowState.from_row({"id": "r", "hlc": "anything"}) == RowState({}, {})
