"""The changelog: seq order, replay, pruning to changelog_retain, seqs never reused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import InvalidInput, StoreUnavailable
from daemon.store import Store

from .conftest import rows
from .linking import create_linked


async def test_read_since_replays_in_order(store: Store) -> None:
    assert await store.changelog.last_seq() == 0
    assert await store.changelog.first_seq() == 1  # empty: nothing missed after 0
    ws = await store.workspaces.create(name="A")
    await store.workspaces.update(ws["id"], name="B")
    await store.workspaces.delete(ws["id"])
    events = await store.changelog.read_since(0)
    assert [e.topic for e in events] == [
        "workspace.created",
        "workspace.updated",
        "workspace.deleted",
    ]
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[1].data["name"] == "B"
    assert [e.seq for e in await store.changelog.read_since(1, limit=1)] == [2]
    assert await store.changelog.read_since(3) == []
    assert await store.changelog.last_seq() == 3 and await store.changelog.first_seq() == 1


async def test_replay_equals_what_listeners_saw(store: Store) -> None:
    live = []
    store.add_commit_listener(live.extend)
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    for i in range(20):
        await store.messages.create(conversation_id=conv["id"], role="user", content=str(i))
    assert await store.changelog.read_since(0) == live


@pytest.mark.parametrize(("seq", "limit", "field"), [("1", 10, "seq"), (0, 0, "limit")])
async def test_bad_read_arguments(store: Store, seq: object, limit: int, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        await store.changelog.read_since(seq, limit)  # type: ignore[arg-type]
    assert info.value.field == field


async def test_pruned_to_retain_and_seqs_never_reused(db_path: Path) -> None:
    settings = StoreSettings(changelog_retain=10)
    store = await Store.open(db_path, settings)
    try:
        for i in range(25):  # linked: each gets its outbox entry (the link's snapshot)
            await create_linked(store, name=f"w{i}")
        assert await store.changelog.last_seq() == 25
        assert await store.changelog.first_seq() == 16
        assert [e.seq for e in await store.changelog.read_since(0)] == list(range(16, 26))
    finally:
        await store.close()
    conn = sqlite3.connect(db_path)
    try:
        assert rows(conn, "SELECT count(*), min(seq), max(seq) FROM changelog") == [(10, 16, 25)]
        assert rows(conn, "SELECT count(*) FROM outbox") == [(25,)]  # the outbox is not pruned
    finally:
        conn.close()
    reopened = await Store.open(db_path, settings)
    try:
        assert await reopened.changelog.first_seq() == 16
        ws = await reopened.workspaces.create(name="after restart")
        events = await reopened.changelog.read_since(25)
        assert [(e.seq, e.data["id"]) for e in events] == [(26, ws["id"])]
        assert await reopened.changelog.first_seq() == 17
    finally:
        await reopened.close()


@pytest.mark.parametrize("damage", ["'{bad'", "CAST(x'ff7b7d' AS TEXT)"])
async def test_an_unreadable_entry_is_said_to_be_damage_not_a_refetch(
    store: Store, raw: sqlite3.Connection, damage: str
) -> None:
    for name in "ABC":
        await store.workspaces.create(name=name)
    raw.execute(f"UPDATE changelog SET data = {damage} WHERE seq = 2")  # bad JSON, bad UTF-8

    assert [e.seq for e in await store.changelog.read_since(2)] == [3]
    with pytest.raises(StoreUnavailable) as caught:
        await store.changelog.read_since(0)

    assert caught.value.reason == "damaged"
    assert "could not read its changelog" in caught.value.message
    assert "integrity_check" in caught.value.message
