"""devcloud's change capture sends notifications only for tables some server watches.

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

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.tables.append(json.loads(payload)["table"])


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
