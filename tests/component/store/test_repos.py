"""Repositories on a real SQLite file: each mutation = row + outbox + changelog, committed."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
import pytest

from daemon.errors import Conflict, InvalidInput, NotFound
from daemon.hlc import decode
from daemon.store import Store, txn
from daemon.store.codec import now_ms
from daemon.store.ids import Uuid7Generator, is_uuid, uuid7
from daemon.store.sync_outbox import entry_clocks

from .conftest import rows
from .linking import create_linked, link


def outbox_of(raw: sqlite3.Connection, row_id: str) -> list[dict[str, Any]]:
    found = rows(
        raw,
        "SELECT table_name, op, workspace_id, fields, field_hlc, hlc, origin FROM outbox"
        " WHERE row_id = ? ORDER BY id",
        row_id,
    )
    keys = ("table", "op", "workspace_id", "fields", "field_hlc", "hlc", "origin")
    return [
        {
            **dict(zip(keys, r, strict=True)),
            "fields": orjson.loads(r[3]),
            "field_hlc": entry_clocks(orjson.loads(r[3]), r[4], r[5]),
        }
        for r in found
    ]


def changelog_of(raw: sqlite3.Connection, row_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    found = rows(
        raw, "SELECT seq, topic, data FROM changelog WHERE row_id = ? ORDER BY seq", row_id
    )
    return [(seq, topic, orjson.loads(data)) for seq, topic, data in found]


async def test_workspace_create_writes_row_outbox_and_changelog(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="Alpha", path="/src/alpha", description="d")
    assert is_uuid(ws["id"])
    assert ws["name"] == "Alpha" and ws["path"] == "/src/alpha" and ws["status"] == "active"
    assert ws["shared_memory"] == {} and ws["next_steps"] == [] and ws["progress_data"] == {}
    assert ws["origin"] == store.device_id and ws["deleted_at"] is None
    assert ws["created_at"].endswith("Z") and ws["created_at"] == ws["updated_at"]
    assert set(ws["field_hlc"].values()) == {ws["hlc"]}
    assert await store.workspaces.get(ws["id"]) == ws  # the stored row, decoded alike
    assert outbox_of(raw, ws["id"]) == []  # not linked: local-only, no entry (I6)
    await link(store, ws["id"])
    [entry] = outbox_of(raw, ws["id"])  # the link's snapshot: the row as stored
    assert entry["op"] == "insert" and entry["workspace_id"] == ws["id"]
    assert entry["fields"]["name"] == "Alpha" and entry["hlc"] == ws["hlc"]
    assert set(entry["field_hlc"]) == set(entry["fields"])
    [(seq, topic, data)] = changelog_of(raw, ws["id"])
    assert topic == "workspace.created" and data == ws and seq >= 1


async def test_update_is_partial_and_clocks_only_changed_fields(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await create_linked(store, name="A")
    updated = await store.workspaces.update(
        ws["id"], shared_memory={"k": [1, 2]}, task_goal="ship", name="A"
    )
    assert updated["shared_memory"] == {"k": [1, 2]} and updated["task_goal"] == "ship"
    assert updated["hlc"] > ws["hlc"]
    assert updated["field_hlc"]["shared_memory.k"] == updated["hlc"]  # a map: key by key
    assert updated["field_hlc"]["shared_memory"] == ws["hlc"]
    assert updated["field_hlc"]["task_goal"] == updated["hlc"]
    assert updated["field_hlc"]["name"] == ws["hlc"]  # unchanged value: old clock kept
    assert await store.workspaces.get(ws["id"]) == updated
    _, change = outbox_of(raw, ws["id"])
    assert change["op"] == "update"
    assert change["fields"] == {
        "shared_memory": {"k": [1, 2]},
        "task_goal": "ship",
        "updated_at": updated["updated_at"],
    }
    topics = [t for _, t, _ in changelog_of(raw, ws["id"])]
    assert topics == ["workspace.created", "workspace.updated"]


async def test_update_that_changes_nothing_writes_nothing(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await create_linked(store, name="A")
    same = await store.workspaces.update(ws["id"], name="A")
    assert same == ws
    assert len(outbox_of(raw, ws["id"])) == 1 and len(changelog_of(raw, ws["id"])) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"hlc": "x"}, "hlc"),
        ({"name": ""}, "name"),
        ({"shared_memory": [1]}, "shared_memory"),
        ({"next_steps": {"a": 1}}, "next_steps"),
        ({"progress_data": {"x": object()}}, "progress_data"),
        ({}, "fields"),
    ],
)
async def test_bad_update_names_the_field_and_changes_nothing(
    store: Store, raw: sqlite3.Connection, fields: dict[str, Any], field: str
) -> None:
    ws = await create_linked(store, name="A")
    with pytest.raises(InvalidInput) as info:
        await store.workspaces.update(ws["id"], **fields)
    assert info.value.field == field
    assert await store.workspaces.get(ws["id"]) == ws
    assert len(outbox_of(raw, ws["id"])) == 1


async def test_delete_is_a_tombstone_and_list_skips_it(
    store: Store, raw: sqlite3.Connection
) -> None:
    a = await create_linked(store, name="A")
    b = await store.workspaces.create(name="B")
    gone = await store.workspaces.delete(a["id"])
    assert gone["deleted_at"] is not None and gone["field_hlc"]["deleted_at"] == gone["hlc"]
    assert (await store.workspaces.get(a["id"]))["deleted_at"] == gone["deleted_at"]
    assert [w["id"] for w in (await store.workspaces.list()).items] == [b["id"]]
    assert outbox_of(raw, a["id"])[-1]["op"] == "delete"
    assert changelog_of(raw, a["id"])[-1][1] == "workspace.deleted"
    assert await store.workspaces.delete(a["id"]) == gone  # deleting twice: no new entry
    assert len(changelog_of(raw, a["id"])) == 2
    with pytest.raises(NotFound):
        await store.workspaces.update(a["id"], name="back")  # an edit never resurrects


async def test_unknown_ids_raise_not_found(store: Store) -> None:
    missing = uuid7()
    for call in (
        store.workspaces.get(missing),
        store.workspaces.update(missing, name="x"),
        store.workspaces.delete(missing),
        store.conversations.get(missing),
        store.messages.get(missing),
        store.tasks.cancel(missing),
    ):
        with pytest.raises(NotFound) as info:
            await call
        assert info.value.id == missing


async def test_keyset_pagination_visits_every_row_once(store: Store) -> None:
    created = [(await store.workspaces.create(name=f"w{i}"))["id"] for i in range(23)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.workspaces.list(limit=10, cursor=cursor)
        seen.extend(w["id"] for w in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == created


@pytest.mark.parametrize("cursor", ["", "abc", "k1.!!", "k1.bm90LWEtdXVpZA"])
async def test_foreign_cursor_is_refused(store: Store, cursor: str) -> None:
    with pytest.raises(InvalidInput) as info:
        await store.workspaces.list(cursor=cursor)
    assert info.value.field == "cursor"


async def test_a_cursor_is_refused_by_any_other_list_or_filter(store: Store) -> None:
    ws = await store.workspaces.create(name="A")
    other = await store.workspaces.create(name="B")
    for i in range(3):
        await store.workspaces.create(name=f"w{i}")
        await store.conversations.create(workspace_id=ws["id"], name=f"c{i}")
        await store.tasks.create(workspace_id=ws["id"], kind="k")
    workspaces = (await store.workspaces.list(limit=1)).next_cursor
    conversations = (await store.conversations.list(workspace_id=ws["id"], limit=1)).next_cursor
    tasks = (await store.tasks.list(workspace_id=ws["id"], status="queued", limit=1)).next_cursor
    assert workspaces and conversations and tasks
    refused = (
        store.conversations.list(workspace_id=ws["id"], cursor=workspaces),
        store.workspaces.list(cursor=conversations),
        store.conversations.list(cursor=conversations),  # the same list, another filter
        store.conversations.list(workspace_id=other["id"], cursor=conversations),
        store.tasks.list(workspace_id=ws["id"], cursor=tasks),
        store.sync.rejected(cursor=workspaces),
        store.sync.conflicts(include_resolved=True, cursor=workspaces),
    )
    for call in refused:
        with pytest.raises(InvalidInput) as info:
            await call
        assert info.value.field == "cursor" and "another list" in info.value.message
    # each still works where it came from
    assert len((await store.workspaces.list(cursor=workspaces)).items) == 4
    page = await store.conversations.list(workspace_id=ws["id"], cursor=conversations)
    assert [c["name"] for c in page.items] == ["c1", "c2"]
    page = await store.tasks.list(workspace_id=ws["id"], status="queued", cursor=tasks)
    assert len(page.items) == 2


async def test_a_message_cursor_is_refused_by_another_conversation(store: Store) -> None:
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    other = await store.conversations.create(workspace_id=ws["id"], name="d")
    for i in range(2):
        await store.messages.create(conversation_id=conv["id"], role="user", content=f"m{i}")
    cursor = (await store.messages.list(conversation_id=conv["id"], limit=1)).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidInput) as info:
        await store.messages.list(conversation_id=other["id"], after=cursor)
    assert info.value.field == "after" and "another list" in info.value.message
    rest = await store.messages.list(conversation_id=conv["id"], after=cursor)
    assert [m["content"] for m in rest.items] == ["m1"]


@pytest.mark.parametrize("limit", [0, 1001, -5, True, "10"])
async def test_bad_limit_is_refused(store: Store, limit: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        await store.workspaces.list(limit=limit)
    assert info.value.field == "limit"


async def test_conversations(store: Store, raw: sqlite3.Connection) -> None:
    ws = await create_linked(store, name="A")
    other = await store.workspaces.create(name="B")
    conv = await store.conversations.create(workspace_id=ws["id"], name="Chat")
    await store.conversations.create(workspace_id=other["id"], name="Elsewhere")
    assert conv["type"] == "chat" and conv["is_archived"] is False
    listed = await store.conversations.list(workspace_id=ws["id"])
    assert [c["id"] for c in listed.items] == [conv["id"]]
    assert len((await store.conversations.list()).items) == 2
    archived = await store.conversations.update(conv["id"], is_archived=True)
    assert archived["is_archived"] is True
    assert (await store.conversations.get(conv["id"]))["is_archived"] is True
    assert outbox_of(raw, conv["id"])[-1]["fields"] == {
        "is_archived": True,
        "updated_at": archived["updated_at"],
    }
    deleted = await store.conversations.delete(conv["id"])
    assert deleted["deleted_at"] is not None
    topics = [t for _, t, _ in changelog_of(raw, conv["id"])]
    assert topics == ["conversation.created", "conversation.updated", "conversation.deleted"]


async def test_conversation_in_unknown_or_deleted_workspace_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput) as info:
        await store.conversations.create(workspace_id=uuid7(), name="x")
    assert info.value.field == "workspace_id"
    ws = await store.workspaces.create(name="A")
    await store.workspaces.delete(ws["id"])
    with pytest.raises(InvalidInput):
        await store.conversations.create(workspace_id=ws["id"], name="x")


async def test_messages_append_and_page_with_after(store: Store, raw: sqlite3.Connection) -> None:
    ws = await create_linked(store, name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    sent = [
        await store.messages.create(conversation_id=conv["id"], role="user", content=f"m{i}")
        for i in range(5)
    ]
    assert all(m["workspace_id"] == ws["id"] for m in sent)
    first = await store.messages.list(conversation_id=conv["id"], limit=3)
    rest = await store.messages.list(conversation_id=conv["id"], after=first.next_cursor)
    assert [m["content"] for m in first.items + rest.items] == [f"m{i}" for i in range(5)]
    assert rest.next_cursor is None
    assert await store.messages.get(sent[0]["id"]) == sent[0]
    [entry] = outbox_of(raw, sent[0]["id"])
    assert entry["fields"]["content"] == "m0" and entry["workspace_id"] == ws["id"]
    with pytest.raises(InvalidInput) as info:
        await store.messages.list(conversation_id=conv["id"], after="nope")
    assert info.value.field == "after"


async def test_messages_after_a_message_id(store: Store) -> None:
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    other = await store.conversations.create(workspace_id=ws["id"], name="d")
    sent = [
        await store.messages.create(conversation_id=conv["id"], role="user", content=f"m{i}")
        for i in range(4)
    ]
    await store.messages.create(conversation_id=other["id"], role="user", content="elsewhere")
    page = await store.messages.list(conversation_id=conv["id"], after=sent[1]["id"])
    assert (page.items, page.next_cursor) == (sent[2:], None)
    page = await store.messages.list(conversation_id=conv["id"], after=sent[0]["id"], limit=2)
    assert page.items == sent[1:3]
    rest = await store.messages.list(conversation_id=conv["id"], after=page.next_cursor)
    assert rest.items == sent[3:]
    assert (await store.messages.list(conversation_id=conv["id"], after=sent[3]["id"])).items == []
    with pytest.raises(InvalidInput) as info:
        await store.messages.list(conversation_id=conv["id"], after=sent[0]["id"].upper())
    assert info.value.field == "after" and "message id" in info.value.message


async def test_client_chosen_message_id_makes_retries_idempotent(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await create_linked(store, name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    mid = uuid7()
    first = await store.messages.create(
        conversation_id=conv["id"], role="user", content="hello", id=mid
    )
    again = await store.messages.create(
        conversation_id=conv["id"], role="user", content="hello", id=mid
    )
    assert again == first and first["id"] == mid
    assert len(changelog_of(raw, mid)) == 1 and len(outbox_of(raw, mid)) == 1
    with pytest.raises(Conflict) as clash:
        await store.messages.create(conversation_id=conv["id"], role="user", content="bye", id=mid)
    assert clash.value.field == "id"
    assert (await store.messages.get(mid))["content"] == "hello"


async def test_a_reused_message_id_says_what_differs(store: Store) -> None:
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    other = await store.conversations.create(workspace_id=ws["id"], name="d")
    sent = {"conversation_id": conv["id"], "role": "user", "content": "hello", "id": uuid7()}
    await store.messages.create(**sent)
    cases = [
        ({"conversation_id": other["id"]}, f"a different conversation (it is in {conv['id']!r})"),
        ({"role": "assistant"}, "a different role (it is 'user')"),
        ({"content": "bye"}, "a different content"),
        (
            {"conversation_id": other["id"], "role": "tool", "content": "bye"},
            f"a different conversation (it is in {conv['id']!r}), role (it is 'user') and content",
        ),
    ]
    for change, what in cases:
        with pytest.raises(Conflict) as clash:
            await store.messages.create(**{**sent, **change})
        assert clash.value.field == "id"
        assert clash.value.message == f"message id {sent['id']!r} already used with {what}"
    assert (await store.messages.list(conversation_id=other["id"])).items == []


HOUR_MS = 3_600_000


def minted_at(ms: int) -> str:
    """A UUIDv7 of time ``ms`` (from a generator of its own: the shared one never goes back)."""
    return Uuid7Generator().mint(ms)


async def test_a_client_id_minted_far_from_the_daemon_clock_is_refused(
    store: Store, raw: sqlite3.Connection
) -> None:
    """An id of 1970 would list first forever, one of years ahead last forever."""
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    now = now_ms()
    far = (1, now - 24 * HOUR_MS - 60_000, now + HOUR_MS + 60_000, now + 3 * 365 * 24 * HOUR_MS)
    for ms in far:
        with pytest.raises(InvalidInput) as info:
            await store.messages.create(
                conversation_id=conv["id"], role="user", content="x", id=minted_at(ms)
            )
        assert info.value.field == "id" and "the daemon's clock" in info.value.message
    assert rows(raw, "SELECT count(*) FROM messages") == [(0,)]
    near = (now - 24 * HOUR_MS + 60_000, now + HOUR_MS - 60_000)  # a send made offline; skew
    sent = [
        await store.messages.create(
            conversation_id=conv["id"], role="user", content=f"{ms}", id=minted_at(ms)
        )
        for ms in near
    ]
    assert (await store.messages.list(conversation_id=conv["id"])).items == sent


async def test_a_retry_is_answered_whatever_the_age_of_its_id(
    store: Store, raw: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    send = {"conversation_id": conv["id"], "role": "user", "content": "hello", "id": uuid7()}
    first = await store.messages.create(**send)
    later = now_ms() + 48 * HOUR_MS
    monkeypatch.setattr(txn, "now_ms", lambda: later)  # two days pass on the daemon's clock
    assert await store.messages.create(**send) == first
    assert len(changelog_of(raw, first["id"])) == 1
    with pytest.raises(InvalidInput) as info:  # a new message with an id that old: refused
        await store.messages.create(**{**send, "id": minted_at(later - 48 * HOUR_MS)})
    assert info.value.field == "id"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role": "robot"}, "role"),
        ({"content": 5}, "content"),
        ({"id": "not-a-uuid"}, "id"),
        ({"id": "01A1FCF2-F4C4-7510-9EC6-6F9AE6D3FF36"}, "id"),
        ({"id": "6f9ae6d3-ff36-4510-9ec6-01a1fcf2f4c4"}, "id"),  # v4: would sort anywhere
        ({"id": "01a1fcf2-f4c4-1510-9ec6-6f9ae6d3ff36"}, "id"),  # v1
        ({"id": "01a1fcf2-f4c4-7510-cec6-6f9ae6d3ff36"}, "id"),  # v7 bits, not RFC 9562 variant
        ({"conversation_id": None}, "conversation_id"),
        ({"conversation_id": "01a1fcf2-f4c4-7510-9ec6-6f9ae6d3ff36"}, "conversation_id"),
    ],
)
async def test_bad_message_names_the_field(
    store: Store, raw: sqlite3.Connection, kwargs: dict[str, Any], field: str
) -> None:
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    args = {"conversation_id": conv["id"], "role": "user", "content": "x", **kwargs}
    with pytest.raises(InvalidInput) as info:
        await store.messages.create(**args)
    assert info.value.field == field
    assert rows(raw, "SELECT count(*) FROM messages") == [(0,)]


async def test_system_and_tool_messages_never_reach_the_outbox(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await create_linked(store, name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    for role in ("system", "tool"):
        msg = await store.messages.create(conversation_id=conv["id"], role=role, content="secret")
        assert outbox_of(raw, msg["id"]) == []
        assert [t for _, t, _ in changelog_of(raw, msg["id"])] == ["message.created"]


async def test_tasks_queue_update_cancel(store: Store, raw: sqlite3.Connection) -> None:
    ws = await create_linked(store, name="A")
    task = await store.tasks.create(workspace_id=ws["id"], kind="build", payload={"n": 1})
    assert task["status"] == "queued" and task["priority"] == 0 and task["attempts"] == 0
    assert task["payload"] == {"n": 1} and task["progress"] == {}
    other = await store.tasks.create(workspace_id=ws["id"], kind="lint", priority=5)
    running = await store.tasks.update(task["id"], status="running", progress={"step": 3})
    assert running["progress"] == {"step": 3} and running["field_hlc"]["status"] == running["hlc"]
    queued = await store.tasks.list(workspace_id=ws["id"], status="queued")
    assert [t["id"] for t in queued.items] == [other["id"]]
    cancelled = await store.tasks.cancel(other["id"])
    assert cancelled["status"] == "cancelled"
    assert await store.tasks.cancel(other["id"]) == cancelled
    topics = [t for _, t, _ in changelog_of(raw, other["id"])]
    assert topics == ["task.created", "task.updated"]
    done = await store.tasks.update(task["id"], status="succeeded")
    with pytest.raises(Conflict) as clash:
        await store.tasks.cancel(done["id"])
    assert clash.value.field == "id"
    with pytest.raises(InvalidInput) as info:
        await store.tasks.update(task["id"], status="exploded")
    assert info.value.field == "status"
    with pytest.raises(InvalidInput) as info:
        await store.tasks.create(workspace_id=ws["id"], kind="x", priority=1.5)  # type: ignore[arg-type]
    assert info.value.field == "priority"


async def test_clocks_increase_across_all_writes(store: Store) -> None:
    ws = await store.workspaces.create(name="A")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    clocks = [ws["hlc"], conv["hlc"]]
    for i in range(50):
        msg = await store.messages.create(conversation_id=conv["id"], role="user", content=str(i))
        clocks.append(msg["hlc"])
    assert clocks == sorted(clocks) and len(set(clocks)) == len(clocks)
    assert {decode(c).device_id for c in clocks} == {store.device_id}


async def test_an_ended_task_keeps_its_status_against_local_and_pulled_writes(
    store: Store,
) -> None:
    """The local API keeps ended statuses final (tasks.py), and so does the merge of a pulled
    status (R8): a newer write of another device that had not seen the end does not revive the
    task; a newer ended status wins (R1 between two ended ones)."""
    from .test_sync_support import change, clock, merge, remote_task

    ws = await create_linked(store, name="A")
    task = await store.tasks.create(workspace_id=ws["id"], kind="build")
    cancelled = await store.tasks.cancel(task["id"])
    with pytest.raises(InvalidInput) as refused:
        await store.tasks.update(task["id"], status="running")
    assert refused.value.field == "status"
    assert await store.tasks.get(task["id"]) == cancelled
    remote = remote_task(clock(60_000), ws["id"], id=task["id"], status="running", priority=4)
    await store.sync.apply_pull(
        scope="s", changes=[change("tasks", remote)], cursor="1", merge=merge
    )
    kept = await store.tasks.get(task["id"])
    assert (kept["status"], kept["priority"]) == ("cancelled", 4)
    remote = remote_task(clock(70_000), ws["id"], id=task["id"], status="failed")
    await store.sync.apply_pull(
        scope="s", changes=[change("tasks", remote)], cursor="2", merge=merge
    )
    assert (await store.tasks.get(task["id"]))["status"] == "failed"


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 2**64, 1e20, -9.3e18, float("inf")])
async def test_json_values_keep_only_numbers_they_hold_exactly(
    store: Store, raw: sqlite3.Connection, number: Any
) -> None:
    """The store refuses what the local API refuses (daemon/jsonnumbers.py): a number it would
    not give back as it was given, whoever writes it."""
    ws = await create_linked(store, name="A")
    task = await store.tasks.create(workspace_id=ws["id"], kind="k", payload={"ok": 2**63 - 1})
    before = rows(raw, "SELECT count(*) FROM changelog")
    with pytest.raises(InvalidInput) as refused:
        await store.tasks.create(workspace_id=ws["id"], kind="k", payload={"n": [1, number]})
    assert refused.value.field == "payload" and "at n[1]" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        await store.tasks.update(task["id"], progress={"done": number})
    assert refused.value.field == "progress" and "2**63" in refused.value.message
    with pytest.raises(InvalidInput):
        await store.workspaces.update(ws["id"], shared_memory={"k": {"deep": number}})
    assert rows(raw, "SELECT count(*) FROM changelog") == before
    assert (await store.tasks.get(task["id"]))["payload"] == {"ok": 2**63 - 1}
    kept = await store.tasks.update(task["id"], payload={"small": 9.2e18, "id": "1" * 30})
    assert kept["payload"] == {"small": 9.2e18, "id": "1" * 30}
