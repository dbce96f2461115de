"""devcloud hands an RPC's POST body to PostgreSQL unparsed when the function takes only jsonb
arguments (sync_push): what runs, and how bad bodies are still refused with PostgREST's errors
without the function running."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from devcloud.server import RunningDevcloud

# the module (devcloud.rest exports its function ``routes`` under the same name)
rest_routes = importlib.import_module("devcloud.rest.routes")

FUNCTIONS = """
CREATE TABLE public.raw_calls (n serial PRIMARY KEY, args jsonb);
GRANT ALL ON public.raw_calls TO anon;
GRANT ALL ON SEQUENCE public.raw_calls_n_seq TO anon;
CREATE FUNCTION public.record_call(doc jsonb, "Extra_B" jsonb) RETURNS jsonb
    LANGUAGE sql AS $$
    INSERT INTO public.raw_calls (args) VALUES (jsonb_build_array(doc, "Extra_B"));
    SELECT jsonb_build_object('doc', doc, 'b', "Extra_B") $$;
GRANT EXECUTE ON FUNCTION public.record_call(jsonb, jsonb) TO anon;
"""


@pytest.fixture
async def http(devcloud: RunningDevcloud) -> AsyncIterator[httpx.AsyncClient]:
    async with devcloud.ctx.pool.acquire() as conn:
        await conn.execute(FUNCTIONS)
    headers = {"apikey": devcloud.anon_key, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=devcloud.url, headers=headers) as client:
        yield client


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the ordinary path parsed (the raw path parses none)."""
    seen: list[bytes] = []
    rpc_body = rest_routes.rpc_body

    def recording(payload: bytes) -> tuple[str, tuple[str, ...]]:
        seen.append(payload)
        return rpc_body(payload)

    monkeypatch.setattr(rest_routes, "rpc_body", recording)
    return seen


async def calls(devcloud: RunningDevcloud) -> list[Any]:
    async with devcloud.ctx.pool.acquire() as conn:
        return [r[0] for r in await conn.fetch("SELECT args::text FROM public.raw_calls")]


async def test_a_body_of_exactly_the_arguments_runs_unparsed(
    devcloud: RunningDevcloud, http: httpx.AsyncClient, parsed: list[bytes]
) -> None:
    body = b' \n{"Extra_B": [1, "\\u00e9"], "doc": {"k": null}}'  # any key order, mixed case
    response = await http.post("/rest/v1/rpc/record_call", content=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"doc": {"k": None}, "b": [1, "é"]}
    assert parsed == []
    assert await calls(devcloud) == ['[{"k": null}, [1, "é"]]']


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"doc": 1, "Extra_B": 2', 400, "PGRST102"),  # malformed: refused by PostgreSQL
        (b'{"doc": 1, "Extra_B": 2, "more": 3}', 404, "PGRST202"),  # an unknown argument
        (b'{"doc": 1}', 404, "PGRST202"),  # a missing one
        (b"[1, 2]", 400, "PGRST102"),  # not an object
        (b'{"doc": 1, "Extra_B": "\xff"}', 400, "PGRST102"),  # not UTF-8
    ],
)
async def test_bad_bodies_get_postgrest_errors_and_nothing_runs(
    devcloud: RunningDevcloud, http: httpx.AsyncClient, body: bytes, status: int, code: str
) -> None:
    response = await http.post("/rest/v1/rpc/record_call", content=body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert await calls(devcloud) == []
    # the connection is fine afterwards (the failed transaction was rolled back)
    ok = await http.post("/rest/v1/rpc/record_call", json={"doc": 1, "Extra_B": 2})
    assert ok.status_code == 200, ok.text
    assert await calls(devcloud) == ["[1, 2]"]


async def test_functions_with_other_arguments_take_the_ordinary_path(
    devcloud: RunningDevcloud, http: httpx.AsyncClient, parsed: list[bytes]
) -> None:
    async with devcloud.ctx.pool.acquire() as conn:
        await conn.execute(
            "CREATE FUNCTION public.plus(a int, b int DEFAULT 1) RETURNS int"
            " LANGUAGE sql AS $$ SELECT a + b $$"
        )
    response = await http.post("/rest/v1/rpc/plus", json={"a": 2})
    assert response.status_code == 200 and response.json() == 3
    assert parsed == [b'{"a":2}']
