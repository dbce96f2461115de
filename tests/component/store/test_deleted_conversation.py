"""A deleted conversation hides its messages without writing or removing them: an undelete (a
newer write of ``deleted_at = null``, sync-design.md) shows them again, as does a workspace's."""

from __future__ import annotations

import sqlite3
from typing import Any

from daemon.store import Store

from .conftest import rows
from .test_sync_support import (
    change,
    clock,
    iso,
    merge,
    remote_conversation,
    remote_message,
    remote_workspace,
)


async def apply(store: Store, *changes: dict[str, Any], cursor: str) -> None:
    """Apply a pulled page as the sync driver does."""
    await store.sync.apply_pull(
        scope="workspace:test", changes=list(changes), cursor=cursor, merge=merge
    )


async def listed(store: Store, conv_id: str) -> list[str]:
    return [m["id"] for m in (await store.messages.list(conversation_id=conv_id)).items]


async def test_a_tombstone_hides_the_messages_and_an_undelete_shows_them_again(
    store: Store, raw: sqlite3.Connection
) -> None:
    c = clock()
    ws = remote_workspace(c)
    conv = remote_conversation(c, ws["id"])
    other = remote_conversation(c, ws["id"])
    sent = [remote_message(c, ws["id"], conv["id"], content=f"m{i}") for i in range(3)]
    kept = remote_message(c, ws["id"], other["id"])
    await apply(
        store,
        change("workspaces", ws),
        change("conversations", conv),
        change("conversations", other),
        *(change("messages", m) for m in (*sent, kept)),
        cursor="1:1",
    )
    ids = [m["id"] for m in sent]
    assert await listed(store, conv["id"]) == ids
    stored = rows(raw, "SELECT id, content FROM messages ORDER BY id")

    # (table, deleted or undeleted, whether conv's and other's messages are listed after it)
    steps = [
        ("conversations", True, False, True),
        ("conversations", False, True, True),
        ("workspaces", True, False, False),
        ("workspaces", False, True, True),
    ]
    for n, (table, deleted, conv_shown, other_shown) in enumerate(steps, start=2):
        later = clock(1_000 * n)
        deleted_at = iso(later) if deleted else None
        if table == "conversations":
            row = remote_conversation(later, ws["id"], id=conv["id"], deleted_at=deleted_at)
        else:
            row = remote_workspace(later, id=ws["id"], deleted_at=deleted_at)
        await apply(store, change(table, row), cursor=f"1:{n}")
        step = (table, deleted)
        assert await listed(store, conv["id"]) == (ids if conv_shown else []), step
        assert await listed(store, other["id"]) == ([kept["id"]] if other_shown else []), step
        # hidden, never written: every message stays as it was (an undelete may come)
        assert rows(raw, "SELECT id, content FROM messages ORDER BY id") == stored, step
