"""Fetching the pages of a catch-up pull ahead of their apply.

``sync_pull`` pages chain: the request for a page needs the cursor the page before it
answered, so the network side is a strict sequence. ``PageFetcher`` runs that sequence on its
own, sending each request as soon as the page before it arrived (not when that page has been
applied), while the caller applies pages in the writer thread: the fetch chain and the apply
chain overlap instead of taking turns. At most ``depth`` fetched pages wait to be taken, plus
the one request in flight, so memory stays flat whatever the workspace's size.

The fetcher stops after the last page (``follow`` says there is none after it) or the first
failure, which the caller gets from ``next`` for the page that failed; ``close`` cancels it
(a failure nobody will take is consumed: ``daemon.aio.discard``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from daemon.aio import discard

__all__ = ["PageFetcher"]

P = TypeVar("P")


class PageFetcher(Generic[P]):
    """Pages from ``cursor`` on, fetched one after another ahead of ``next``."""

    def __init__(
        self,
        fetch: Callable[[str | None, int], Awaitable[P]],
        follow: Callable[[P], str | None],
        cursor: str | None,
        limit: int,
        *,
        depth: int = 1,
        name: str = "sync-pull-ahead",
    ) -> None:
        self._fetch = fetch
        self._follow = follow  # a page's next cursor, or None when it is the last
        self.limit = limit
        #: The cursor of the page ``next`` returns (None once the last page was taken).
        self.cursor: str | None = cursor
        self._open = True
        self._pages: asyncio.Queue[P | BaseException] = asyncio.Queue(depth)
        self._task = asyncio.create_task(self._run(cursor), name=name)

    def serves(self, cursor: str | None, limit: int) -> bool:
        """True if ``next`` will return the page after ``cursor`` of ``limit`` rows."""
        if not self._open or (self.cursor, self.limit) != (cursor, limit):
            return False
        return not (self._task.done() and self._pages.empty())

    async def next(self) -> P:
        """The next page, waiting for it if needed; a failed fetch raises here."""
        item = await self._pages.get()
        if isinstance(item, BaseException):
            self._open = False
            raise item
        after = self._follow(item)
        self._open = after is not None
        self.cursor = after
        return item

    def close(self) -> None:
        self._open = False
        discard(self._task)

    async def _run(self, cursor: str | None) -> None:
        while True:
            try:
                page = await self._fetch(cursor, self.limit)
            except Exception as exc:
                await self._pages.put(exc)
                return
            await self._pages.put(page)
            try:
                after = self._follow(page)
            except Exception:  # a bad answer: ``next`` meets the same error for this page
                return
            if after is None:
                return
            cursor = after
