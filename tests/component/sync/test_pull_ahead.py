"""A multi-page pull fetches the next pages while the current one is applied (each request
sent as soon as the page before it arrived), two pages ahead at most, with the catch-up page
size after a run's small first page; once the cloud marked where the pages end
(``sync_pull_marks``), two are asked for at once; a failed page is fetched again from the
stored cursor and nothing is lost or applied twice. An httpx mock transport stands in for the
cloud (mock_cloud.py: to fail one page on cue and to see when each request arrives); the store
is a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from daemon.config import StoreSettings
from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.store.sync import pull_scope
from daemon.sync.driver import SyncDriver
from daemon.sync.workspace import AHEAD_PAGES, PULL_IN_FLIGHT
from tests.component.sync.mock_cloud import ORG, grant, mocked_driver
from tests.helpers import MS, wait_for

CLOCK = "1790000000000-000000-cloud"
STAMP = "2026-11-21T07:09:32.123+00:00"


def at(position: int) -> str:
    """The cursor of the row at ``position`` (syncd's cloud's form, "<txid>:<seq>")."""
    return f"4:{position}"


#: ``PagedCloud(hold=START)`` holds the request from None.
START = "start"


def position(cursor: str | None) -> int:
    return 0 if cursor is None else int(cursor.split(":")[1])


class PagedCloud:
    """Serves a workspace, a conversation and ``rows - 1`` messages in it (positions 1, 2,
    3..rows + 1) through ``sync_pull`` pages of ``limit`` rows (cursor = the last row served,
    written first as syncd's cloud does); the ``fail_at``-th pull request fails (503), the
    answer to the ``cut_at``-th is cut short after its head; the request from cursor ``hold``
    (``START``: the first, from None) waits for ``release`` (``asked_while_held``: the pull
    requests that came meanwhile). ``sync_pull_marks`` answers as ``counts`` says: "rows" the
    rows left after a cursor and the end of every ``step`` of them, "shifted" the same with
    every mark 3 rows further (as if rows had come between it and the pages), "nonsense" a
    JSON text, "missing" 404 as a cloud schema without that function does (``count_asked``
    holds the cursors). ``shown``: the cloud serves the rows up to that position only (until
    the test raises it), as if the others were not yet written."""

    def __init__(
        self,
        ws_id: str,
        conv_id: str,
        rows: int,
        *,
        fail_at: int = 0,
        cut_at: int = 0,
        hold: str | None = None,
        counts: str = "missing",
        shown: int | None = None,
    ) -> None:
        self.ws_id, self.conv_id = ws_id, conv_id
        self.rows = [str(uuid.uuid4()) for _ in range(rows)]
        self.fail_at = fail_at
        self.cut_at = cut_at  # this request's answer is cut short after its head
        self.failed: str | None = None  # the cursor of the failed request
        self.requests: list[tuple[str | None, int, int]] = []  # (cursor, limit, messages seen)
        self.messages = 0
        self.hold = hold
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.asked_while_held: list[str | None] = []
        self.counts = counts
        self.count_asked: list[str | None] = []
        #: the last row's position the cloud serves now
        self.end = rows + 1 if shown is None else shown

    def committed(self, events: list[ChangeEvent]) -> None:
        self.messages += sum(e.topic == "message.created" for e in events)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            return httpx.Response(200, json=grant())
        if path == "/rest/v1/rpc/sync_push":
            changes = orjson.loads(request.content)["changes"]
            return httpx.Response(200, json=[_applied(c) for c in changes])
        if path == "/rest/v1/rpc/sync_pull_marks" and self.counts != "missing":
            body = orjson.loads(request.content)
            self.count_asked.append(body["cursor"])
            if self.counts == "nonsense":
                return httpx.Response(200, json="many")
            start, step = position(body["cursor"]), body["step"]
            shift = 3 if self.counts == "shifted" else 0
            marks = [at(p + shift) for p in range(start + step, self.end + 1, step)]
            return httpx.Response(200, json={"count": self.end - start, "marks": marks})
        if path != "/rest/v1/rpc/sync_pull":
            return httpx.Response(404, json={"code": "PGRST202"})
        body = orjson.loads(request.content)
        cursor, limit = body["cursor"], body["limit"]
        self.requests.append((cursor, limit, self.messages))
        if self.held.is_set() and not self.release.is_set():
            self.asked_while_held.append(cursor)
        if self.hold is not None and (cursor or START) == self.hold:
            self.held.set()
            await self.release.wait()
        if len(self.requests) == self.fail_at:
            self.failed = cursor
            return httpx.Response(503, json={"code": "unavailable", "message": "try later"})
        answer = orjson.dumps(self._page(cursor, limit))
        if len(self.requests) == self.cut_at:
            self.failed = cursor
            answer = answer[: len(answer) // 2]  # a proxy's cut: the head is whole
        return httpx.Response(200, content=answer)

    def _page(self, cursor: str | None, limit: int) -> dict[str, Any]:
        start = position(cursor)
        end = min(start + limit, self.end)
        changes = [self._change(p - 2) for p in range(start + 1, end + 1)]
        # in the order syncd's sync_pull writes them (the head first)
        return {"cursor": at(end), "has_more": end < self.end, "changes": changes}

    def _change(self, i: int) -> dict[str, Any]:
        common = {"created_at": STAMP, "updated_at": STAMP, "deleted_at": None, "hlc": CLOCK}
        if i == -1:
            row = {"id": self.ws_id, "name": "w", **common}
            return {"table": "workspaces", "id": self.ws_id, "workspace_id": self.ws_id, "row": row}
        if i == 0:
            row = {"id": self.conv_id, "workspace_id": self.ws_id, "name": "c", **common}
            return {"table": "conversations", "id": self.conv_id, "row": row}
        row = {
            "id": self.rows[i],
            "workspace_id": self.ws_id,
            "conversation_id": self.conv_id,
            "role": "user",
            "content": f"m{i}",
            "field_hlc": {},
            **common,
        }
        return {"table": "messages", "id": row["id"], "row": row}


def _applied(change: dict[str, Any]) -> dict[str, Any]:
    return {"id": change["id"], "table": change["table"], "status": "applied"}


@contextlib.asynccontextmanager
async def syncing(
    tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[Store, SyncDriver, PagedCloud]]:
    """A link to a cloud workspace of 400 messages (a run's first page of 10, then pages of 40),
    its sync started (``options``: PagedCloud's)."""
    store = await Store.open(tmp_path / "syncd.db", StoreSettings())
    ws = await store.workspaces.create(name="w")  # the local side of the link
    cloud = PagedCloud(ws["id"], str(uuid.uuid4()), rows=400, **options)
    store.add_commit_listener(cloud.committed)
    try:
        async with mocked_driver(
            store, tmp_path, cloud.handle, pull_limit=10, bulk_pull_limit=40
        ) as driver:
            link = await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
            driver.open()
            await driver.add(link)
            await driver.activate()
            yield store, driver, cloud
    finally:
        await store.close()


async def caught_up(tmp_path: Path, **options: Any) -> PagedCloud:
    """``syncing`` until the cursor is the last row; checks that every row was applied
    exactly once. With ``hold=START`` the first page is held until two more pages were asked
    for meanwhile (``asked_while_held``)."""
    async with syncing(tmp_path, **options) as (store, _, cloud):
        if cloud.hold == START:
            await asyncio.wait_for(cloud.held.wait(), timeout=5)
            await wait_for(lambda: len(cloud.asked_while_held) == 2)
            cloud.release.set()
        scope = pull_scope(cloud.ws_id)
        await wait_for(lambda: cloud.messages >= 399, timeout=10_000 * MS)
        await wait_for(lambda: store.sync.cursor(scope), timeout=5_000 * MS)
        assert await store.sync.cursor(scope) == at(cloud.end)
        page = await store.messages.list(conversation_id=cloud.conv_id, limit=1000)
        assert sorted(m["id"] for m in page.items) == sorted(cloud.rows[1:])
        assert cloud.messages == 399  # each row applied once, the failed page's too
    return cloud


async def test_pages_are_fetched_ahead_and_a_failed_page_is_fetched_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="daemon.sync.cloud.rest")
    cloud = await caught_up(tmp_path, fail_at=4)
    # Every page answered is logged once, whichever way it was decoded (the 503 is not).
    done = [r for r in caplog.records if r.getMessage().startswith("rest.pull.complete ")]
    assert len(done) == len(cloud.requests) - 1
    # The failed page was asked again from the same cursor, and nothing else was asked twice.
    cursors = [c for c, _, _ in cloud.requests]
    assert cloud.failed is not None and cursors.count(cloud.failed) == 2
    assert len(cursors) == len(set(cursors)) + 1
    # A run's first page has the small size (the first sync's, and the retry's from the
    # failed cursor); every page after it, fetched ahead, the bulk size.
    retry = len(cursors) - 1 - cursors[::-1].index(cloud.failed)
    limits = [limit for _, limit, _ in cloud.requests]
    assert [i for i, limit in enumerate(limits) if limit == 10] == [0, retry]
    assert all(limit == 40 for i, limit in enumerate(limits) if i not in (0, retry))
    # Fetched ahead: pages were asked for before the page before them was applied (its rows
    # not yet committed), but never more than two pages ahead (one page waiting for its
    # apply, one in flight: flat memory).
    # (the messages before position p: p - 2)
    later = [(position(c) - 2, seen) for c, _, seen in cloud.requests if c not in (None, at(10))]
    assert any(seen < cursor for cursor, seen in later)
    assert all(seen >= cursor - 2 * 40 for cursor, seen in later)


async def test_the_next_page_is_asked_for_from_the_head_of_an_answer_not_yet_decoded(
    tmp_path: Path,
) -> None:
    """The cloud puts cursor and has_more first: the fetcher asks for the next page from those
    first bytes, before the answer is decoded. An answer cut short after its head is found bad
    when it is decoded for its apply: the pull fails there, the page is asked for again from
    the stored cursor (the request already sent past it is dropped) and nothing is lost or
    applied twice."""
    cloud = await caught_up(tmp_path, cut_at=4)
    cursors = [c for c, _, _ in cloud.requests]
    cut = cloud.failed
    assert cut is not None and cursors.count(cut) == 2
    # The page after the cut one was asked for from the cut answer's head (its cursor is the
    # cut page's last row), right after it and before its rows were applied: nothing but the
    # head could have told that cursor.
    after_cut = cloud._page(cut, 40)["cursor"]
    assert cursors[cursors.index(cut) + 1] == after_cut
    assert cloud.requests[cursors.index(cut) + 1][2] <= position(cut) - 2


@pytest.mark.parametrize(
    ("hold", "runs"),
    [
        # asked during the catch-up, while its third page is in flight: answered by it
        (at(50), 1),
        # asked while the catch-up's last page is in flight (asked for before the call):
        # one more run, whose page holds every row committed before the call
        (at(370), 2),
    ],
)
async def test_a_pull_asked_for_during_a_catch_up_is_answered_by_its_last_page_if_asked_later(
    tmp_path: Path, hold: str, runs: int
) -> None:
    """``sync.pull`` answers once a page answered has_more=false that was asked for after the
    call (sync_pull's horizon is then past every row committed before it): a catch-up under
    way serves it if its last page is asked for later, with no run after it."""
    async with syncing(tmp_path, hold=hold) as (store, driver, cloud):
        await asyncio.wait_for(cloud.held.wait(), timeout=5)
        asked = asyncio.create_task(driver.sync_now("pull"))
        # released once the call has begun (callbacks run in the order they were queued)
        asyncio.get_running_loop().call_soon(cloud.release.set)
        result = await asyncio.wait_for(asked, timeout=10)
        assert result["error"] is None
        assert await store.sync.cursor(pull_scope(cloud.ws_id)) == at(cloud.end)
        assert cloud.messages == 399
        # The catch-up's pages, from None to 370 (the last one, which answered 401), then,
        # only when the call came after 370 was asked for, one run from 401.
        cursors = [c for c, _, _ in cloud.requests]
        assert cursors[0] is None and cursors[-runs] == at(370)
        assert cursors.count(at(401)) == runs - 1
        assert len(cursors) == len(set(cursors))


@pytest.mark.parametrize(
    ("counts", "total", "failure"),
    [("rows", 401, None), ("missing", None, "PGRST202"), ("nonsense", None, "unexpected_shape")],
)
async def test_a_long_pull_shows_its_progress_and_fetches_its_marked_pages_at_once(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    counts: str,
    total: int | None,
    failure: str | None,
) -> None:
    """A first sync asks ``sync_pull_marks`` once, from the start, beside its first page; that
    page (it has more) starts its progress, whose ``total`` is the count, shown while the pages
    go on, and the pages after it are asked for two at a time, each from its mark: while one
    is held, the one after it is asked for too. A cloud without the function (404), or one
    answering nonsense, gives a progress without total (the failure logged with its reason)
    and the same pull, one page after another."""
    caplog.set_level(logging.DEBUG, logger="daemon.sync.workspace")
    async with syncing(tmp_path, hold=at(90), counts=counts) as (store, driver, cloud):
        sync = driver.syncs[cloud.ws_id]
        await asyncio.wait_for(cloud.held.wait(), timeout=5)
        # held: the pages from None, 10 and 50 come in (10, 40 and 40 rows), not the next
        await wait_for(lambda: (sync.status.progress or {}).get("rows", 0) == 10 + 40 + 40)

        def marks_failed() -> list[str]:
            return [r.getMessage() for r in caplog.records if "sync.marks_failed" in r.msg]

        def asked() -> list[str | None]:
            return [c for c, _, _ in cloud.requests]

        if total is not None:
            await wait_for(lambda: (sync.status.progress or {}).get("total") is not None)
            # marked: the pages after the held one are asked for from their marks
            await wait_for(lambda: at(170) in asked())
        else:
            await wait_for(lambda: marks_failed() != [])
            assert marks_failed() == [f"sync.marks_failed ws={cloud.ws_id} reason={failure}"]
        progress = sync.status.progress
        assert progress is not None and (progress["rows"], progress["pages"]) == (90, 3)
        assert progress["total"] == total  # 401: the 2 parents and 399 messages
        # asked once, from the start (not at all of a 404: no handler asked)
        assert cloud.count_asked == ([] if counts == "missing" else [None])
        assert asked()[:4] == [None, at(10), at(50), at(90)]
        cloud.release.set()
        await wait_for(lambda: cloud.messages >= 399, timeout=10_000 * MS)
        await wait_for(lambda: sync.status.progress is None)
        assert await store.sync.cursor(pull_scope(cloud.ws_id)) == at(cloud.end)
        assert len(cloud.count_asked) == (0 if counts == "missing" else 1)
        # While the page from 90 was held: with marks, as many pages after it as may be held
        # (three: the held one, one answered and one in flight, or both answered), none more
        # until a page was taken; without marks, none (nothing past its end can be known).
        assert cloud.asked_while_held == ([at(130), at(170)] if total is not None else [])
        # each page asked once (from its mark or from the page before's end: the same)
        assert sorted(asked(), key=position) == [None, *(at(p) for p in range(10, 371, 40))]
        assert cloud.messages == 399


async def test_a_first_sync_asks_for_the_pages_after_its_first_page_before_that_page_arrived(
    tmp_path: Path,
) -> None:
    """The marks asked beside a first sync's first page (every 10th row: the first page's size)
    are read from where that page will end (row 10): the pages from there and from the mark
    of row 50 (40 rows each) are asked for first, while the first page is still held (then at
    most one more: three pages held); every row is then applied once."""
    cloud = await caught_up(tmp_path, hold=START, counts="rows")
    # every request that came while the first page was held
    assert cloud.asked_while_held[:2] == [at(10), at(50)]
    assert len(cloud.asked_while_held) <= AHEAD_PAGES + PULL_IN_FLIGHT
    assert cloud.count_asked == [None]
    cursors = [c for c, _, _ in cloud.requests]
    assert sorted(cursors, key=position) == [None, *(at(p) for p in range(10, 371, 40))]


async def test_a_first_page_that_ends_off_the_marks_goes_on_one_page_after_another(
    tmp_path: Path,
) -> None:
    """Marks 3 rows off where the pages end (rows came between the answers): the pages asked
    from them are dropped once the first page ends elsewhere, and the pull goes on from where
    it did end, one page after another (the marks are not asked again): no row is missed or
    applied twice."""
    cloud = await caught_up(tmp_path, hold=START, counts="shifted")
    assert cloud.asked_while_held[:2] == [at(13), at(53)]  # read from row 13, not 10
    assert cloud.count_asked == [None]
    cursors = [c for c, _, _ in cloud.requests]
    assert cursors[cursors.index(at(10)) :] == [at(p) for p in range(10, 371, 40)]


async def test_a_later_run_asks_its_marks_from_its_first_pages_end(tmp_path: Path) -> None:
    """A run from a stored cursor asks ``sync_pull_marks`` only once its first page says it
    has more (a periodic pull of nothing new asks nothing more), from that page's end: its
    progress total is that page's rows plus the count. So too after a first sync of one page
    (its marks, asked beside it, are done with)."""
    async with syncing(tmp_path, counts="rows", shown=8) as (store, driver, cloud):
        scope = pull_scope(cloud.ws_id)
        await wait_for(lambda: store.sync.cursor(scope))
        assert await store.sync.cursor(scope) == at(8)
        await driver.sync_now("pull")  # nothing new: one page, no marks
        assert cloud.count_asked == [None]
        cloud.end = len(cloud.rows) + 1
        cloud.hold = at(58)  # the page after the run's first one (10 rows, to 18)
        sync = driver.syncs[cloud.ws_id]
        asked = asyncio.create_task(driver.sync_now("pull"))
        await asyncio.wait_for(cloud.held.wait(), timeout=5)
        await wait_for(lambda: (sync.status.progress or {}).get("total") is not None)
        progress = sync.status.progress
        assert progress is not None
        assert progress["total"] == 10 + (401 - 18)  # the first page's rows and those after it
        assert cloud.count_asked == [None, at(18)]
        cloud.release.set()
        result = await asyncio.wait_for(asked, timeout=10)
        assert result["error"] is None
        assert await store.sync.cursor(scope) == at(cloud.end)
        assert cloud.count_asked == [None, at(18)]
        assert cloud.messages == 399
