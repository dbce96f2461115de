"""Text holding U+0000, through a real connection and a real store (the store's input checks
refuse it, whoever writes: daemon/store/base.py NUL_TEXT).

PostgreSQL's text and jsonb cannot hold U+0000: a message carrying one was accepted locally and
then failed every push of its workspace (22P05), blocking every row behind it for good. Such
text is refused (-32602 naming the field, and where in a JSON value) and nothing is stored.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Rpc


async def _refused(rpc: Rpc, method: str, params: dict[str, Any], field: str) -> str:
    reply = await rpc.request(method, params)
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["data"]["field"] == field
    reason: str = reply["error"]["data"]["reason"]
    assert "U+0000" in reason
    return reason


async def test_a_message_holding_nul_is_refused_and_nothing_is_stored(rpc: Rpc) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    conv = await rpc.call("conversation.create", {"workspace_id": workspace["id"], "name": "c"})
    seq = (await rpc.call("daemon.status"))["seq"]
    params = {"conversation_id": conv["id"], "role": "user", "content": "nul\x00here"}
    await _refused(rpc, "message.send", params, "content")
    await _refused(rpc, "workspace.update", {"id": workspace["id"], "name": "\x00"}, "name")
    update = {"id": workspace["id"], "description": "a\x00", "shared_memory": {"k": 1}}
    await _refused(rpc, "workspace.update", update, "description")
    memory = {"id": workspace["id"], "shared_memory": {"k": ["\x00"]}}
    await _refused(rpc, "workspace.update", memory, "shared_memory")
    named = {"workspace_id": workspace["id"], "name": "c\x00"}
    await _refused(rpc, "conversation.create", named, "name")
    assert (await rpc.call("daemon.status"))["seq"] == seq
    listing = await rpc.call("message.list", {"conversation_id": conv["id"]})
    assert listing["items"] == []
    sent = await rpc.call("message.send", {**params, "content": "no nul: \\u0000 is text"})
    assert sent["content"] == "no nul: \\u0000 is text"


@pytest.mark.parametrize(
    ("payload", "where"),
    [({"deep": [{"x": "a\x00"}]}, "at deep[0].x"), ({"k\x00": 1}, "in a key")],
)
async def test_nul_inside_a_json_value_is_refused_where_it_is(
    rpc: Rpc, payload: dict[str, Any], where: str
) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    params = {"workspace_id": workspace["id"], "kind": "k", "payload": payload}
    reason = await _refused(rpc, "task.enqueue", params, "payload")
    assert reason.endswith(where), reason
    assert (await rpc.call("task.list", {"workspace_id": workspace["id"]}))["items"] == []
    text = {"t": "\\u0000 is text", "\\u0000": 1}  # a backslash, then u0000: no NUL
    task = await rpc.call("task.enqueue", {**params, "payload": text})
    assert task["payload"] == text
