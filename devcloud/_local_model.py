"""A deterministic stand-in for a chat model, and OpenAI's chat-completion JSON and SSE shapes.

Pure: the same messages always give the same reply, so tests can assert on it. Ids and times
are passed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

LOCAL_MODEL = "devcloud-echo"


class BadChatRequest(ValueError):
    """A chat-completion request we cannot answer (says which field is wrong)."""


def check_messages(messages: Any) -> list[dict[str, str]]:
    """The ``messages`` of a chat request as ``[{role, content}]``; BadChatRequest if malformed."""
    if not isinstance(messages, list) or not messages:
        raise BadChatRequest("messages must be a non-empty array")
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise BadChatRequest(f"messages[{index}] must be an object with a string role")
        content = message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise BadChatRequest(f"messages[{index}].content must be a string")
        checked.append({"role": message["role"], "content": content})
    return checked


def reply_to(messages: Sequence[Mapping[str, str]]) -> str:
    """The local model's answer: it repeats the last user message and counts the turns."""
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    turns = sum(1 for m in messages if m["role"] in ("user", "assistant"))
    return f"Echo: {last_user} (turn {turns})"


def split_reply(text: str) -> list[str]:
    """Stream pieces: words with their following space, so ``"".join`` gives ``text`` back."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word + " ")
    pieces[-1] = pieces[-1][:-1]
    return [p for p in pieces if p]


def usage(messages: Sequence[Mapping[str, str]], reply: str) -> dict[str, int]:
    prompt = sum(len(m["content"].split()) for m in messages)
    completion = len(reply.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_json(
    *, completion_id: str, created: int, model: str, reply: str, token_usage: dict[str, int]
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": token_usage,
    }


def chunk_json(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, str],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed answer."""
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def stream_events(*, completion_id: str, created: int, model: str, reply: str) -> Iterator[str]:
    """The SSE text of a streamed answer: role chunk, content chunks, stop chunk, ``[DONE]``."""

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> str:
        return sse_data(
            chunk_json(
                completion_id=completion_id,
                created=created,
                model=model,
                delta=delta,
                finish_reason=finish_reason,
            )
        )

    yield chunk({"role": "assistant", "content": ""})
    for piece in split_reply(reply):
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"


def sse_data(payload: Any) -> str:
    """One SSE event carrying ``payload`` as compact JSON."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
