"""devcloud's change capture sends notifications only for tables some server watches, one
statement's rows packed into as few notifications as NOTIFY's 8000 bytes allow.

Notifications arrive in commit order, so "nothing was sent for the first write" is shown by a
later write to a watched table arriving alone (no sleeps).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from devcloud.realtime.cdc import NOTIFY_CHANNEL, ChangeFeed, capture_sql
from devcloud.realtime.changes import parse_notifications
from devcloud.realtime.channel import Binding
from tests.helpers import MS, wait_for

from .kit import Cloud, new_id

WATCH = "SELECT devcloud_realtime.watch($1, $2::text[], $3::text[])"


class Listener:
    """A LISTEN connection recording the tables of the notifications it gets."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.pid = conn.get_server_pid()
        self.tables: list[str] = []
        self.payloads: list[str] = []

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.tables.append(json.loads(payload)["table"])
        self.payloads.append(payload)

    def rows(self) -> list[dict[str, Any]]:
        """Every row announced so far, in order."""
        return [row for payload in self.payloads for row in json.loads(payload)["rows"]]


@pytest.fixture
async def listener(cloud: Cloud) -> AsyncIterator[Listener]:
    async with cloud.pool.acquire() as conn:
        await conn.execute(capture_sql())
    conn = await cloud.pool.acquire()
    recorder = Listener(conn)
    await conn.add_listener(NOTIFY_CHANNEL, recorder.on_notify)
    try:
        yield recorder
    finally:
        await conn.remove_listener(NOTIFY_CHANNEL, recorder.on_notify)
        await cloud.pool.release(conn)


async def watched(cloud: Cloud) -> set[tuple[str, str, int]]:
    rows = await cloud.pool.fetch(
        "SELECT schema_name, table_name, listener FROM devcloud_realtime.watched"
    )
    return {(r[0], r[1], r[2]) for r in rows}


async def test_only_watched_tables_notify(cloud: Cloud, listener: Listener) -> None:
    org = await cloud.org("A")
    await cloud.workspace(org)  # nobody watches: no notification
    await cloud.pool.execute(WATCH, listener.pid, ["public"], ["conversations"])
    ws = await cloud.workspace(org)
    await cloud.pool.execute("INSERT INTO public.conversations (workspace_id) VALUES ($1)", ws)
    await wait_for(lambda: bool(listener.tables), message="a notification")
    assert listener.tables == ["conversations"]

    await cloud.pool.execute(WATCH, listener.pid, ["public"], ["*"])  # every table of public
    await cloud.workspace(org)
    await wait_for(lambda: len(listener.tables) == 2, message="a second notification")
    assert listener.tables == ["conversations", "workspaces"]

    await cloud.pool.execute(WATCH, listener.pid, [], [])
    await cloud.workspace(org)
    await cloud.pool.execute(WATCH, listener.pid, ["public"], ["conversations"])
    await cloud.pool.execute("INSERT INTO public.conversations (workspace_id) VALUES ($1)", ws)
    await wait_for(lambda: len(listener.tables) == 3, message="a third notification")
    assert listener.tables == ["conversations", "workspaces", "conversations"]


async def test_watching_forgets_servers_that_are_gone(cloud: Cloud, listener: Listener) -> None:
    gone = -1  # no backend has this pid
    await cloud.pool.execute(
        "INSERT INTO devcloud_realtime.watched VALUES ('public', 'messages', $1)", gone
    )
    await cloud.pool.execute(WATCH, listener.pid, ["public", "public"], ["tasks", "messages"])
    assert await watched(cloud) == {
        ("public", "tasks", listener.pid),
        ("public", "messages", listener.pid),
    }
    await cloud.pool.execute(WATCH, listener.pid, ["public"], ["tasks"])
    assert await watched(cloud) == {("public", "tasks", listener.pid)}


def binding(table: str | None) -> Binding:
    return Binding(1, "*", "public", table, None, None, {})


async def test_the_feed_watches_the_tables_of_its_subscribers(cloud: Cloud) -> None:
    subscribers: list[Any] = []
    feed = ChangeFeed(cloud.ctx, lambda: subscribers, join_grace=500 * MS)
    await feed.start()
    try:
        assert feed._listener is not None
        pid = feed._listener.get_server_pid()
        assert await watched(cloud) == set()

        # a join writes its tables before it is confirmed
        assert await feed.prepare([binding("messages"), binding(None)]) == []
        assert await watched(cloud) == {("public", "messages", pid), ("public", "*", pid)}
        subscriber = SimpleNamespace(
            config=SimpleNamespace(bindings=(binding("messages"),)), claims={}, closed=False
        )
        subscribers.append(subscriber)

        async def only_messages_watched() -> bool:  # once the join's grace is over
            await feed.update_watch()
            return await watched(cloud) == {("public", "messages", pid)}

        await wait_for(only_messages_watched, message="the join's tables to go")

        # the subscriber leaves: the next notification of its table stops the notifications
        subscribers.clear()
        org = await cloud.org("A")
        ws = await cloud.workspace(org)
        conv = await cloud.pool.fetchval(
            "INSERT INTO public.conversations (workspace_id) VALUES ($1) RETURNING id", ws
        )
        await cloud.pool.execute(
            "INSERT INTO public.messages (id, workspace_id, conversation_id, role)"
            " VALUES ($1, $2, $3, 'user')",
            new_id(),
            ws,
            conv,
        )

        async def nothing_watched() -> bool:
            return await watched(cloud) == set()

        await wait_for(nothing_watched, message="the watch to end")
    finally:
        await feed.stop()


async def test_a_stopped_feed_watches_nothing(cloud: Cloud) -> None:
    subscribers = [SimpleNamespace(config=SimpleNamespace(bindings=(binding("tasks"),)))]
    feed = ChangeFeed(cloud.ctx, lambda: subscribers)
    await feed.start()
    try:
        assert len(await watched(cloud)) == 1
    finally:
        await feed.stop()
    assert await watched(cloud) == set()


def subscriber_of(claims: dict[str, Any], table: str) -> Any:
    """A joined channel binding ``table``'s changes; ``frames`` holds what it was sent."""
    frames: list[Any] = []
    return SimpleNamespace(
        config=SimpleNamespace(bindings=(binding(table),)),
        claims=claims,
        closed=False,
        topic="realtime:t",
        frames=frames,
        send=frames.append,
    )


async def test_a_batch_of_changes_is_judged_once_per_claims_and_delivered_in_order(
    cloud: Cloud, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = await cloud.user("alice@example.com"), await cloud.user("bob@example.com")
    ws_a = await cloud.workspace(await cloud.org("A", alice))
    ws_b = await cloud.workspace(await cloud.org("B", bob))
    await cloud.pool.execute(WATCH, listener.pid, ["public"] * 2, ["messages", "conversations"])
    new_conv = "INSERT INTO public.conversations (workspace_id) VALUES ($1) RETURNING id"
    conv_a = await cloud.pool.fetchval(new_conv, ws_a)
    conv_b = await cloud.pool.fetchval(new_conv, ws_b)
    ids = [new_id() for _ in range(40)]  # even: A's workspace, odd: B's
    await cloud.pool.execute(
        "INSERT INTO public.messages (id, workspace_id, conversation_id, role, content)"
        " SELECT i, w, c, 'user', 'm' FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) u(i, w, c)",
        ids,
        [ws_a if i % 2 == 0 else ws_b for i in range(40)],
        [conv_a if i % 2 == 0 else conv_b for i in range(40)],
    )
    await wait_for(lambda: len(listener.rows()) == 42, message="every notification")
    assert len(listener.payloads) < 10  # the 40 messages of one statement: packed

    subscribers = [
        subscriber_of(Cloud.claims(alice), "messages"),
        subscriber_of(Cloud.claims(alice), "messages"),  # same claims: judged together
        subscriber_of(Cloud.claims(bob), "messages"),
    ]
    judged: list[int] = []
    fetch = ChangeFeed._fetch

    async def counting_fetch(self: ChangeFeed, changes: Any, claims: dict[str, Any]) -> Any:
        judged.append(len(changes))
        return await fetch(self, changes, claims)

    monkeypatch.setattr(ChangeFeed, "_fetch", counting_fetch)
    feed = ChangeFeed(cloud.ctx, lambda: subscribers)
    await feed.dispatch_many(["not json", *listener.payloads])

    assert judged == [40, 40]  # one transaction per claims, for the 40 messages (not the convs)
    for subscriber, expected in zip(subscribers, (ids[0::2], ids[0::2], ids[1::2]), strict=True):
        records = [f.payload["data"]["record"] for f in subscriber.frames]
        assert [r["id"] for r in records] == expected  # RLS per row, in commit order
        assert all(f.event == "postgres_changes" for f in subscriber.frames)


async def test_a_failing_batch_is_judged_change_by_change(cloud: Cloud, listener: Listener) -> None:
    alice = await cloud.user("alice@example.com")
    ws = await cloud.workspace(await cloud.org("A", alice))
    await cloud.pool.execute(WATCH, listener.pid, ["public"], ["conversations"])
    conv = await cloud.pool.fetchval(
        "INSERT INTO public.conversations (workspace_id) VALUES ($1) RETURNING id::text", ws
    )
    await wait_for(lambda: len(listener.payloads) == 1, message="the notification")
    # a row image PostgreSQL cannot read as a conversation fails the batch's query
    bad = json.loads(listener.payloads[0])
    bad["rows"][0]["new"] = {**bad["rows"][0]["new"], "id": "not-a-uuid"}
    subscriber = subscriber_of(Cloud.claims(alice), "conversations")
    feed = ChangeFeed(cloud.ctx, lambda: [subscriber])
    await feed.dispatch_many([json.dumps(bad), listener.payloads[0]])
    assert [f.payload["data"]["record"]["id"] for f in subscriber.frames] == [conv]


def test_one_batch_cannot_fill_a_sockets_send_queue() -> None:
    # a client that keeps up is never dropped because one batch was delivered at once
    from devcloud.realtime import cdc, session

    assert cdc.MAX_BATCH * 4 <= session.MAX_QUEUE


async def test_a_statements_rows_share_notifications_under_notifys_limit(
    cloud: Cloud, listener: Listener
) -> None:
    alice = await cloud.user("alice@example.com")
    ws = await cloud.workspace(await cloud.org("A", alice))
    conv = await cloud.pool.fetchval(
        "INSERT INTO public.conversations (workspace_id) VALUES ($1) RETURNING id", ws
    )
    await cloud.pool.execute(WATCH, listener.pid, ["public"], ["messages"])
    ids = [new_id() for _ in range(300)]
    contents = ["m" * 200] * 300
    contents[150] = "x" * 20_000  # far over NOTIFY's 8000 bytes: announced by its key alone
    await cloud.pool.execute(
        "INSERT INTO public.messages (id, workspace_id, conversation_id, role, content)"
        " SELECT i, $3, $4, 'user', c FROM unnest($1::uuid[], $2::text[]) u(i, c)",
        ids,
        contents,
        ws,
        conv,
    )
    await wait_for(lambda: len(listener.rows()) == 300, message="every row announced")

    assert all(len(p.encode()) < 8000 for p in listener.payloads)
    assert 1 < len(listener.payloads) < 300 // 3  # packed: rows of about 1.3 kB, ~6 each
    rows = listener.rows()
    assert [r["pk"]["id"] for r in rows] == ids  # the statement's order
    assert "new" not in rows[150]
    assert all(r["new"]["id"] == r["pk"]["id"] for i, r in enumerate(rows) if i != 150)

    # delivered in order, the large row read back; 300 changes: judged 256 at a time
    subscriber = subscriber_of(Cloud.claims(alice), "messages")
    await ChangeFeed(cloud.ctx, lambda: [subscriber]).dispatch_many(listener.payloads)
    records = [f.payload["data"]["record"] for f in subscriber.frames]
    assert [r["id"] for r in records] == ids
    assert records[150]["content"] == contents[150]


async def test_a_row_whose_key_cannot_fit_is_left_out_alone(cloud: Cloud) -> None:
    async with cloud.pool.acquire() as conn:
        await conn.execute(capture_sql())
        assert (
            await conn.fetchval(
                "SELECT devcloud_realtime.notified_row($1, 'new', '{}', 7700)",
                json.dumps({"id": "k" * 9000}),
            )
            == '{"pk": {}}'
        )
        key_only = await conn.fetchval(
            "SELECT devcloud_realtime.notified_row('{\"id\": 1}', 'new', $1, 7700)",
            json.dumps({"id": 1, "body": "b" * 8000}),
        )
    assert json.loads(key_only) == {"pk": {"id": 1}}
    head = {"schema": "public", "table": "t", "type": "UPDATE", "commit_timestamp": "x"}
    text = json.dumps(
        {**head, "rows": [{"pk": {"id": 1}, "new": {"id": 1}}, {"pk": {}}, {"pk": {"id": 2}}]}
    )
    found, problems = parse_notifications(text)
    assert [(c.pk, c.new, c.type) for c in found] == [
        ({"id": 1}, {"id": 1}, "UPDATE"),
        ({"id": 2}, None, "UPDATE"),
    ]
    assert problems == ["notification lacks the primary key"]
