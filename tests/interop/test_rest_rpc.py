"""/rest/v1/rpc/<function> against supabase-py: arguments by name, result shapes, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from postgrest import APIError
from supabase import AsyncClient, acreate_client

from devcloud.server import RunningDevcloud

FUNCTIONS = """
CREATE TABLE public.rpc_notes (id int PRIMARY KEY, body text, score int);
INSERT INTO public.rpc_notes VALUES (1, 'one', 10), (2, 'two', 20), (3, 'three', 30);
GRANT ALL ON public.rpc_notes TO anon, authenticated, service_role;
CREATE FUNCTION public.add_numbers(a int, b int DEFAULT 10) RETURNS int
    LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
CREATE FUNCTION public.count_to(n int) RETURNS SETOF int
    LANGUAGE sql IMMUTABLE AS $$ SELECT generate_series(1, n) $$;
CREATE FUNCTION public.notes_above(min_score int) RETURNS SETOF public.rpc_notes
    LANGUAGE sql STABLE AS $$ SELECT * FROM public.rpc_notes WHERE score > min_score $$;
CREATE FUNCTION public.note_by_id(note_id int) RETURNS public.rpc_notes
    LANGUAGE sql STABLE AS $$ SELECT * FROM public.rpc_notes WHERE id = note_id $$;
CREATE FUNCTION public.summarise(doc jsonb, tags text[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'keys', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(doc) k),
        'tags', to_jsonb(tags)) $$;
CREATE FUNCTION public.whoami() RETURNS jsonb
    LANGUAGE sql STABLE AS $$ SELECT jsonb_build_object('role', current_user, 'sub', auth.uid()) $$;
CREATE FUNCTION public.bump(note_id int) RETURNS void
    LANGUAGE sql AS $$ UPDATE public.rpc_notes SET score = score + 1 WHERE id = note_id $$;
CREATE FUNCTION public.fail_loudly(reason text) RETURNS int
    LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'refused: %', reason USING HINT = 'ask later'; END $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO anon, authenticated, service_role;
"""


@pytest.fixture
async def client(devcloud: RunningDevcloud) -> AsyncIterator[AsyncClient]:
    async with devcloud.ctx.pool.acquire() as conn:
        await conn.execute(FUNCTIONS)
    yield await acreate_client(devcloud.url, devcloud.anon_key)


async def test_rpc_result_shapes(client: AsyncClient) -> None:
    assert (await client.rpc("add_numbers", {"a": 2, "b": 3}).execute()).data == 5
    assert (await client.rpc("add_numbers", {"a": 2}).execute()).data == 12  # default b
    assert (await client.rpc("count_to", {"n": 3}).execute()).data == [1, 2, 3]
    rows = await client.rpc("notes_above", {"min_score": 15}).execute()
    assert rows.data == [
        {"id": 2, "body": "two", "score": 20},
        {"id": 3, "body": "three", "score": 30},
    ]
    one = await client.rpc("note_by_id", {"note_id": 1}).execute()
    assert one.data == {"id": 1, "body": "one", "score": 10}
    summary = await client.rpc(
        "summarise", {"doc": {"b": 1, "a": [2]}, "tags": ["x", "y,z"]}
    ).execute()
    assert summary.data == {"keys": ["a", "b"], "tags": ["x", "y,z"]}
    me = await client.rpc("whoami", {}).execute()
    assert me.data == {"role": "anon", "sub": None}


async def test_rpc_on_a_row_set_takes_filters_order_and_paging(client: AsyncClient) -> None:
    query = client.rpc("notes_above", {"min_score": 0}, count="exact")  # type: ignore[arg-type]
    response = (
        await query.select("body").gte("score", 20).order("score", desc=True).limit(1).execute()
    )
    assert response.data == [{"body": "three"}]
    assert response.count == 2


async def test_rpc_with_get_and_query_arguments(client: AsyncClient) -> None:
    assert (await client.rpc("add_numbers", {"a": 40, "b": 2}, get=True).execute()).data == 42
    response = await client.rpc("notes_above", {"min_score": 25}, get=True).execute()
    assert [r["id"] for r in response.data] == [3]


async def test_void_function_runs_and_answers_204(
    devcloud: RunningDevcloud, client: AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=devcloud.url) as http:
        response = await http.post(
            "/rest/v1/rpc/bump", json={"note_id": 1}, headers={"apikey": devcloud.anon_key}
        )
        read_only = await http.get(
            "/rest/v1/rpc/bump", params={"note_id": "1"}, headers={"apikey": devcloud.anon_key}
        )
    assert response.status_code == 204 and response.content == b""
    assert read_only.status_code == 405 and read_only.json()["code"] == "25006"
    assert (await client.rpc("note_by_id", {"note_id": 1}).execute()).data["score"] == 11


async def test_rpc_errors(client: AsyncClient) -> None:
    with pytest.raises(APIError) as missing:
        await client.rpc("no_such_function", {"x": 1}).execute()
    assert missing.value.code == "PGRST202"
    with pytest.raises(APIError) as wrong_args:
        await client.rpc("add_numbers", {"c": 1}).execute()
    assert wrong_args.value.code == "PGRST202"
    with pytest.raises(APIError) as raised:
        await client.rpc("fail_loudly", {"reason": "busy"}).execute()
    assert raised.value.code == "P0001"
    assert raised.value.message == "refused: busy" and raised.value.hint == "ask later"
    with pytest.raises(APIError) as bad_value:
        await client.rpc("add_numbers", {"a": "two"}).execute()
    assert bad_value.value.code == "22P02"
