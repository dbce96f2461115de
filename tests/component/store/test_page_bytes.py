"""A list page ends early once its rows hold PAGE_BYTES of text; the cursor goes on from there,
so a page of large rows stays one reasonable reply and nothing is skipped or repeated."""

from __future__ import annotations

import pytest

from daemon.store import Store
from daemon.store import base as base_module
from ui_bridge.client import MAX_FRAME
from ui_bridge.methods.data import MAX_CONTENT


@pytest.fixture
async def conv_id(store: Store) -> str:
    ws = await store.workspaces.create(name="w")
    return str((await store.conversations.create(workspace_id=ws["id"], name="c"))["id"])


async def test_a_page_of_large_rows_ends_early_and_the_cursor_goes_on(
    store: Store, conv_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base_module, "PAGE_BYTES", 3_000)
    sent: list[str] = []
    for c in "abcdefghij":
        message = await store.messages.create(conversation_id=conv_id, role="user", content=c * 999)
        sent.append(message["id"])
    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    while True:
        page = await store.messages.list(conversation_id=conv_id, after=cursor, limit=1000)
        seen += [m["id"] for m in page.items]
        sizes.append(len(page.items))
        if (cursor := page.next_cursor) is None:
            break
    assert seen == sent
    assert sizes == [3, 3, 3, 1]  # each page stops once it holds 3,000 characters or more


async def test_one_huge_row_still_makes_a_page(
    store: Store, conv_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base_module, "PAGE_BYTES", 10)
    one = await store.messages.create(conversation_id=conv_id, role="user", content="x" * 99)
    page = await store.messages.list(conversation_id=conv_id, limit=5)
    assert [m["id"] for m in page.items] == [one["id"]] and page.next_cursor is None


def test_a_full_page_fits_in_one_frame_of_the_client() -> None:
    # at most PAGE_BYTES characters of text, then one more row (a message's content at most),
    # each character at worst 6 bytes in the reply (a JSON escape such as \u0001)
    assert 6 * (base_module.PAGE_BYTES + MAX_CONTENT) < MAX_FRAME
