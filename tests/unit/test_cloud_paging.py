"""daemon/sync/cloud/paging.py: reading a whole PostgREST selection by id, page by page."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sync.cloud.paging import PAGE_ROWS, KeysetPage, content_range_total

A = "0194f3a2-7c41-7d2e-9a10-3b5c6d7e8f90"
B = "0194f3a2-7c41-7d2e-9a10-3b5c6d7e8f91"
C = "0194f3a2-7c41-7d2e-9a10-3b5c6d7e8f92"


@pytest.mark.parametrize(
    ("header", "total"),
    [
        ("0-999/5000", 5000),
        ("0-4/12", 12),
        ("*/0", 0),
        (" 10-11/12 ", 12),
        ("0-999/*", None),  # no count asked for, or none given
        ("*/*", None),
        (None, None),
        ("", None),
        ("items 0-4/12", None),
        ("0-4/-1", None),
        ("0-4/twelve", None),
    ],
)
def test_the_total_of_a_content_range(header: str | None, total: int | None) -> None:
    assert content_range_total(header) == total


def test_the_first_page_is_the_lowest_ids_and_the_next_starts_past_the_last() -> None:
    first = KeysetPage()
    assert first.params == {"order": "id.asc", "limit": str(PAGE_ROWS)}
    second = KeysetPage(limit=2).next_page([A, B], total=3)
    assert second == KeysetPage(after=B, limit=2)
    assert second.params == {"order": "id.asc", "limit": "2", "id": f"gt.{B}"}


@pytest.mark.parametrize(
    ("ids", "total", "more"),
    [
        ([A, B], 2, False),  # the count says the page holds them all: one request, not two
        ([A], 1, False),  # fewer than asked for, and that is all
        ([A, B], 12, True),  # a full page of the cloud's cap (2 here) with more behind it
        ([A], 12, True),  # capped below the limit: not the end, however short it looks
        ([], 12, False),  # an empty page always ends the read
        ([], 0, False),
        ([A, B], None, True),  # no count: read on until a page is empty
        ([A], None, True),
        ([], None, False),
    ],
)
def test_the_page_that_holds_every_row_it_selects_is_the_last(
    ids: list[str], total: int | None, more: bool
) -> None:
    following = KeysetPage(limit=3).next_page(ids, total)
    assert (following is not None) is more
    if following is not None:
        assert following.after == ids[-1]


@pytest.mark.parametrize(
    ("page", "ids"),
    [
        (KeysetPage(limit=2), [A, B, C]),  # more rows than asked for
        (KeysetPage(limit=2), [A, "not-a-uuid"]),
        (KeysetPage(limit=2), [A, None]),
        (KeysetPage(after=B, limit=2), [A, B]),  # not past the page before: read for ever
        (KeysetPage(after=B, limit=2), [C, B]),
    ],
)
def test_an_answer_that_is_no_page_of_the_request_is_refused(
    page: KeysetPage, ids: list[Any]
) -> None:
    with pytest.raises(ValueError):
        page.next_page(ids, None)


def test_ids_compare_in_canonical_form() -> None:
    upper = C.upper()
    assert KeysetPage(after=B).next_page([upper], None) == KeysetPage(after=C)
