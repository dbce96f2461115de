"""supabase-py's functions.invoke (and a raw SSE reader) against devcloud's /functions/v1:
the agent-chat and ai-proxy built-ins, JWT checks, bad input, and an OpenAI-compatible
upstream that requests are forwarded to (streams passed through)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from supabase_functions.errors import FunctionsHttpError

from devcloud.server import RunningDevcloud, serving

# supabase-py 2.34.1 warns about its own functions-client construction.
pytestmark = pytest.mark.filterwarnings("ignore:The 'timeout' parameter is deprecated")


async def signed_in_client(dc: RunningDevcloud, email: str, org: str | None = None) -> AsyncClient:
    await dc.create_user(email, "s3cret-pw", org=org)
    client = await acreate_client(dc.url, dc.anon_key, AsyncClientOptions(auto_refresh_token=False))
    await client.auth.sign_in_with_password({"email": email, "password": "s3cret-pw"})
    return client


def sse_payloads(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    events = [block for block in text.split("\n\n") if block.strip()]
    return [line[len("data: ") :] for block in events for line in block.split("\n")]


async def test_agent_chat_answers_from_the_local_model(devcloud: RunningDevcloud):
    client = await signed_in_client(devcloud, "ann@example.com")
    answer = await client.functions.invoke(
        "agent-chat",
        {
            "body": {
                "agentSlug": "helper",
                "conversationId": str(uuid.uuid4()),
                "userMessage": "hello there",
                "messageHistory": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hey"},
                ],
            },
            "responseType": "json",
        },
    )
    assert answer["content"] == "Echo: hello there (turn 3)"
    assert answer["agentName"] == "helper"  # no such cloud agent: its slug
    assert uuid.UUID(answer["messageId"]).version == 7


async def test_agent_chat_names_the_cloud_agent_the_caller_can_see(devcloud: RunningDevcloud):
    member = await signed_in_client(devcloud, "ben@example.com", org="Acme")
    outsider = await signed_in_client(devcloud, "cat@example.com")
    async with devcloud.ctx.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO public.cloud_agents (org_id, name, slug, system_prompt)"
            " SELECT id, 'Helper Bot', 'helper', 'Be brief.' FROM public.organizations"
            " WHERE name = 'Acme'"
        )
    body = {"body": {"agentSlug": "helper", "userMessage": "hi"}, "responseType": "json"}
    assert (await member.functions.invoke("agent-chat", body))["agentName"] == "Helper Bot"
    assert (await outsider.functions.invoke("agent-chat", body))["agentName"] == "helper"


async def test_ai_proxy_completion(devcloud: RunningDevcloud):
    client = await signed_in_client(devcloud, "dan@example.com")
    completion = await client.functions.invoke(
        "ai-proxy",
        {"body": {"model": "m1", "messages": [{"role": "user", "content": "one two"}]},
         "responseType": "json"},
    )  # fmt: skip
    assert completion["object"] == "chat.completion" and completion["model"] == "m1"
    assert completion["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Echo: one two (turn 1)",
    }
    assert completion["usage"]["prompt_tokens"] == 2


async def test_ai_proxy_stream_through_functions_invoke(devcloud: RunningDevcloud):
    client = await signed_in_client(devcloud, "eve@example.com")
    raw = await client.functions.invoke(
        "ai-proxy",
        {"body": {"stream": True, "messages": [{"role": "user", "content": "stream me please"}]}},
    )
    payloads = sse_payloads(raw.decode())
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Echo: stream me please (turn 1)"


async def test_ai_proxy_streams_event_by_event(devcloud: RunningDevcloud):
    headers = {
        "apikey": devcloud.anon_key,
        "Authorization": f"Bearer {devcloud.anon_key}",
        "Accept": "text/event-stream",
    }
    body = {"stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    lines: list[str] = []
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST", f"{devcloud.url}/functions/v1/ai-proxy", json=body, headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line:
                lines.append(line)
    assert lines[-1] == "data: [DONE]" and len(lines) == 1 + 6 + 1 + 1  # role, words, stop, done


async def test_functions_require_a_valid_jwt(devcloud: RunningDevcloud):
    url = f"{devcloud.url}/functions/v1/ai-proxy"
    async with httpx.AsyncClient() as http:
        missing = await http.post(url, json={}, headers={"apikey": devcloud.anon_key})
        forged = await http.post(url, json={}, headers={"Authorization": "Bearer x.y.z"})
    assert missing.status_code == forged.status_code == 401
    assert forged.json()["message"] == "Invalid JWT"


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("no-such-function", {}, 404),
        ("ai-proxy", {"messages": []}, 400),
        ("ai-proxy", {"messages": [{"content": "no role"}]}, 400),
        ("agent-chat", {"agentSlug": "a"}, 400),
        ("agent-chat", {"agentSlug": "a", "userMessage": "x", "messageHistory": "nope"}, 400),
    ],
)
async def test_bad_calls_get_clear_errors(
    devcloud: RunningDevcloud, name: str, body: dict, status: int
):
    client = await acreate_client(devcloud.url, devcloud.anon_key)
    with pytest.raises(FunctionsHttpError) as caught:
        await client.functions.invoke(name, {"body": body})
    assert caught.value.status == status


# An OpenAI-compatible upstream


def fake_openai(seen: list[dict]) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        seen.append(body)
        if body.get("stream"):

            async def events() -> AsyncIterator[str]:
                for word in ("up", "stream"):
                    yield f'data: {{"choices":[{{"delta":{{"content":"{word}"}}}}]}}\n\n'
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": "from up"}}]})

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[dict]]]:
    seen: list[dict] = []
    async with serving(fake_openai(seen), host="127.0.0.1", port=0) as port:
        yield f"http://127.0.0.1:{port}/v1", seen


async def test_requests_go_to_the_ai_upstream_when_configured(devcloud_factory, upstream):
    base, seen = upstream
    dc = await devcloud_factory(ai_upstream=base)
    client = await signed_in_client(dc, "fin@example.com")
    messages = [{"role": "user", "content": "hi"}]

    raw = await client.functions.invoke(
        "ai-proxy", {"body": {"stream": True, "messages": messages}}
    )
    assert sse_payloads(raw.decode())[-1] == "[DONE]"
    assert "stream" in raw.decode()
    completion = await client.functions.invoke(
        "ai-proxy", {"body": {"messages": messages}, "responseType": "json"}
    )
    assert completion["choices"][0]["message"]["content"] == "from up"
    chat = await client.functions.invoke(
        "agent-chat",
        {"body": {"agentSlug": "x", "userMessage": "hello"}, "responseType": "json"},
    )
    assert chat["content"] == "from up"
    assert [s.get("stream", False) for s in seen] == [True, False, False]
    assert seen[2]["messages"][-1] == {"role": "user", "content": "hello"}


async def test_an_unreachable_upstream_is_a_502(devcloud_factory):
    dc = await devcloud_factory(ai_upstream="http://127.0.0.1:9/v1")
    client = await signed_in_client(dc, "gil@example.com")
    with pytest.raises(FunctionsHttpError) as caught:
        await client.functions.invoke("ai-proxy", {"body": {"messages": [{"role": "user"}]}})
    assert caught.value.status == 502
