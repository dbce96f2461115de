"""postgres_changes filters: parsing and typed comparison."""

from __future__ import annotations

import pytest

from devcloud.realtime.filters import Filter, FilterError, matches, parse_filter

TYPES = {
    "id": "int8",
    "price": "numeric",
    "name": "text",
    "done": "bool",
    "at": "timestamptz",
    "owner": "uuid",
    "day": "date",
}


def test_parse_simple_and_blank() -> None:
    assert parse_filter(None) is None
    assert parse_filter("   ") is None
    assert parse_filter(" user_id=eq.abc ") == Filter("user_id", "eq", ("abc",))
    assert parse_filter("name=eq.a.b") == Filter("name", "eq", ("a.b",))
    assert parse_filter('name=eq."a,b"') == Filter("name", "eq", ("a,b",))


def test_parse_in_list_with_quotes() -> None:
    flt = parse_filter('status=in.(open, pending,"a,b")')
    assert flt == Filter("status", "in", ("open", "pending", "a,b"))


@pytest.mark.parametrize(
    "text",
    ["foo", "=eq.1", "id=like.x", "id=eq", "id=in.1,2", 'id=in.("a)', "id=not.eq.1"],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(FilterError, match="Error parsing `filter` params"):
        parse_filter(text)


@pytest.mark.parametrize(
    ("text", "row", "expected"),
    [
        ("id=eq.5", {"id": 5}, True),
        ("id=eq.5", {"id": 6}, False),
        ("id=neq.5", {"id": 6}, True),
        ("id=lt.10", {"id": 9}, True),
        ("id=lt.10", {"id": 10}, False),
        ("id=lte.10", {"id": 10}, True),
        ("id=gt.10", {"id": 9}, False),  # numeric, not text: "9" > "10" as text
        ("id=gte.10", {"id": 100}, True),
        ("price=eq.1.50", {"price": 1.5}, True),
        ("id=in.(1,2,3)", {"id": 2}, True),
        ("id=in.(1,2,3)", {"id": 4}, False),
        ("name=eq.abc", {"name": "abc"}, True),
        ("name=lt.b", {"name": "a"}, True),
        ("name=in.(x,abc)", {"name": "abc"}, True),
        ("done=eq.true", {"done": True}, True),
        ("done=eq.f", {"done": False}, True),
        ("done=eq.true", {"done": False}, False),
        ("at=gt.2026-08-21T00:00:00Z", {"at": "2026-08-21T12:00:00.12345+00:00"}, True),
        ("at=lt.2026-08-21 13:00:00+01", {"at": "2026-08-21T12:00:00+00:00"}, False),
        ("day=eq.2026-08-21", {"day": "2026-08-21"}, True),
        (
            "owner=eq.8D0F0000-0000-0000-0000-000000000001",
            {"owner": "8d0f0000-0000-0000-0000-000000000001"},
            True,
        ),
    ],
)
def test_matches_typed(text: str, row: dict[str, object], expected: bool) -> None:
    assert matches(parse_filter(text), row, TYPES) is expected


def test_null_missing_and_uncastable_never_match() -> None:
    assert matches(parse_filter("id=eq.1"), {"id": None}, TYPES) is False
    assert matches(parse_filter("id=neq.1"), {"id": None}, TYPES) is False
    assert matches(parse_filter("id=eq.1"), {}, TYPES) is False
    assert matches(parse_filter("id=eq.abc"), {"id": 1}, TYPES) is False
    assert matches(parse_filter("done=eq.maybe"), {"done": True}, TYPES) is False


def test_no_filter_matches_everything() -> None:
    assert matches(None, {}, TYPES) is True


def test_unknown_column_type_compares_as_text() -> None:
    assert matches(parse_filter("tags=eq.{a,b}"), {"tags": "{a,b}"}, {}) is True
    assert matches(parse_filter("n=eq.1"), {"n": 1}, {}) is True
