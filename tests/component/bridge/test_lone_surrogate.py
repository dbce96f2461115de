"""Text holding a lone UTF-16 surrogate, through a real connection and a real store.

JavaScript's ``JSON.stringify`` writes a string cut in the middle of a surrogate pair (an emoji
sliced by an editor) as ``"ab\\ud83d"``: valid JSON that UTF-8, and so the store and the cloud,
cannot carry. The request is refused on its own, with its id (-32602 naming the field and
where), and nothing is stored; before, the whole frame was a parse error with id null, which
left the client waiting for its reply.
"""

from __future__ import annotations

from .conftest import Rpc

CUT_EMOJI = "ab\ud83d"  # "ab" and the first half of 😀's surrogate pair, as JS slices it


async def test_a_message_with_a_cut_emoji_is_refused_with_its_id_and_nothing_stored(
    rpc: Rpc,
) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    conv = await rpc.call("conversation.create", {"workspace_id": workspace["id"], "name": "c"})
    seq = (await rpc.call("daemon.status"))["seq"]
    params = {"conversation_id": conv["id"], "role": "user", "content": CUT_EMOJI}
    reply = await rpc.request("message.send", params)  # (json.dumps escapes it as JS does)
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["data"]["field"] == "content"
    assert "lone UTF-16 surrogate" in reply["error"]["data"]["reason"]
    payload = {"workspace_id": workspace["id"], "kind": "k", "payload": {"d": [1, CUT_EMOJI]}}
    reply = await rpc.request("task.enqueue", payload)
    assert reply["error"]["data"]["field"] == "payload"
    assert reply["error"]["data"]["reason"].endswith(" at d[1]")
    assert (await rpc.call("daemon.status"))["seq"] == seq
    assert (await rpc.call("message.list", {"conversation_id": conv["id"]}))["items"] == []
    sent = await rpc.call("message.send", {**params, "content": "ab😀"})
    assert sent["content"] == "ab😀"


async def test_in_a_batch_only_the_request_holding_it_is_refused(rpc: Rpc) -> None:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    conv = await rpc.call("conversation.create", {"workspace_id": workspace["id"], "name": "c"})
    send = {"conversation_id": conv["id"], "role": "user"}
    await rpc.send(
        [
            {
                "jsonrpc": "2.0",
                "method": "message.send",
                "id": 1,
                "params": {**send, "content": CUT_EMOJI},
            },
            {
                "jsonrpc": "2.0",
                "method": "message.send",
                "id": 2,
                "params": {**send, "content": "whole"},
            },
            {
                "jsonrpc": "2.0",
                "method": "message.send",  # a notification: no reply
                "params": {**send, "content": CUT_EMOJI},
            },
        ]  # fmt: skip
    )
    replies = {reply["id"]: reply for reply in await rpc.recv()}
    assert sorted(replies) == [1, 2]
    assert replies[1]["error"]["data"]["field"] == "content"
    assert replies[2]["result"]["content"] == "whole"
    listing = await rpc.call("message.list", {"conversation_id": conv["id"]})
    assert [m["content"] for m in listing["items"]] == ["whole"]
