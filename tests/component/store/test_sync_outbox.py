"""store.sync, push side, on a real SQLite file: take_outbox, complete_push, link, unlink."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
import pytest

from daemon.errors import InvalidInput
from daemon.events import ChangeEvent
from daemon.store import Store
from daemon.store.sync import OutboxChange, pull_scope

from .conftest import rows
from .linking import take_all
from .test_sync_support import change, clock, merge, remote_workspace

ORG = "org-1"


async def linked_workspace(store: Store, name: str = "alpha") -> dict[str, Any]:
    ws = await store.workspaces.create(name=name)
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    return ws


def outbox_count(raw: sqlite3.Connection, workspace_id: str) -> int:
    return int(rows(raw, "SELECT count(*) FROM outbox WHERE workspace_id = ?", workspace_id)[0][0])


async def test_take_outbox_returns_only_linked_workspaces(store: Store) -> None:
    linked = await linked_workspace(store)
    other = await store.workspaces.create(name="private")
    await store.conversations.create(workspace_id=other["id"], name="secret")
    taken = await store.sync.take_outbox(workspace_ids=[linked["id"]])
    assert [(c.table, c.row_id) for c in taken] == [("workspaces", linked["id"])]
    assert await store.sync.take_outbox(workspace_ids=[]) == []
    assert (await store.sync.counts())[
        "outbox"
    ] == 1  # the unlinked workspace's entries don't count


async def test_take_outbox_never_returns_system_or_tool_messages(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    sent = {}
    for role in ("user", "system", "assistant", "tool"):
        sent[role] = await store.messages.create(
            conversation_id=conv["id"], role=role, content=role
        )
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    # Even an entry that should never exist (a system message) is refused.
    raw.execute(
        "INSERT INTO outbox (table_name, row_id, workspace_id, op, fields, field_hlc, hlc,"
        " origin, created_at) VALUES ('messages', 'x', ?, 'insert', ?, '{}', ?, 'd', 'now')",
        (ws["id"], orjson.dumps({"role": "system", "content": "s"}).decode(), clock()),
    )
    taken = await take_all(store, ws["id"])
    messages = [c for c in taken if c.table == "messages"]
    assert sorted(c.fields["role"] for c in messages) == ["assistant", "user"]
    assert {c.row_id for c in messages} == {sent["user"]["id"], sent["assistant"]["id"]}


async def test_take_outbox_respects_limit_oldest_first(store: Store) -> None:
    ws = await linked_workspace(store)
    convs = [
        await store.conversations.create(workspace_id=ws["id"], name=f"c{i}") for i in range(5)
    ]
    first = await store.sync.take_outbox(workspace_ids=[ws["id"]], limit=3)
    assert [c.row_id for c in first] == [ws["id"], convs[0]["id"], convs[1]["id"]]
    with pytest.raises(InvalidInput):
        await store.sync.take_outbox(workspace_ids=[ws["id"]], limit=0)


async def test_take_outbox_respects_max_bytes_but_always_returns_one(store: Store) -> None:
    ws = await linked_workspace(store)
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    for _ in range(4):
        await store.messages.create(conversation_id=conv["id"], role="user", content="x" * 10_000)
    everything = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert len(everything) == 6
    some = await store.sync.take_outbox(workspace_ids=[ws["id"]], max_bytes=25_000)
    assert [c.table for c in some] == ["workspaces", "conversations", "messages", "messages"]
    assert len(await store.sync.take_outbox(workspace_ids=[ws["id"]], max_bytes=1)) == 1


async def test_take_outbox_coalesces_the_entries_of_one_row(store: Store) -> None:
    ws = await linked_workspace(store)
    first = await store.workspaces.update(ws["id"], name="one", description="d")
    second = await store.workspaces.update(ws["id"], name="two")
    [taken] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert len(taken.outbox_ids) == 3
    assert taken.fields["name"] == "two" and taken.fields["description"] == "d"
    assert taken.field_hlc["name"] == second["hlc"]
    assert taken.field_hlc["description"] == first["hlc"]
    assert taken.field_hlc["status"] == ws["hlc"]
    assert taken.hlc == second["hlc"] and taken.origin == store.device_id


async def test_complete_push_removes_entries_and_files_rejections(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await linked_workspace(store)
    convs = [
        await store.conversations.create(workspace_id=ws["id"], name=f"c{i}") for i in range(3)
    ]
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)
    taken = await store.sync.take_outbox(workspace_ids=[ws["id"]], limit=3)
    results = [
        {"id": taken[0].row_id, "status": "applied"},
        {"id": taken[1].row_id, "status": "rejected", "reason": "forbidden", "detail": "rls"},
        {"id": taken[2].row_id, "status": "superseded"},
    ]
    outcome = await store.sync.complete_push(taken, results)
    assert (outcome.applied, outcome.rejected, outcome.superseded) == (1, 1, 1)
    [rejection] = (await store.sync.rejected()).items
    assert rejection["row_id"] == convs[0]["id"] and rejection["reason"] == "forbidden"
    assert rejection["table"] == "conversations" and rejection["detail"] == "rls"
    assert rejection["change"]["fields"]["name"] == "c0"
    assert [e.topic for e in events] == ["sync.rejected"]
    assert events[0].data == rejection
    # The rejected row does not block the ones behind it.
    [rest] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert rest.row_id == convs[2]["id"]
    # Completing the same push again changes nothing.
    await store.sync.complete_push(taken, results)
    assert len((await store.sync.rejected()).items) == 1
    assert (await store.sync.counts()) == {"outbox": 1, "rejected": 1, "conflicts": 0}
    # c2 waits to be pushed; c1, superseded before this device saw what beat it, is kept as
    # a lost entry (a negative id: never pushed, not counted) until that arrives
    assert rows(raw, "SELECT row_id, id < 0 FROM outbox ORDER BY id DESC") == [
        (convs[2]["id"], 0),
        (convs[1]["id"], 1),
    ]


async def test_complete_push_refuses_mismatched_results(store: Store) -> None:
    ws = await linked_workspace(store)
    taken = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    with pytest.raises(InvalidInput):
        await store.sync.complete_push(taken, [])
    with pytest.raises(InvalidInput):
        await store.sync.complete_push(taken, [{"status": "maybe"}])
    with pytest.raises(InvalidInput):
        await store.sync.complete_push(taken, [{"id": "someone-else", "status": "applied"}])
    assert await store.sync.take_outbox(workspace_ids=[ws["id"]]) == taken


async def test_link_snapshots_the_whole_history(store: Store, raw: sqlite3.Connection) -> None:
    ws = await store.workspaces.create(name="old")
    ws = await store.workspaces.update(ws["id"], name="renamed", shared_memory={"k": 1})
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    gone = await store.conversations.create(workspace_id=ws["id"], name="gone")
    gone = await store.conversations.delete(gone["id"])
    text = 'say "hi" \u2713\n\\'
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content=text)
    await store.messages.create(conversation_id=conv["id"], role="tool", content="local only")
    task = await store.tasks.create(workspace_id=ws["id"], kind="build")
    assert outbox_count(raw, ws["id"]) == 0  # not linked: local-only, no entries (I6)
    link = await store.sync.link(workspace_id=ws["id"], org_id=ORG, path="/src/w")
    assert (link.workspace_id, link.org_id, link.path) == (ws["id"], ORG, "/src/w")
    assert await store.sync.links() == [link]
    # one snapshot entry per row, the messages as one range (the tool message not in it)
    assert outbox_count(raw, ws["id"]) == 5
    assert (await store.sync.counts())["outbox"] == 5
    taken = {c.row_id: c for c in await take_all(store, ws["id"])}
    assert set(taken) == {ws["id"], conv["id"], gone["id"], msg["id"], task["id"]}
    snap = taken[ws["id"]]
    assert snap.fields["name"] == "renamed" and snap.fields["shared_memory"] == {"k": 1}
    assert snap.field_hlc["name"] == ws["field_hlc"]["name"] and snap.hlc == ws["hlc"]
    assert set(snap.field_hlc) >= set(snap.fields) - {"id"}
    assert taken[gone["id"]].fields["deleted_at"] == gone["deleted_at"]
    assert taken[msg["id"]].fields == {
        k: v for k, v in msg.items() if k not in ("hlc", "origin")
    }  # the same shape as the message's own entry
    assert taken[msg["id"]].fields["content"] == text
    assert taken[msg["id"]].field_hlc["content"] == msg["hlc"]
    # Linking again only updates the link.
    again = await store.sync.link(workspace_id=ws["id"], org_id=ORG, path="/src/moved")
    assert again.linked_at == link.linked_at and again.path == "/src/moved"
    assert outbox_count(raw, ws["id"]) == 5


async def test_link_of_a_workspace_not_here_yet_records_it(store: Store) -> None:
    link = await store.sync.link(workspace_id="cloud-ws", org_id=ORG, path="/clone")
    assert await store.sync.links() == [link]
    assert await store.sync.take_outbox(workspace_ids=["cloud-ws"]) == []


async def test_unlink_keeps_data_and_drops_link_cursor_outbox(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await linked_workspace(store)
    remote = remote_workspace(clock(), name="other")
    scope = pull_scope(ws["id"])
    await store.sync.apply_pull(
        scope=scope, changes=[change("workspaces", remote)], cursor="9:9", merge=merge
    )
    assert await store.sync.cursor(scope) == "9:9"
    await store.sync.unlink(ws["id"])
    assert await store.sync.links() == []
    assert await store.sync.cursor(scope) is None
    assert outbox_count(raw, ws["id"]) == 0
    assert (await store.workspaces.get(ws["id"]))["name"] == "alpha"
    assert (await store.workspaces.get(remote["id"]))["name"] == "other"
    # Local writes go on (with no outbox entry); relinking publishes the current state again.
    await store.workspaces.update(ws["id"], name="beta")
    assert outbox_count(raw, ws["id"]) == 0
    assert (await store.sync.counts())["outbox"] == 0
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    [again] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert again.fields["name"] == "beta" and len(again.outbox_ids) == 1


def test_outbox_change_is_frozen() -> None:
    c = OutboxChange((1,), "tasks", "t", "w", {}, {}, "h", "o")
    with pytest.raises(AttributeError):
        c.table = "x"  # type: ignore[misc]


async def test_take_outbox_after_skips_the_entries_of_a_batch_in_flight(store: Store) -> None:
    ws = await linked_workspace(store)
    convs = [
        await store.conversations.create(workspace_id=ws["id"], name=f"c{i}") for i in range(4)
    ]
    first = await store.sync.take_outbox(workspace_ids=[ws["id"]], limit=2)
    last = max(i for c in first for i in c.outbox_ids)
    # A later edit of a row of the first batch (still unsettled) comes with the next batch.
    await store.conversations.update(convs[0]["id"], name="renamed")
    second = await store.sync.take_outbox(workspace_ids=[ws["id"]], limit=10, after=last)
    assert [c.row_id for c in first] == [ws["id"], convs[0]["id"]]
    assert [c.row_id for c in second] == [*(c["id"] for c in convs[1:]), convs[0]["id"]]
    assert second[-1].fields["name"] == "renamed"
    assert min(i for c in second for i in c.outbox_ids) > last
    assert await store.sync.take_outbox(workspace_ids=[ws["id"]], after=10**9) == []
    for bad in (-1, "3", 1.5, True):
        with pytest.raises(InvalidInput):
            await store.sync.take_outbox(workspace_ids=[ws["id"]], after=bad)  # type: ignore[arg-type]
    # Nothing was settled by taking: everything is still there from the start.
    assert len(await store.sync.take_outbox(workspace_ids=[ws["id"]])) == 5


async def test_take_outbox_sends_the_rows_others_reference_before_the_leaves_alone(
    store: Store,
) -> None:
    ws = await linked_workspace(store)
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    sent = [
        await store.messages.create(conversation_id=conv["id"], role="user", content=str(n))
        for n in range(3)
    ]
    later = await store.conversations.create(workspace_id=ws["id"], name="later")
    await store.messages.create(conversation_id=later["id"], role="user", content="x")
    leaves = frozenset({"messages"})
    everything = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    first = await store.sync.take_outbox(workspace_ids=[ws["id"]], leaves=leaves)
    last = max(i for c in first for i in c.outbox_ids)
    rest = await store.sync.take_outbox(workspace_ids=[ws["id"]], after=last, leaves=leaves)
    # the workspace and its conversation alone; then, from the first leaf, the rest as before
    assert [c.row_id for c in first] == [ws["id"], conv["id"]]
    assert [c.row_id for c in rest] == [*(m["id"] for m in sent), later["id"], rest[-1].row_id]
    assert first + rest == everything
    with pytest.raises(InvalidInput):
        await store.sync.take_outbox(workspace_ids=[ws["id"]], leaves={"messages"})  # type: ignore[arg-type]
