"""Fetching the pages of a catch-up pull ahead of their apply, several at once when marked.

``sync_pull`` pages chain: the request for a page needs the cursor the page before it
answered, so on its own the network side is a strict sequence. ``PageFetcher`` runs that
sequence on its own, sending each request as soon as the page before it arrived (not when that
page has been applied), while the caller applies pages in the writer thread: the fetch chain
and the apply chain overlap instead of taking turns.

Measured on bench/sync.py's first sync, the chain was still the slower of the two: a 4000-row
page took ~65-100 ms from request to answer (PostgreSQL building it, devcloud, the transfer)
and ~45-60 ms to decode and apply, so the daemon waited for every page. ``add_marks`` breaks
the chain: given where the pages after the fetcher's first cursor end (``sync_pull_marks``:
the position of every ``limit``-th row), it asks for a page from each mark, ``parallel`` at a
time. The cloud's argument that such pages overlap but never leave a gap is in
migrations/cloud/0006_sync_pull.sql; the fetcher does not rely on it: a page is handed over
only if it starts at or before the cursor the caller goes on from (the end of the page before
it), else it and every page after it are dropped and the pages are fetched one after another
from that cursor. A page that overlaps the one before it serves some rows twice (applying a
row again changes nothing); the cursor never moves back (``later_cursor``).

A request is sent only while at most ``depth`` fetched pages wait to be taken and fewer than
``parallel`` are in flight: at most ``depth + parallel`` pages are held (one after another:
``depth + 1``), so memory stays flat whatever the workspace's size. The fetcher stops after
the last page (``follow`` says there is none after it) or the first failure, which the caller
gets from ``next`` for the page that failed; ``close`` cancels the requests (a failure nobody
will take is consumed: ``daemon.aio.discard``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from daemon.aio import discard
from daemon.sync.cloud.records import cursor_position, later_cursor

__all__ = ["PageFetcher"]

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class _Slot(Generic[P]):
    """A page asked for after ``start``."""

    start: str | None
    task: asyncio.Task[P]


class PageFetcher(Generic[P]):
    """Pages from ``cursor`` on, fetched ahead of ``next``, in order."""

    def __init__(
        self,
        fetch: Callable[[str | None, int], Awaitable[P]],
        follow: Callable[[P], str | None],
        cursor: str | None,
        limit: int,
        *,
        depth: int = 1,
        parallel: int = 1,
        name: str = "sync-pull-ahead",
    ) -> None:
        self._fetch = fetch
        self._follow = follow  # a page's next cursor, or None when it is the last
        self.limit = limit
        #: The cursor of the page ``next`` returns (None once the last page was taken): the
        #: caller's, which never moves back.
        self.cursor: str | None = cursor
        self._origin = cursor
        self._depth = depth
        self._parallel = parallel
        self._name = name
        self._open = True
        #: the pages asked for, in the order of their starts (done ones wait to be taken)
        self._slots: deque[_Slot[P]] = deque()
        #: marks not yet asked from (ascending, after the last slot's start)
        self._marks: deque[str] = deque()
        #: no page follows the last slot (it was the last, or its cursor cannot be read)
        self._ended = False
        self._launch(cursor)

    def serves(self, cursor: str | None, limit: int) -> bool:
        """True if ``next`` will return the page after ``cursor`` of ``limit`` rows."""
        if not self._open or (self.cursor, self.limit) != (cursor, limit):
            return False
        return bool(self._slots)

    def add_marks(self, origin: str | None, step: int, marks: Iterable[str]) -> None:
        """Also ask for the pages from ``marks``, the positions of every ``step``-th row after
        ``origin`` (``sync_pull_marks``); ignored unless ``origin`` is the cursor this fetcher
        started from and ``step`` its page size, or where positions cannot be compared."""
        if not self._open or origin != self._origin or step != self.limit:
            return
        last = self._slots[-1].start if self._slots else self.cursor
        after = cursor_position(last)
        if after is None:
            return
        self._marks.clear()
        for mark in marks:
            position = cursor_position(mark)
            if position is not None and position > after:
                self._marks.append(mark)
                after = position
        self._refill()

    async def next(self) -> P:
        """The next page, waiting for it if needed; a failed fetch raises here."""
        while True:
            slot = self._slots[0]
            await asyncio.wait({slot.task})
            self._slots.popleft()
            try:
                page = slot.task.result()
                if not _at_or_before(slot.start, self.cursor):
                    # starts past the caller's cursor (rows came to be seen between): no gap,
                    # the pages are fetched one after another from the cursor
                    self._restart()
                    continue
                after = self._follow(page)
            except BaseException:
                self.close()  # a failed request or a bad answer: nothing is asked after it
                raise
            if after is None:
                self.cursor = None
                self.close()
            else:
                self.cursor = later_cursor(self.cursor, after)
                self._refill()
            return page

    def close(self) -> None:
        self._open = False
        self._drop()

    def _restart(self) -> None:
        self._drop()
        self._launch(self.cursor)

    def _drop(self) -> None:
        """Cancel every request, forget every mark."""
        for slot in self._slots:
            discard(slot.task)
        self._slots.clear()
        self._marks.clear()
        self._ended = False

    def _launch(self, start: str | None) -> None:
        task = asyncio.create_task(self._get(start), name=self._name)
        task.add_done_callback(self._arrived)
        self._slots.append(_Slot(start, task))

    async def _get(self, start: str | None) -> P:
        return await self._fetch(start, self.limit)

    def _arrived(self, task: asyncio.Task[P]) -> None:
        if self._open and any(slot.task is task for slot in self._slots):
            self._refill()

    def _refill(self) -> None:
        """Ask for the next pages while at most ``depth`` wait and fewer than ``parallel`` are
        in flight: from the next mark, else from the cursor the last page answered."""
        while self._open:
            flying = sum(not slot.task.done() for slot in self._slots)
            if flying >= self._parallel or len(self._slots) - flying > self._depth:
                return
            if self._marks:
                self._launch(self._marks.popleft())
                continue
            if self._ended or not self._slots:
                return
            last = self._slots[-1].task
            if not last.done() or last.cancelled() or last.exception() is not None:
                return
            try:
                after = self._follow(last.result())
            except Exception:  # a bad answer: ``next`` meets the same error for this page
                after = None
            if after is None:
                self._ended = True
                return
            self._launch(after)


def _at_or_before(start: str | None, cursor: str | None) -> bool:
    """``start`` is ``cursor`` or points before it (False when they differ and either cannot
    be compared)."""
    if start == cursor:
        return True
    a, b = cursor_position(start), cursor_position(cursor)
    return a is not None and b is not None and a <= b
