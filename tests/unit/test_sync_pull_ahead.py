"""daemon/sync/pull_ahead.py: pages fetched in a row ahead of their use, bounded, in order;
a failure reaches the caller for the page that failed; nothing is served past the last page.
Given marks, pages are fetched from them at once (``parallel`` in flight), still handed over
in order, with no gap whatever the rows did meanwhile, and the cursor never moves back."""

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
    # nothing left in flight, so no error left for asyncio to log unretrieved
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "sync-pull-ahead"]
    assert not fetcher.serves(fetcher.cursor, 10)


def at(position: int) -> str:
    return f"5:{position}"


class Feed:
    """Rows at the positions ``5:1`` .. ``5:rows`` (syncd's cursor form); a page of ``limit``
    rows after a cursor is the rows present after it then (``moved``: rows updated after the
    marks were taken, served later). Counts the requests in flight."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.moved: set[int] = set()
        self.asked: list[str | None] = []
        self.flying = self.most_flying = 0
        self.fail_at: str | None = None  # the request from this cursor fails

    async def fetch(self, cursor: str | None, limit: int) -> tuple[str | None, list[int], bool]:
        self.asked.append(cursor)
        self.flying += 1
        self.most_flying = max(self.most_flying, self.flying)
        try:
            for _ in range(3):  # answered a few turns later, as a request is
                await asyncio.sleep(0)
            if cursor is not None and cursor == self.fail_at:
                raise ConnectionError("boom")
            start = 0 if cursor is None else int(cursor.split(":")[1])
            present = [i for i in range(start + 1, self.rows + 1) if i not in self.moved]
            served = present[:limit]
            last = at(served[-1]) if served else cursor
            return last, served, len(present) > limit
        finally:
            self.flying -= 1

    @staticmethod
    def follow(page: tuple[str | None, list[int], bool]) -> str | None:
        return page[0] if page[2] else None


async def drain(fetcher: PageFetcher[tuple[str | None, list[int], bool]]) -> list[int]:
    served: list[int] = []
    while fetcher.serves(fetcher.cursor, fetcher.limit):
        before = fetcher.cursor
        _, rows, _ = await fetcher.next()
        served += rows
        if fetcher.cursor is not None and before is not None:  # the cursor never moves back
            assert position(fetcher.cursor) >= position(before)
    return served


def position(cursor: str) -> int:
    return int(cursor.split(":")[1])


def marks_of(rows: int, step: int) -> list[str]:
    return [at(i) for i in range(step, rows + 1, step)]


async def test_marked_pages_are_fetched_at_once_and_handed_over_in_order() -> None:
    feed = Feed(rows=100)
    fetcher = PageFetcher(feed.fetch, feed.follow, None, 10, depth=1, parallel=2)
    fetcher.add_marks(None, 10, marks_of(99, 10))  # (no page starts at the last row)
    served = await drain(fetcher)
    assert served == list(range(1, 101))  # every row once, in order
    assert feed.asked == [None, *marks_of(90, 10)]  # each page asked once, from its mark
    assert feed.most_flying == 2
    assert fetcher.cursor is None


async def test_marks_for_another_start_or_size_are_ignored() -> None:
    feed = Feed(rows=60)
    fetcher = PageFetcher(feed.fetch, feed.follow, at(10), 10, depth=1, parallel=2)
    fetcher.add_marks(None, 10, marks_of(60, 10))  # counted from another cursor
    fetcher.add_marks(at(10), 20, marks_of(60, 20))  # for pages of another size
    assert await drain(fetcher) == list(range(11, 61))
    assert feed.most_flying == 1  # one page after another


async def test_rows_that_moved_away_make_pages_overlap_never_miss_a_row() -> None:
    """Rows updated after the marks were taken leave their place: a page reaches past its
    mark and the next one serves some rows again; the cursor stays at the furthest end."""
    feed = Feed(rows=100)
    fetcher = PageFetcher(feed.fetch, feed.follow, None, 10, depth=1, parallel=2)
    fetcher.add_marks(None, 10, marks_of(99, 10))
    feed.moved = {3, 4, 5, 55}
    served = await drain(fetcher)
    assert sorted(set(served)) == sorted(set(range(1, 101)) - feed.moved)
    assert len(served) > len(set(served))  # some twice, none missed
    assert fetcher.cursor is None


async def test_a_page_starting_past_the_cursor_is_dropped_and_the_pages_go_one_by_one() -> None:
    """Marks taken while rows 12-14 were not seen (visibility changed since) put the first
    mark at row 23: the page from 10 ends at 20, so the page from 23 would leave a gap. It is
    dropped with every page after it, and the pages go on one after another from 20."""
    feed = Feed(rows=100)
    fetcher = PageFetcher(feed.fetch, feed.follow, at(10), 10, depth=1, parallel=2)
    fetcher.add_marks(at(10), 10, [at(23), at(33), at(43)])
    assert await drain(fetcher) == list(range(11, 101))  # each row once, none missed
    assert feed.asked[:2] == [at(10), at(23)]
    assert feed.asked[feed.asked.index(at(20)) :] == [at(i) for i in range(20, 100, 10)]
    assert fetcher.cursor is None


async def test_a_failed_marked_page_stops_the_pages_in_flight_after_it() -> None:
    """The page from mark 20 fails while the one from mark 30 is in flight: ``next`` raises
    for it, the fetcher serves nothing more and asks for nothing more (the caller goes on
    from its stored cursor)."""
    feed = Feed(rows=100)
    feed.fail_at = at(20)
    fetcher = PageFetcher(feed.fetch, feed.follow, None, 10, depth=1, parallel=2)
    fetcher.add_marks(None, 10, marks_of(99, 10))
    assert (await fetcher.next())[1] == list(range(1, 11))
    assert (await fetcher.next())[1] == list(range(11, 21))
    with pytest.raises(ConnectionError):
        await fetcher.next()
    assert not fetcher.serves(fetcher.cursor, 10)
    asked = list(feed.asked)
    await settle()  # (turns for any request still running: none is)
    assert feed.asked == asked and at(30) in asked
    assert feed.flying == 0
