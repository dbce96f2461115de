"""Collaborative documents between two devices of one user, through a real devcloud: a document
made before linking arrives after the link, concurrent offline edits converge (CRDT), a remote
update reaches a subscribed UI as ``doc.updated``, and the realtime broadcast delivers an
update to the other device long before any pull would."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from pycrdt import Doc, Text
from sync_kit import CloudProcess, DaemonProcess

from tests.helpers import wait_for

EMAIL = "doc@example.com"


async def edit(daemon: DaemonProcess, doc_id: str, words: str) -> dict[str, Any]:
    """Append ``words`` to the document's text the way an editor does: from the state it was
    given, one Yjs update sent with doc.update."""
    opened = await daemon.call("doc.open", {"id": doc_id})
    doc: Doc[Any] = Doc()
    doc.apply_update(base64.b64decode(opened["state"]))
    text = doc.get("content", type=Text)
    before = doc.get_state()
    text += words
    update = base64.b64encode(doc.get_update(before)).decode()
    return dict(await daemon.call("doc.update", {"id": doc_id, "update": update}))


async def text_of(daemon: DaemonProcess, doc_id: str) -> str:
    return str((await daemon.call("doc.get", {"id": doc_id}))["text"])


async def succeeds(daemon: DaemonProcess, method: str) -> bool:
    return (await daemon.call(method))["error"] is None


async def test_documents_converge_across_devices(lab: Any, cloud: CloudProcess) -> None:
    a, b = await lab.two_devices(EMAIL)
    # A document written before its workspace is linked
    ws = await a.call("workspace.create", {"name": "notes"})
    opened = await a.call("doc.open", {"workspace_id": ws["id"], "name": "plan"})
    doc_id = opened["id"]
    for word in ("alpha ", "beta "):
        await edit(a, doc_id, word)
    await a.call("cloud.link", {"workspace_id": ws["id"]})
    await a.push()
    assert await cloud.count("documents", ws["id"]) == 1
    assert await cloud.count("doc_updates", ws["id"]) == 1  # all of it as ONE update
    await b.clone(ws["id"], lab.root / "b-notes")
    await b.pull()
    assert await text_of(b, doc_id) == "alpha beta "
    got = await b.call("doc.open", {"id": doc_id})
    assert (got["name"], got["workspace_id"]) == ("plan", ws["id"])

    events: list[Any] = []
    stream = await b.client.subscribe(["doc.*", "broadcast.*"])

    async def collect() -> None:
        async for event in stream:
            events.append(event)

    collector = asyncio.create_task(collect())
    try:
        # Both edit while the cloud is down
        await cloud.stop()
        from_a = await edit(a, doc_id, "from-a ")
        await edit(b, doc_id, "from-b ")
        await cloud.start()
        for _ in range(2):
            for d in (a, b):  # each retries on its own backoff: wait until a push gets through
                await wait_for(lambda d=d: succeeds(d, "sync.push"), timeout=60, message="push")
            for d in (a, b):
                await wait_for(lambda d=d: succeeds(d, "sync.pull"), timeout=60, message="pull")
        text_a, text_b = await text_of(a, doc_id), await text_of(b, doc_id)
        assert text_a == text_b
        assert "from-a " in text_a and "from-b " in text_a and text_a.startswith("alpha beta ")
        # B's UI saw A's update as doc.updated (and never as a broadcast)
        await wait_for(
            lambda: any(e.data.get("update_id") == from_a["update_id"] for e in events),
            message="A's update on B's UI",
        )
        seen = [e for e in events if e.data.get("update_id") == from_a["update_id"]]
        assert [e.topic for e in seen] == ["doc.updated"]
        assert seen[0].data["id"] == doc_id
        assert not [e for e in events if e.topic.startswith("broadcast.")]
        # a further pull changes nothing
        assert (await b.pull())["changed"] == 0
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)


async def test_an_update_reaches_the_other_device_by_broadcast(
    lab: Any, cloud: CloudProcess
) -> None:
    a, b = await lab.two_devices(EMAIL)
    ws = await a.call("workspace.create", {"name": "live"})
    doc_id = (await a.call("doc.open", {"workspace_id": ws["id"], "name": "d"}))["id"]
    await edit(a, doc_id, "start ")
    await a.call("cloud.link", {"workspace_id": ws["id"]})
    await a.push()
    await b.clone(ws["id"], lab.root / "b-live")
    await b.pull()
    assert await text_of(b, doc_id) == "start "

    async def joined(d: DaemonProcess) -> bool:
        status = await d.call("cloud.status")
        return ws["id"] in status["realtime"]["subscribed"]

    await wait_for(lambda: joined(a), message="A joined")
    await wait_for(lambda: joined(b), message="B joined")
    events: list[Any] = []
    stream = await b.client.subscribe(["**"])

    async def collect() -> None:
        async for event in stream:
            events.append(event)

    collector = asyncio.create_task(collect())
    try:
        # B pulls every 30 s and gets no postgres_changes for documents: an update that shows
        # within 10 s came by broadcast
        sent = await edit(a, doc_id, "live ")
        await wait_for(
            lambda: any(e.data.get("update_id") == sent["update_id"] for e in events),
            message="the broadcast update on B",
        )
        assert await text_of(b, doc_id) == "start live "
        assert not [e for e in events if e.topic == "broadcast.received"]
        # the durable path brings the same row later: deduplicated, nothing changes
        await a.push()
        before = len([e for e in events if e.topic == "doc.updated"])
        assert (await b.pull())["error"] is None
        assert len([e for e in events if e.topic == "doc.updated"]) == before
        assert await text_of(b, doc_id) == "start live "
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
