"""store.sync.rejected and store.sync.conflicts are keyset pages, as every other list: a device
the cloud keeps refusing files one rejection per change, and a UI asks for them a page at a
time (sync.rejected / sync.conflicts {limit?, cursor?})."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from daemon.errors import InvalidInput
from daemon.store import Store
from daemon.store.base import Page

from .linking import create_linked
from .test_sync_support import change, clock, merge

Lister = Callable[..., Awaitable[Page]]


async def every_page(lister: Lister, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
    """Each page of the list, following next_cursor until it is null."""
    pages = []
    cursor = None
    while True:
        page = await lister(limit=limit, cursor=cursor, **params)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_rejections_come_a_page_at_a_time_in_the_order_they_were_filed(
    store: Store,
) -> None:
    ws = await create_linked(store, name="w")
    convs = [
        await store.conversations.create(workspace_id=ws["id"], name=f"c{i}") for i in range(5)
    ]
    taken = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert [c.row_id for c in taken] == [ws["id"], *(c["id"] for c in convs)]
    results = [{"id": ws["id"], "status": "applied"}] + [
        {"id": c.row_id, "status": "rejected", "reason": "forbidden"} for c in taken[1:]
    ]
    await store.sync.complete_push(taken, results)

    pages = await every_page(store.sync.rejected, 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [r["row_id"] for p in pages for r in p] == [c["id"] for c in convs]
    whole = (await store.sync.rejected()).items  # the default page holds them all
    assert whole == [r for p in pages for r in p]
    assert (await store.sync.rejected(limit=5)).next_cursor is None  # exactly full: no more
    assert (await store.sync.counts())["rejected"] == 5


async def test_conflicts_come_a_page_at_a_time_open_or_all(store: Store) -> None:
    ws = await create_linked(store, name="w")
    await store.workspaces.update(ws["id"], task_goal="mine")  # pending: each newer one conflicts
    for i in range(3):
        at = clock(60_000 * (i + 1))
        row = {"id": ws["id"], "task_goal": f"theirs {i}", "field_hlc": {"task_goal": at}}
        await store.sync.apply_pull(
            scope="workspace:test", changes=[change("workspaces", {**row, "hlc": at})],
            cursor=f"1:{i + 1}", merge=merge,
        )  # fmt: skip
    pages = await every_page(store.sync.conflicts, 2)
    values = [c["remote_value"] for p in pages for c in p]
    assert [len(p) for p in pages] == [2, 1] and values == ["theirs 0", "theirs 1", "theirs 2"]

    first = pages[0][0]
    await store.sync.resolve_conflict(first["id"], "mine after all")  # settles the field's three
    assert (await store.sync.conflicts()).items == []
    resolved = await every_page(store.sync.conflicts, 2, include_resolved=True)
    assert [c["id"] for p in resolved for c in p] == [c["id"] for p in pages for c in p]
    assert all(c["resolved_at"] is not None for p in resolved for c in p)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": 7}, "cursor"),
    ],
)
async def test_a_bad_page_request_names_its_field(
    store: Store, params: dict[str, Any], field: str
) -> None:
    for lister in (store.sync.rejected, store.sync.conflicts):
        with pytest.raises(InvalidInput) as raised:
            await lister(**params)
        assert raised.value.field == field
