"""The deterministic local chat model and OpenAI's JSON/SSE shapes."""

from __future__ import annotations

import json
import uuid

import pytest

from devcloud._local_model import (
    BadChatRequest,
    check_messages,
    completion_json,
    reply_to,
    split_reply,
    stream_events,
    usage,
)
from devcloud.functions import uuid7


def test_reply_is_deterministic_and_uses_the_last_user_message():
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    assert reply_to(messages) == reply_to(list(messages)) == "Echo: second (turn 3)"


@pytest.mark.parametrize("text", ["one", "a b  c", " lead", "trail ", "Echo: x (turn 1)"])
def test_split_reply_round_trips(text):
    assert "".join(split_reply(text)) == text


@pytest.mark.parametrize(
    "messages",
    [None, [], "hi", [{"content": "x"}], [{"role": "user", "content": 5}], ["x"]],
)
def test_bad_messages(messages):
    with pytest.raises(BadChatRequest):
        check_messages(messages)


def test_missing_content_is_empty():
    assert check_messages([{"role": "user"}]) == [{"role": "user", "content": ""}]


def test_stream_events_are_chunks_then_done():
    events = list(stream_events(completion_id="c1", created=5, model="m", reply="a b"))
    assert events[-1] == "data: [DONE]\n\n" and all(e.endswith("\n\n") for e in events)
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "a "},
        {"content": "b"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert {c["id"] for c in chunks} == {"c1"}


def test_completion_json_and_usage():
    messages = [{"role": "user", "content": "x y"}]
    body = completion_json(
        completion_id="c", created=1, model="m", reply="r", token_usage=usage(messages, "r")
    )
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "r"}
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


def test_uuid7_is_version_7_and_time_ordered():
    ids = [uuid7() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)  # the millisecond prefix
