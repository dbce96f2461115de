"""devcloud.rest.headers and devcloud.rest.errors: Prefer/Accept/Range and PostgREST's errors."""

from __future__ import annotations

import pytest

from devcloud.rest.errors import RestError, error_from_sqlstate, http_status_for, jwt_error
from devcloud.rest.headers import (
    Preferences,
    capped_limit,
    check_profile,
    content_range,
    parse_prefer,
    parse_range,
    range_status,
    wants_object,
)


def test_prefer_tokens_across_headers() -> None:
    prefs = parse_prefer(
        ["return=representation,count=exact", "resolution=merge-duplicates, missing=default"]
    )
    assert prefs == Preferences(
        returning="representation",
        count=True,
        resolution="merge",
        missing_default=True,
        applied=(
            "return=representation",
            "count=exact",
            "resolution=merge-duplicates",
            "missing=default",
        ),
    )


def test_prefer_ignores_unknown_and_malformed_tokens() -> None:
    prefs = parse_prefer(["return=everything,count=,tx=rollback,resolution=ignore-duplicates"])
    assert prefs == Preferences(resolution="ignore", applied=("resolution=ignore-duplicates",))
    assert parse_prefer([]) == Preferences()


@pytest.mark.parametrize(
    ("accept", "single"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/vnd.pgrst.object+json", True),
        ("application/vnd.pgrst.object+json;nulls=stripped", True),
        ("text/html, application/json;q=0.9", False),
    ],
)
def test_accept(accept: str | None, single: bool) -> None:
    assert wants_object(accept) is single


def test_unsupported_accept_is_406_pgrst107() -> None:
    with pytest.raises(RestError) as caught:
        wants_object("text/csv")
    assert (caught.value.status, caught.value.code) == (406, "PGRST107")


def test_only_public_profile() -> None:
    check_profile(None)
    check_profile("public")
    with pytest.raises(RestError) as caught:
        check_profile("auth")
    assert (caught.value.status, caught.value.code) == (406, "PGRST106")
    assert caught.value.message == "Invalid schema: auth"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0-9", (0, 10)),
        ("5-", (5, None)),
        ("3-3", (3, 1)),
        ("9-2", None),
        ("x", None),
        (None, None),
    ],
)
def test_range_header(header: str | None, expected: tuple[int, int | None] | None) -> None:
    assert parse_range(header) == expected


@pytest.mark.parametrize(
    ("limit", "max_rows", "capped"),
    [
        (None, None, None),  # no cap (PostgREST's default): what was asked
        (10, None, 10),
        (None, 1000, 1000),  # a read without a limit gets the cap
        (10, 1000, 10),
        (5000, 1000, 1000),  # a larger limit (or Range) is cut to the cap
        (0, 1000, 0),  # limit=0 stays an empty read
    ],
)
def test_max_rows_caps_every_read(
    limit: int | None, max_rows: int | None, capped: int | None
) -> None:
    assert capped_limit(limit, max_rows) == capped


@pytest.mark.parametrize(
    ("lower", "rows", "total", "header", "status"),
    [
        (0, 10, None, "0-9/*", 200),
        (0, 0, None, "*/*", 200),
        (0, 10, 57, "0-9/57", 206),
        (0, 3, 3, "0-2/3", 200),
        (0, 0, 0, "*/0", 200),
        (10, 0, 5, "*/5", 416),
        (5, 0, 5, "*/5", 206),
    ],
)
def test_content_range_and_status(
    lower: int, rows: int, total: int | None, header: str, status: int
) -> None:
    assert content_range(lower, rows, total) == header
    assert range_status(lower, rows, total) == status


@pytest.mark.parametrize(
    ("sqlstate", "message", "anon", "status"),
    [
        ("23505", "duplicate key", False, 409),
        ("23503", "fk", False, 409),
        ("42501", 'new row violates row-level security policy for table "t"', True, 401),
        ("42501", 'new row violates row-level security policy for table "t"', False, 403),
        ("42P01", "relation does not exist", False, 404),
        ("42883", "function does not exist", False, 404),
        ("22P02", "invalid input syntax", False, 400),
        ("23502", "null value", False, 400),
        ("P0001", "raised", False, 400),
        ("P0002", "no data", False, 500),
        ("08006", "connection failure", False, 503),
        ("25006", "read-only transaction", False, 405),
        ("21000", "UPDATE requires a WHERE clause", False, 400),
        ("21000", "more than one row", False, 500),
        ("22023", 'role "x" does not exist', False, 401),
        ("22023", "invalid parameter", False, 400),
        ("PT418", "teapot", False, 418),
        ("53300", "too many connections", False, 503),
        ("40001", "serialization", False, 500),
    ],
)
def test_sqlstate_to_http(sqlstate: str, message: str, anon: bool, status: int) -> None:
    assert http_status_for(sqlstate, message, is_anon=anon) == status


def test_error_body_shape() -> None:
    error = error_from_sqlstate("23505", "dup", "Key (id)=(1) already exists.", "", is_anon=False)
    assert error.body() == {
        "code": "23505",
        "details": "Key (id)=(1) already exists.",
        "hint": None,
        "message": "dup",
    }


def test_jwt_errors() -> None:
    assert jwt_error("token is expired").body() == {
        "code": "PGRST303",
        "details": None,
        "hint": None,
        "message": "JWT expired",
    }
    assert jwt_error("Signature verification failed").code == "PGRST301"
    assert jwt_error("no api key or bearer token").status == 401
