"""daemon/sync/pull_ahead.py: pages fetched in a row ahead of their use, bounded, in order;
a failure reaches the caller for the page that failed; nothing is served past the last page."""

from __future__ import annotations

import asyncio

import pytest

from daemon.sync.pull_ahead import PageFetcher

Page = tuple[str | None, int]  # (the cursor it was asked after, its last row)


class Pages:
    """Pages of 10 rows up to ``rows``; the page after ``fail_after`` fails once."""

    def __init__(self, rows: int, fail_after: str | None = "never") -> None:
        self.rows, self.fail_after = rows, fail_after
        self.asked: list[str | None] = []

    async def fetch(self, cursor: str | None, limit: int) -> Page:
        self.asked.append(cursor)
        if cursor == self.fail_after:
            self.fail_after = "never"
            raise ConnectionError("boom")
        start = 0 if cursor is None else int(cursor)
        return cursor, min(start + limit, self.rows)

    def follow(self, page: Page) -> str | None:
        return str(page[1]) if page[1] < self.rows else None


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_pages_come_in_order_at_most_depth_plus_one_ahead() -> None:
    pages = Pages(rows=100)
    fetcher = PageFetcher(pages.fetch, pages.follow, None, 10, depth=1)
    await settle()
    assert pages.asked == [None, "10"]  # one page waiting, the next one in flight (blocked)
    got = []
    while fetcher.serves(fetcher.cursor, 10):
        got.append(await fetcher.next())
    assert [last for _, last in got] == list(range(10, 101, 10))
    assert pages.asked == [None, *(str(i) for i in range(10, 100, 10))]  # each asked once
    assert fetcher.cursor is None and not fetcher.serves("100", 10)  # nothing past the last
    assert not fetcher.serves(None, 20)


async def test_a_failure_is_raised_for_its_page_and_stops_the_fetcher() -> None:
    pages = Pages(rows=100, fail_after="20")
    fetcher = PageFetcher(pages.fetch, pages.follow, None, 10, depth=1)
    assert await fetcher.next() == (None, 10)
    assert await fetcher.next() == ("10", 20)
    assert fetcher.serves("20", 10)
    with pytest.raises(ConnectionError):
        await fetcher.next()
    assert not fetcher.serves("20", 10)  # the caller asks again itself
    await settle()
    assert pages.asked == [None, "10", "20"]


async def test_close_stops_fetching() -> None:
    pages = Pages(rows=1000)
    fetcher = PageFetcher(pages.fetch, pages.follow, None, 10, depth=1)
    await settle()
    fetcher.close()
    await settle()
    asked = len(pages.asked)
    await settle()
    assert len(pages.asked) == asked <= 2
    assert not fetcher.serves(fetcher.cursor, 10)


async def test_a_page_whose_cursor_cannot_be_read_is_handed_over_and_ends_the_fetch() -> None:
    """A page the fetcher cannot follow (a bad answer) still reaches ``next``, whose caller
    meets the error reading it; nothing is asked after it."""
    pages = Pages(rows=100)

    def follow(page: Page) -> str | None:
        if page[1] == 20:
            raise ValueError("bad head")
        return pages.follow(page)

    fetcher = PageFetcher(pages.fetch, follow, None, 10, depth=1)
    assert await fetcher.next() == (None, 10)
    with pytest.raises(ValueError, match="bad head"):
        await fetcher.next()
    await settle()
    assert pages.asked == [None, "10"]
    # the fetch ended as finished, not failed: no error left for asyncio to log unretrieved
    assert fetcher._task.done() and fetcher._task.exception() is None
