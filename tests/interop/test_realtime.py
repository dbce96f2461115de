"""supabase-py's realtime client against devcloud's Realtime server on real PostgreSQL.

The server runs under uvicorn on 127.0.0.1 with only the realtime routes, on a fresh database
with its own small schema (two organisations, a table with row-level security, the
``supabase_realtime`` publication), so these tests do not depend on the rest of devcloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from supabase import AsyncClient, acreate_client

from devcloud.context import Devcloud, DevcloudConfig
from devcloud.keys import sign
from devcloud.realtime import Realtime
from devcloud.realtime.cdc import ChangeFeed
from tests.helpers import wait_for

SCHEMA = """
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END LOOP;
END $$;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
CREATE TABLE public.notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org text NOT NULL,
    title text,
    done boolean NOT NULL DEFAULT false,
    rank integer NOT NULL DEFAULT 0,
    meta jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_of_my_org ON public.notes FOR ALL TO authenticated
    USING (org = current_setting('request.jwt.claims', true)::jsonb ->> 'org');
GRANT ALL ON public.notes TO anon, authenticated, service_role;
CREATE TABLE public.later (id uuid PRIMARY KEY, body text);
GRANT ALL ON public.later TO anon, authenticated, service_role;
CREATE PUBLICATION supabase_realtime FOR TABLE public.notes;
"""


@dataclass
class Cloud:
    url: str
    ws_url: str
    ctx: Devcloud
    realtime: Realtime
    pool: asyncpg.Pool

    @property
    def anon_key(self) -> str:
        return self.ctx.config.anon_key

    def token(self, org: str, *, sub: str = "u1", ttl: float = 3600) -> str:
        claims = {"sub": sub, "role": "authenticated", "org": org, "exp": int(time.time() + ttl)}
        return sign(claims, self.ctx.config.jwt_secret)

    async def execute(self, sql: str, *args: Any) -> Any:
        async with self.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[int]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or task.done(), message="uvicorn start")
        if task.done():
            task.result()
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def cloud(fresh_database_url: str) -> AsyncIterator[Cloud]:
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=6)
    try:
        async with pool.acquire() as conn:
            await conn.execute(SCHEMA)
        ctx = Devcloud(DevcloudConfig(port=0), pool)
        realtime = Realtime(ctx)
        await realtime.start()
        try:
            async with serve(Starlette(routes=realtime.routes())) as port:
                base = f"http://127.0.0.1:{port}"
                ws_url = f"ws://127.0.0.1:{port}/realtime/v1/websocket"
                yield Cloud(base, ws_url, ctx, realtime, pool)
        finally:
            await realtime.stop()
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def client_for(cloud: Cloud, token: str | None = None) -> AsyncIterator[AsyncClient]:
    client = await acreate_client(cloud.url, cloud.anon_key)
    if token is not None:
        await client.realtime.set_auth(token)
    try:
        yield client
    finally:
        await client.realtime.close()
        await client.auth.close()


async def subscribe(channel: Any) -> list[str]:
    states: list[str] = []
    await channel.subscribe(lambda state, err: states.append(state.value))
    assert states == ["SUBSCRIBED"], states
    return states


# postgres_changes ------------------------------------------------------------------------------


async def test_postgres_changes_insert_update_delete_with_filter(cloud: Cloud) -> None:
    received: list[dict[str, Any]] = []
    system: list[str] = []
    async with client_for(cloud, cloud.token("org-a")) as client:
        channel = client.channel("db")
        channel.on_postgres_changes("*", received.append, table="notes", filter="org=eq.org-a")
        channel.on_system(lambda payload: system.append(payload.message))
        await subscribe(channel)
        await wait_for(lambda: system == ["Subscribed to PostgreSQL"], message="system ok")

        note_id = await cloud.execute(
            "INSERT INTO notes (org, title, meta) VALUES ('org-a', 'hi', $1) RETURNING id",
            '{"k": [1]}',
        )
        await wait_for(lambda: len(received) == 1, message="insert")
        await cloud.execute("UPDATE notes SET title = 'new', done = true WHERE id = $1", note_id)
        await wait_for(lambda: len(received) == 2, message="update")
        await cloud.execute("DELETE FROM notes WHERE id = $1", note_id)
        await wait_for(lambda: len(received) == 3, message="delete")

    insert, update, delete = (r["data"] for r in received)
    assert [d["type"] for d in (insert, update, delete)] == ["INSERT", "UPDATE", "DELETE"]
    assert insert["schema"] == "public" and insert["table"] == "notes"
    assert insert["errors"] is None and "old_record" not in insert
    assert insert["record"]["id"] == note_id and insert["record"]["title"] == "hi"
    assert insert["record"]["done"] is False and insert["record"]["meta"] == {"k": [1]}
    assert [c["name"] for c in insert["columns"]][:3] == ["id", "org", "title"]
    assert {c["name"]: c["type"] for c in insert["columns"]}["id"] == "int8"
    assert insert["commit_timestamp"].endswith("Z") and len(insert["commit_timestamp"]) == 24
    assert update["record"]["title"] == "new" and update["record"]["done"] is True
    assert update["old_record"] == {"id": note_id}
    assert "record" not in delete and delete["old_record"] == {"id": note_id}
    assert all(r["ids"] == [received[0]["ids"][0]] for r in received)


async def test_filter_excludes_rows_and_event_kinds(cloud: Cloud) -> None:
    inserts: list[dict[str, Any]] = []
    ranked: list[dict[str, Any]] = []
    async with client_for(cloud, cloud.token("org-a")) as client:
        channel = client.channel("filtered")
        channel.on_postgres_changes("INSERT", inserts.append, table="notes")
        channel.on_postgres_changes("*", ranked.append, table="notes", filter="rank=gte.5")
        await subscribe(channel)
        await wait_for(lambda: any(ch.bindings_active for ch in cloud.realtime.hub.subscribers()))
        await cloud.execute("INSERT INTO notes (org, title, rank) VALUES ('org-a', 'low', 1)")
        await cloud.execute("INSERT INTO notes (org, title, rank) VALUES ('org-a', 'high', 7)")
        await cloud.execute("UPDATE notes SET title = 'low2' WHERE title = 'low'")
        await cloud.execute("UPDATE notes SET title = 'high2' WHERE title = 'high'")
        await wait_for(lambda: len(ranked) == 2 and len(inserts) == 2, message="changes")
    # Each record is the row as that change wrote it, not as it is at delivery time.
    assert [r["data"]["record"]["title"] for r in inserts] == ["low", "high"]
    assert [(r["data"]["type"], r["data"]["record"]["title"]) for r in ranked] == [
        ("INSERT", "high"),
        ("UPDATE", "high2"),
    ]


async def test_rls_other_orgs_changes_never_arrive(cloud: Cloud) -> None:
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    async with (
        client_for(cloud, cloud.token("org-a", sub="alice")) as alice,
        client_for(cloud, cloud.token("org-b", sub="bob")) as bob,
    ):
        for client, sink in ((alice, seen_a), (bob, seen_b)):
            channel = client.channel("all-notes")
            channel.on_postgres_changes("*", sink.append, table="notes")
            await subscribe(channel)
        await wait_for(lambda: sum(1 for _ in cloud.realtime.hub.subscribers()) == 2)
        await cloud.execute("INSERT INTO notes (org, title) VALUES ('org-b', 'secret')")
        await cloud.execute("INSERT INTO notes (org, title) VALUES ('org-a', 'mine')")
        await cloud.execute("UPDATE notes SET title = 'secret2' WHERE org = 'org-b'")
        await cloud.execute("DELETE FROM notes WHERE org = 'org-b'")
        # The last change is org-a's: once it arrived, every earlier one was dispatched too.
        await cloud.execute("UPDATE notes SET title = 'mine2' WHERE org = 'org-a'")
        await cloud.execute("DELETE FROM notes WHERE org = 'org-a'")
        await wait_for(lambda: len(seen_a) == 3, message="alice's changes")
        await wait_for(lambda: len(seen_b) == 3, message="bob's changes")
    assert [r["data"].get("record", {}).get("title") for r in seen_a] == ["mine", "mine2", None]
    assert [r["data"].get("record", {}).get("title") for r in seen_b] == ["secret", "secret2", None]
    # Deletes are judged against the policies on the old row: each side sees only its own.
    assert seen_a[2]["data"]["old_record"] == {"id": seen_a[0]["data"]["record"]["id"]}
    assert seen_b[2]["data"]["old_record"] == {"id": seen_b[0]["data"]["record"]["id"]}


async def test_table_added_to_publication_later_is_captured(cloud: Cloud) -> None:
    received: list[dict[str, Any]] = []
    system: list[tuple[str, str]] = []
    await cloud.execute("ALTER PUBLICATION supabase_realtime ADD TABLE public.later")
    async with client_for(cloud, cloud.token("org-a")) as client:
        channel = client.channel("later")
        channel.on_postgres_changes("INSERT", received.append, table="later")
        channel.on_system(lambda p: system.append((p.status, p.message)))
        await subscribe(channel)
        await wait_for(lambda: system == [("ok", "Subscribed to PostgreSQL")])
        await cloud.execute(
            "INSERT INTO later VALUES ('0190f5a0-0000-7000-8000-000000000001', 'x')"
        )
        await wait_for(lambda: len(received) == 1, message="insert into later")
    assert received[0]["data"]["record"] == {
        "id": "0190f5a0-0000-7000-8000-000000000001",
        "body": "x",
    }


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        ({"event": "*", "schema": "public", "table": "later"}, "table: later"),
        ({"event": "*", "table": "notes", "filter": "nope=eq.1"}, "invalid column for filter nope"),
        ({"event": "*", "table": "notes", "filter": "title=like.x"}, "Error parsing `filter`"),
    ],
)
async def test_unusable_binding_gets_system_error(
    cloud: Cloud, binding: dict[str, str], message: str
) -> None:
    async with websockets.connect(f"{cloud.ws_url}?apikey={cloud.anon_key}&vsn=1.0.0") as ws:
        config = {"postgres_changes": [binding]}
        await ws.send(v1_frame("realtime:x", "phx_join", {"config": config}, "1", "1"))
        reply = json.loads(await ws.recv())
        assert reply["payload"]["status"] == "ok"
        (echoed,) = reply["payload"]["response"]["postgres_changes"]
        assert {k: v for k, v in echoed.items() if k != "id"} == binding
        system = json.loads(await ws.recv())
    assert system["event"] == "system" and system["ref"] is None
    assert system["payload"]["status"] == "error"
    assert system["payload"]["extension"] == "postgres_changes"
    assert message in system["payload"]["message"]
    assert list(cloud.realtime.hub.subscribers()) == []  # the binding never went live


async def test_identical_claims_share_one_row_fetch(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetches: list[dict[str, Any]] = []
    fetch = ChangeFeed._fetch

    async def counting_fetch(self: ChangeFeed, change: Any, claims: dict[str, Any]) -> Any:
        fetches.append(claims)
        return await fetch(self, change, claims)

    monkeypatch.setattr(ChangeFeed, "_fetch", counting_fetch)
    token = cloud.token("org-a")
    sinks: list[list[dict[str, Any]]] = [[], [], []]
    async with (
        client_for(cloud, token) as one,
        client_for(cloud, token) as two,
        client_for(cloud, cloud.token("org-a", sub="carol")) as three,
    ):
        for client, sink in zip((one, two, three), sinks, strict=True):
            channel = client.channel("shared")
            channel.on_postgres_changes("INSERT", sink.append, table="notes")
            await subscribe(channel)
        await wait_for(lambda: sum(1 for _ in cloud.realtime.hub.subscribers()) == 3)
        await cloud.execute("INSERT INTO notes (org, title) VALUES ('org-a', 'once')")
        await wait_for(lambda: all(len(sink) == 1 for sink in sinks), message="three deliveries")
    assert sorted(claims["sub"] for claims in fetches) == ["carol", "u1"]


async def test_row_too_large_for_notify_is_read_back_under_rls(cloud: Cloud) -> None:
    received: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    async with (
        client_for(cloud, cloud.token("org-a")) as client,
        client_for(cloud, cloud.token("org-b")) as outsider,
    ):
        for c, sink in ((client, received), (outsider, other)):
            channel = c.channel("big")
            channel.on_postgres_changes("INSERT", sink.append, table="notes")
            await subscribe(channel)
        await wait_for(lambda: sum(1 for _ in cloud.realtime.hub.subscribers()) == 2)
        title = "x" * 20_000  # far over NOTIFY's 8000 bytes: the trigger sends only the key
        await cloud.execute("INSERT INTO notes (org, title) VALUES ('org-a', $1)", title)
        await cloud.execute("INSERT INTO notes (org, title) VALUES ('org-b', 'small')")
        await wait_for(lambda: len(received) == 1 and len(other) == 1, message="inserts")
    assert received[0]["data"]["record"]["title"] == title
    assert other[0]["data"]["record"]["title"] == "small"


async def test_partition_written_through_its_parent_is_captured(cloud: Cloud) -> None:
    # Statement triggers would not fire for rows routed to a partition: partitions get a row
    # trigger (capture.sql, attach()).
    async with cloud.pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE parts (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);"
            " CREATE TABLE parts_1 PARTITION OF parts FOR VALUES IN (1);"
            " GRANT SELECT ON parts, parts_1 TO authenticated;"
            " ALTER PUBLICATION supabase_realtime ADD TABLE parts"
        )
    received: list[dict[str, Any]] = []
    async with client_for(cloud, cloud.token("org-a")) as client:
        channel = client.channel("parts")
        channel.on_postgres_changes("*", received.append, table="parts_1", filter="v=neq.skip")
        await subscribe(channel)
        await wait_for(lambda: any(True for _ in cloud.realtime.hub.subscribers()))
        await cloud.execute("INSERT INTO parts VALUES (1, 1, 'skip'), (2, 1, 'a')")
        await cloud.execute("UPDATE parts SET v = 'b' WHERE id = 2")
        await wait_for(lambda: len(received) == 2, message="partition changes")
    assert [(r["data"]["type"], r["data"]["record"]) for r in received] == [
        ("INSERT", {"id": 2, "k": 1, "v": "a"}),
        ("UPDATE", {"id": 2, "k": 1, "v": "b"}),
    ]


def v1_frame(topic: str, event: str, payload: Any, ref: str | None, join_ref: str | None) -> str:
    frame = {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}
    return json.dumps(frame)
