"""Reading every row a PostgREST selection holds, page by page (pure: no I/O).

PostgREST answers a read with at most ``db-max-rows`` rows whatever its ``limit`` asks
(Supabase projects: 1000), and a capped answer looks like a complete one (``Content-Range:
0-999/*``, status 200). So a read that must see every row pages by key: ``order=id.asc`` with
``limit``, then ``id=gt.<the page's last id>``. The key is the primary key: unique and never
changed, so a row added or removed between two pages neither moves another row out of the
next page nor into it twice (an ``offset`` would skip one row for every row removed before
it). Each page asks for the count of the rows it selects (``Prefer: count=exact``: the total
of its ``Content-Range``): the page that holds all of them is the last, so a selection that
fits in one page takes one request, whatever the cloud's cap. An answer without a count reads
on until a page is empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from daemon.sync.cloud.records import check_uuid

__all__ = ["PAGE_ROWS", "KeysetPage", "content_range_total"]

#: Rows asked for per page: Supabase's default cap, so one request per page where it applies.
PAGE_ROWS: Final = 1000
_TOTAL: Final = re.compile(r"\s*(?:\*|[0-9]+-[0-9]+)/([0-9]{1,18})\s*")


def content_range_total(header: str | None) -> int | None:
    """The total of a PostgREST ``Content-Range`` (``0-9/42``, ``*/0``): the count of the rows
    the request selects; None when it has none (``0-9/*``, no header, another form)."""
    found = _TOTAL.fullmatch(header or "")
    return None if found is None else int(found[1])


@dataclass(frozen=True, slots=True)
class KeysetPage:
    """One page to read: the rows after the id ``after`` (None: from the first), at most
    ``limit`` of them."""

    after: str | None = None
    limit: int = PAGE_ROWS

    @property
    def params(self) -> dict[str, str]:
        """The query parameters that select this page (added to the read's own filters)."""
        params = {"order": "id.asc", "limit": str(self.limit)}
        if self.after is not None:
            params["id"] = f"gt.{self.after}"
        return params

    def next_page(self, ids: Sequence[Any], total: int | None) -> KeysetPage | None:
        """The page after this one, from the ids this one answered (in order) and the count
        of the rows it selected (``content_range_total``); None when it was the last.
        ValueError for an answer that is not a page of it: more rows than asked for, or a
        last id that is not a UUID or not past ``after`` (a cloud that ignored the filter
        would otherwise be read for ever)."""
        if len(ids) > self.limit:
            raise ValueError("more rows than the page asked for")
        if not ids or (total is not None and len(ids) >= total):
            return None
        last = check_uuid(ids[-1])
        if self.after is not None and last <= self.after:  # canonical text: PostgreSQL's order
            raise ValueError("a page that does not move past the one before")
        return replace(self, after=last)
