"""store.sync.apply_pull on a real SQLite file, with the real merge injected."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from daemon.events import ChangeEvent
from daemon.hlc import decode
from daemon.store import Store
from daemon.store.sync import MergeOutcome

from .conftest import rows
from .linking import take_all
from .test_sync_support import (
    change,
    changelog_since,
    clock,
    iso,
    last_seq,
    merge,
    remote_conversation,
    remote_message,
    remote_task,
    remote_workspace,
)

SCOPE = "workspace:test"


async def apply(store: Store, *changes: dict[str, Any], cursor: str | None = "1:1") -> Any:
    return await store.sync.apply_pull(
        scope=SCOPE, changes=list(changes), cursor=cursor, merge=merge
    )


async def test_new_rows_are_inserted_with_events_and_cursor(
    store: Store, raw: sqlite3.Connection
) -> None:
    c = clock()
    ws = remote_workspace(c, name="shared", shared_memory={"a": 1})
    conv = remote_conversation(c, ws["id"], name="talk")
    msg = remote_message(c, ws["id"], conv["id"], content="hi")
    task = remote_task(c, ws["id"], payload={"x": 1})
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)
    outcome = await apply(
        store,
        change("messages", msg),  # page order need not be parent-first
        change("conversations", conv),
        change("workspaces", ws),
        change("tasks", task),
        cursor="10:5",
    )
    assert (outcome.applied, outcome.changed, outcome.conflicts) == (4, 4, 0)
    assert [e.topic for e in events] == [
        "workspace.created",
        "conversation.created",
        "message.created",
        "task.created",
    ]
    stored = await store.workspaces.get(ws["id"])
    assert stored["name"] == "shared" and stored["shared_memory"] == {"a": 1}
    assert stored["hlc"] == c and stored["origin"] == "device-b" and stored["path"] is None
    assert events[0].data == stored
    assert (await store.messages.get(msg["id"]))["content"] == "hi"
    assert (await store.tasks.get(task["id"]))["payload"] == {"x": 1}
    assert (await store.conversations.get(conv["id"]))["is_archived"] is False
    assert await store.sync.cursor(SCOPE) == "10:5"
    # Events carry the seqs their changelog entries got, in order.
    logged = rows(raw, "SELECT seq, topic FROM changelog ORDER BY seq")
    assert [(e.seq, e.topic) for e in events] == logged
    assert await store.changelog.read_since(0) == events
    # Pulled rows are not pushed back.
    assert rows(raw, "SELECT count(*) FROM outbox")[0][0] == 0


async def test_updates_follow_the_clocks(store: Store, raw: sqlite3.Connection) -> None:
    first = clock(-1000)
    ws = remote_workspace(first, name="v1")
    await apply(store, change("workspaces", ws))
    seq = last_seq(raw)
    newer = clock()
    await apply(store, change("workspaces", {**ws, **remote_workspace(newer, id=ws["id"])}))
    assert (await store.workspaces.get(ws["id"]))["name"] == "remote"
    [(topic, data)] = changelog_since(raw, seq)
    assert topic == "workspace.updated" and data["name"] == "remote"
    # An older version changes nothing and says nothing.
    seq = last_seq(raw)
    outcome = await apply(store, change("workspaces", ws))
    assert outcome.changed == 0 and changelog_since(raw, seq) == []
    assert (await store.workspaces.get(ws["id"]))["name"] == "remote"


async def test_tombstones_delete(store: Store, raw: sqlite3.Connection) -> None:
    c = clock(-1000)
    ws = remote_workspace(c)
    conv = remote_conversation(c, ws["id"])
    await apply(store, change("workspaces", ws), change("conversations", conv))
    seq = last_seq(raw)
    later = clock()
    dead = {**conv, "deleted_at": "2026-01-01T00:00:00.000Z"}
    dead["field_hlc"] = {**conv["field_hlc"], "deleted_at": later}
    dead["hlc"] = later
    await apply(store, change("conversations", dead))
    assert [t for t, _ in changelog_since(raw, seq)] == ["conversation.deleted"]
    assert (await store.conversations.get(conv["id"]))["deleted_at"] is not None
    assert (await store.conversations.list(workspace_id=ws["id"])).items == []


async def test_our_own_push_coming_back_is_silent(store: Store, raw: sqlite3.Connection) -> None:
    ws = await store.workspaces.create(name="mine", path="/p")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    await store.workspaces.update(ws["id"], name="mine2", shared_memory={"k": "v"})
    await store.sync.link(workspace_id=ws["id"], org_id="o", path="/p")
    taken = await take_all(store, ws["id"])
    await store.sync.complete_push(taken, [{"status": "applied"}] * len(taken))
    assert (await store.sync.counts())["outbox"] == 0
    # What the cloud serves back: the pushed fields and clocks (local-only `path` dropped).
    echoes = [
        change(
            c.table,
            {
                **{k: v for k, v in c.fields.items() if k != "path"},
                "field_hlc": {k: v for k, v in c.field_hlc.items() if k != "path"},
                "hlc": c.hlc,
                "origin": c.origin,
            },
        )
        for c in taken
    ]
    seq = last_seq(raw)
    outcome = await apply(store, *echoes, cursor="7:7")
    assert outcome.changed == 0 and outcome.applied == 3
    assert changelog_since(raw, seq) == []
    assert await store.sync.cursor(SCOPE) == "7:7"
    assert (await store.workspaces.get(ws["id"]))["path"] == "/p"
    assert (await store.messages.get(msg["id"])) == msg
    assert await store.sync.take_outbox(workspace_ids=[ws["id"]]) == []


async def test_a_failure_mid_page_leaves_neither_rows_nor_cursor(
    store: Store, raw: sqlite3.Connection
) -> None:
    c = clock()
    ws = remote_workspace(c)
    convs = [remote_conversation(c, ws["id"], name=f"c{i}") for i in range(3)]
    calls = 0

    def failing(table: str, local: Any, remote: Any, pending: frozenset[str]) -> MergeOutcome:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("bug in the merge")
        return merge(table, local, remote, pending)

    seq = last_seq(raw)
    with pytest.raises(RuntimeError, match="bug in the merge"):
        await store.sync.apply_pull(
            scope=SCOPE,
            changes=[change("workspaces", ws), *(change("conversations", x) for x in convs)],
            cursor="5:5",
            merge=failing,
        )
    assert calls == 3
    assert await store.sync.cursor(SCOPE) is None
    assert rows(raw, "SELECT count(*) FROM workspaces")[0][0] == 0
    assert rows(raw, "SELECT count(*) FROM conversations")[0][0] == 0
    assert changelog_since(raw, seq) == []
    # The same page applies once the merge works.
    outcome = await apply(
        store, change("workspaces", ws), *(change("conversations", x) for x in convs)
    )
    assert outcome.applied == 4


async def test_losing_a_pending_manual_edit_records_a_conflict_and_resolves(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="w")
    await store.sync.link(workspace_id=ws["id"], org_id="o", path=None)
    mine = await store.workspaces.update(ws["id"], task_goal="ship it")
    theirs = clock(60_000)  # concurrent, and newer
    remote = {
        "id": ws["id"],
        "task_goal": "rewrite it",
        "field_hlc": {"task_goal": theirs},
        "hlc": theirs,
        "origin": "device-b",
    }
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)
    outcome = await apply(store, change("workspaces", remote))
    assert outcome.conflicts == 1 and outcome.changed == 1
    assert [e.topic for e in events] == ["workspace.updated", "sync.conflict"]
    [conflict] = (await store.sync.conflicts()).items
    assert events[1].data == conflict
    assert conflict["table"] == "workspaces" and conflict["row_id"] == ws["id"]
    assert conflict["field"] == "task_goal" and conflict["workspace_id"] == ws["id"]
    assert (conflict["local_value"], conflict["remote_value"]) == ("ship it", "rewrite it")
    assert (conflict["local_hlc"], conflict["remote_hlc"]) == (mine["hlc"], theirs)
    assert (await store.workspaces.get(ws["id"]))["task_goal"] == "rewrite it"  # LWW converges
    assert (await store.sync.counts())["conflicts"] == 1

    seq = last_seq(raw)
    resolved = await store.sync.resolve_conflict(conflict["id"], "ship it")
    assert resolved["resolved_at"] is not None and resolved["row"]["task_goal"] == "ship it"
    assert resolved["row"]["field_hlc"]["task_goal"] > theirs  # wins everywhere once pushed
    assert [t for t, _ in changelog_since(raw, seq)] == ["workspace.updated", "sync.conflict"]
    assert (await store.sync.conflicts()).items == []
    assert [c["id"] for c in (await store.sync.conflicts(include_resolved=True)).items] == [
        conflict["id"]
    ]
    [pending] = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    assert pending.fields["task_goal"] == "ship it"
    assert pending.field_hlc["task_goal"] == resolved["row"]["field_hlc"]["task_goal"]
    assert (await store.sync.counts())["conflicts"] == 0


async def test_keeping_the_remote_side_keeps_a_newer_remote_edit(
    store: Store, raw: sqlite3.Connection
) -> None:
    """Choosing "remote" writes nothing: the row holds the remote value, or a newer one that
    arrived after the conflict (writing the conflict's remote value again undid that one)."""
    ws = await store.workspaces.create(name="w")
    await store.sync.link(workspace_id=ws["id"], org_id="o", path=None)
    await store.workspaces.update(ws["id"], task_goal="mine")
    first, newer = clock(60_000), clock(120_000)
    for value, at in (("b1", first), ("b2 newer", newer)):
        row = {"id": ws["id"], "task_goal": value, "field_hlc": {"task_goal": at}, "hlc": at}
        await apply(store, change("workspaces", row))
    conflict, later = (await store.sync.conflicts()).items  # the edit is still pending: two
    assert (conflict["remote_value"], later["remote_value"]) == ("b1", "b2 newer")
    outbox = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    seq = last_seq(raw)
    from daemon.sync.local import LocalSync  # what sync.resolve {choice: "remote"} calls

    kept = await LocalSync(store).resolve(
        conflict["id"], choice="remote", value=None, has_value=False
    )
    assert kept["value"] == "b2 newer" and kept["row"]["task_goal"] == "b2 newer"
    assert kept["resolved_at"] is not None
    assert (await store.workspaces.get(ws["id"]))["field_hlc"]["task_goal"] == newer
    assert [t for t, _ in changelog_since(raw, seq)] == ["sync.conflict"]
    assert await store.sync.take_outbox(workspace_ids=[ws["id"]]) == outbox  # nothing new
    assert (await store.sync.conflicts()).items == []


async def test_resolve_conflict_refuses_bad_calls(store: Store) -> None:
    from daemon.errors import Conflict, InvalidInput, NotFound

    with pytest.raises(NotFound):
        await store.sync.resolve_conflict("0198c0de-0000-7000-8000-000000000000", "x")
    ws = await store.workspaces.create(name="w")
    await store.sync.link(workspace_id=ws["id"], org_id="o", path=None)  # pulls: linked only
    await store.workspaces.update(ws["id"], task_goal="a")
    theirs = clock(60_000)
    remote = {"id": ws["id"], "task_goal": "b", "field_hlc": {"task_goal": theirs}, "hlc": theirs}
    await apply(store, change("workspaces", remote))
    [conflict] = (await store.sync.conflicts()).items
    with pytest.raises(InvalidInput):
        await store.sync.resolve_conflict(conflict["id"], 42)  # task_goal is text
    with pytest.raises(InvalidInput):
        await store.sync.settle_conflict(conflict["id"], "mine")
    assert (await store.sync.counts())["conflicts"] == 1
    await store.sync.resolve_conflict(conflict["id"], None)
    with pytest.raises(Conflict) as info:
        await store.sync.resolve_conflict(conflict["id"], "again")
    assert info.value.field == "conflict_id"


async def test_no_conflict_without_a_pending_edit(store: Store) -> None:
    ws = await store.workspaces.create(name="w")
    await store.sync.link(workspace_id=ws["id"], org_id="o", path=None)
    await store.workspaces.update(ws["id"], task_goal="mine")
    taken = await store.sync.take_outbox(workspace_ids=[ws["id"]])
    await store.sync.complete_push(taken, [{"status": "applied"}] * len(taken))
    theirs = clock(60_000)
    remote = {"id": ws["id"], "task_goal": "theirs", "field_hlc": {"task_goal": theirs}}
    outcome = await apply(store, change("workspaces", remote))
    assert outcome.conflicts == 0 and (await store.sync.conflicts()).items == []


async def test_remote_clocks_move_the_local_clock(store: Store) -> None:
    ws = await store.workspaces.create(name="w")
    ahead = clock(30 * 60_000)  # a peer whose clock runs 30 minutes ahead
    remote = {"id": ws["id"], "name": "theirs", "field_hlc": {"name": ahead}, "hlc": ahead}
    await apply(store, change("workspaces", remote))
    assert (await store.workspaces.get(ws["id"]))["name"] == "theirs"
    edited = await store.workspaces.update(ws["id"], name="mine")
    assert edited["field_hlc"]["name"] > ahead  # a later local edit wins
    assert decode(edited["hlc"]).device_id == store.device_id
    # A clock days ahead is merged, but does not drag our clock along.
    far = clock(3 * 86_400_000)
    remote = {"id": ws["id"], "description": "x", "field_hlc": {"description": far}, "hlc": far}
    await apply(store, change("workspaces", remote))
    assert (await store.workspaces.update(ws["id"], name="again"))["hlc"] < far


async def test_children_before_their_parent_are_parked_until_it_arrives(
    store: Store, raw: sqlite3.Connection
) -> None:
    c = clock(-1000)
    ws = remote_workspace(c)
    conv = remote_conversation(c, ws["id"])
    msgs = [remote_message(c, ws["id"], conv["id"], content=str(i)) for i in range(3)]
    task = remote_task(c, ws["id"])
    first = await apply(store, *(change("messages", m) for m in msgs), change("tasks", task))
    assert (first.applied, first.parked, first.changed) == (0, 4, 0)
    assert rows(raw, "SELECT count(*) FROM messages")[0][0] == 0
    assert await store.sync.cursor(SCOPE) == "1:1"  # the cursor still moves
    # A newer version of a parked row joins the parked one.
    newer = {**msgs[0], "deleted_at": "2026-01-01T00:00:00.000Z"}
    newer["field_hlc"] = {**msgs[0]["field_hlc"], "deleted_at": clock()}
    await apply(store, change("messages", newer))
    second = await apply(store, change("conversations", conv), cursor="2:2")
    assert second.parked == 1  # the conversation waits for its workspace in turn
    assert rows(raw, "SELECT count(*) FROM conversations")[0][0] == 0
    seq = last_seq(raw)
    third = await apply(store, change("workspaces", ws), cursor="3:3")
    assert third.applied == 6 and third.changed == 5  # the deleted message arrives silently
    topics = [t for t, _ in changelog_since(raw, seq)]
    assert topics == ["workspace.created", "conversation.created"] + ["message.created"] * 2 + [
        "task.created"
    ]
    assert (await store.messages.get(msgs[0]["id"]))["deleted_at"] is not None
    assert rows(raw, "SELECT count(*) FROM sync_parked")[0][0] == 0


async def test_malformed_changes_are_skipped_and_the_rest_applied(store: Store) -> None:
    c = clock()
    ws = remote_workspace(c)
    no_content = remote_message(c, ws["id"], "conv")
    del no_content["content"]
    bad_role = remote_conversation(c, ws["id"])
    bad_role_msg = remote_message(c, ws["id"], bad_role["id"], role="robot")
    bad_map = remote_workspace(c, shared_memory=[1, 2])
    outcome = await apply(
        store,
        {"table": "users", "row": {"id": "u"}},
        {"table": "tasks", "row": {"name": "no id"}},
        "not a change",
        change("workspaces", bad_map),
        change("workspaces", ws),
        change("conversations", bad_role),
        change("messages", bad_role_msg),
        cursor="4:4",
    )
    assert outcome.skipped == 5 and outcome.applied == 2
    assert (await store.workspaces.get(ws["id"]))["name"] == "remote"
    assert await store.sync.cursor(SCOPE) == "4:4"


async def test_a_big_page_is_one_transaction(store: Store, raw: sqlite3.Connection) -> None:
    c = clock()
    ws = remote_workspace(c)
    conv = remote_conversation(c, ws["id"])
    await apply(store, change("workspaces", ws), change("conversations", conv))
    page = [change("messages", remote_message(c, ws["id"], conv["id"])) for _ in range(2000)]
    seq = last_seq(raw)
    outcome = await apply(store, *page, cursor="9:1")
    assert outcome.applied == outcome.changed == 2000
    assert len(changelog_since(raw, seq)) == 2000
    again = await apply(store, *page, cursor="9:2")  # a replayed page is an echo
    assert again.changed == 0 and last_seq(raw) == seq + 2000


async def test_realtime_changes_do_not_move_the_cursor(store: Store) -> None:
    await apply(store, change("workspaces", remote_workspace(clock(-5))), cursor="3:3")
    await apply(store, change("workspaces", remote_workspace(clock())), cursor=None)
    assert await store.sync.cursor(SCOPE) == "3:3"


async def test_pages_and_local_writes_committed_together_keep_seqs_in_order(
    store: Store, raw: sqlite3.Connection
) -> None:
    from daemon.errors import NotFound

    ws = await store.workspaces.create(name="w")
    c = clock()
    rws = remote_workspace(c)
    conv = remote_conversation(c, rws["id"])
    await apply(store, change("workspaces", rws), change("conversations", conv))
    seq = last_seq(raw)
    events: list[ChangeEvent] = []
    store.add_commit_listener(events.extend)
    pages = [
        [change("messages", remote_message(c, rws["id"], conv["id"])) for _ in range(50)]
        for _ in range(4)
    ]
    results = await asyncio.gather(
        *(apply(store, *page) for page in pages),
        *(store.workspaces.update(ws["id"], name=f"n{i}") for i in range(20)),
        store.workspaces.update("0198c0de-0000-7000-8000-000000000000", name="x"),
        return_exceptions=True,
    )
    assert isinstance(results[-1], NotFound)  # rolled back alone, inside the group commit
    logged = rows(raw, "SELECT seq, topic FROM changelog WHERE seq > ? ORDER BY seq", seq)
    assert [(e.seq, e.topic) for e in events] == logged
    assert len(logged) == 4 * 50 + 20
    assert [s for s, _ in logged] == list(range(seq + 1, seq + 1 + len(logged)))


async def test_a_page_served_twice_writes_nothing_the_second_time(
    store: Store, raw: sqlite3.Connection
) -> None:
    c = clock()
    ws = remote_workspace(c, name="w")
    conv = remote_conversation(c, ws["id"], name="talk")
    msgs = [remote_message(c, ws["id"], conv["id"], content=f"m{i}") for i in range(3)]
    page = [change("workspaces", ws), change("conversations", conv)]
    page += [change("messages", m) for m in msgs]
    await apply(store, *page, cursor="1:1")
    before = rows(raw, "SELECT * FROM messages ORDER BY id") + rows(
        raw, "SELECT * FROM conversations"
    )
    seq = last_seq(raw)
    outcome = await apply(store, *page, cursor="2:2")
    assert (outcome.applied, outcome.changed, outcome.skipped) == (5, 0, 0)
    assert changelog_since(raw, seq) == []
    after = rows(raw, "SELECT * FROM messages ORDER BY id") + rows(
        raw, "SELECT * FROM conversations"
    )
    assert after == before
    # The same rows with one real change each are no echo: they are merged and announced.
    later = clock(1000)
    renamed = remote_conversation(later, ws["id"], id=conv["id"], name="renamed")
    gone = {"deleted_at": iso(later), "updated_at": iso(later)}
    deleted = {**msgs[0], **gone, "hlc": later}
    deleted["field_hlc"] = {**msgs[0]["field_hlc"], **dict.fromkeys(gone, later)}
    outcome = await apply(store, change("conversations", renamed), change("messages", deleted))
    assert (outcome.applied, outcome.changed) == (2, 2)
    assert [t for t, _ in changelog_since(raw, seq)] == ["conversation.updated", "message.deleted"]
    assert (await store.conversations.get(conv["id"]))["name"] == "renamed"
