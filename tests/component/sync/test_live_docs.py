"""Document updates through realtime broadcast (daemon/sync/live.py) against the in-process
devcloud: B's periodic pull is an hour away, so an update that reaches B without its last pull
moving came by broadcast; the later pull of the same row changes nothing."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from daemon.errors import InvalidInput
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import Device, MakeDevice, stored
from .test_live_devcloud import Published, last_pull, pair, published


def update_after(state: str, words: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.apply_update(base64.b64decode(state))
    before = doc.get_state()
    text = doc.get("content", type=Text)
    text += words
    return doc.get_update(before)


def forged_update(doc_id: str, state: str, words: str, n: int, origin: str) -> dict[str, Any]:
    """A ``doc.update`` broadcast payload adding ``words`` after ``state`` (update id ``n``),
    as a peer on the channel may send it without any row in the cloud."""
    return {
        "id": doc_id,
        "update_id": f"01900000-0000-7000-8000-{n:012x}",
        "update": base64.b64encode(update_after(state, words)).decode(),
        "origin": origin,
    }


async def marked(a: Device, ws_id: str, shown: Published) -> None:
    """Broadcast a marker from A and wait until B's UIs got it: every frame A sent before it
    has been handled by B (frames arrive in order)."""
    assert await a.cloud.live.broadcast(ws_id, "marker", {"n": 1})
    await wait_for(
        lambda: shown.of("broadcast.received") != [], timeout=5_000 * MS, message="marker"
    )
    assert [d["event"] for d in shown.of("broadcast.received")] == ["marker"]


async def shared_document(a: Device, b: Device, ws_id: str, words: str) -> str:
    """A document A creates with ``words`` in it, synced to B; its id."""
    opened = await a.store.documents.open(workspace_id=ws_id, name="plan")
    doc_id: str = opened["id"]
    await a.store.documents.apply_update(doc_id, update_after(opened["state"], words))
    await a.cloud.sync_now("push")
    await b.cloud.sync_now("pull")
    await wait_for(lambda: stored(b.store.documents.get, doc_id), message="the document on B")
    return doc_id


async def test_a_document_update_reaches_the_other_device_by_broadcast(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    shown = published(b)
    doc_id = await shared_document(a, b, ws_id, "first ")
    assert (await b.store.documents.get(doc_id))["text"] == "first "  # loaded on B

    pulled_at = await last_pull(b)
    seen = len(b.events)
    state = (await a.store.documents.get(doc_id))["state"]
    sent = await a.store.documents.apply_update(doc_id, update_after(state, "second"))

    def arrived() -> list[Any]:
        return [
            e
            for e in b.events[seen:]
            if e.topic == "doc.updated" and e.data["update_id"] == sent["update_id"]
        ]

    await wait_for(lambda: bool(arrived()), timeout=5_000 * MS, message="the update on B")
    assert await last_pull(b) == pulled_at, "it came by a pull, not by broadcast"
    assert (await b.store.documents.get(doc_id))["text"] == "first second"
    assert arrived()[0].data["origin"] == a.store.device_id
    assert shown.of("broadcast.received") == []  # never shown to UIs as a broadcast
    # the durable path delivers the same row: deduplicated, no second event
    await a.cloud.sync_now("push")
    await b.cloud.sync_now("pull")
    assert len(arrived()) == 1
    assert (await b.store.documents.get(doc_id))["text"] == "first second"


async def test_a_forged_update_for_another_workspace_is_ignored(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    shown = published(b)
    # a document of another (local-only) workspace on B: a broadcast on ws_id names it
    other = await b.store.workspaces.create(name="private")
    private = await b.store.documents.open(workspace_id=other["id"])
    seen = len(b.events)
    payload = forged_update(private["id"], private["state"], "evil", 0xE1, "someone")
    conn = a.cloud.live.connection  # a raw peer on the channel: the UI's path refuses the name
    assert conn is not None
    assert await conn.broadcast(ws_id, "doc.update", payload)
    await marked(a, ws_id, shown)
    assert [e.topic for e in b.events[seen:] if e.topic.startswith("doc.")] == []
    assert (await b.store.documents.get(private["id"]))["text"] == ""


async def test_a_ui_broadcast_cannot_pass_for_a_document_update(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """``doc.update`` is the daemon's own event on the channel: a UI's broadcast of that name
    would be merged by the peer without an outbox entry (replicas diverging for good)."""
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    shown = published(b)
    doc_id = await shared_document(a, b, ws_id, "shared")
    seen = len(b.events)
    state = (await a.store.documents.get(doc_id))["state"]
    payload = forged_update(doc_id, state, " + broadcast-only", 0xE2, a.store.device_id)
    with pytest.raises(InvalidInput) as caught:
        await a.cloud.live.broadcast(ws_id, "doc.update", payload)
    assert caught.value.field == "event" and "reserved" in caught.value.message
    await marked(a, ws_id, shown)
    assert [e.topic for e in b.events[seen:] if e.topic.startswith("doc.")] == []
    assert (await b.store.documents.get(doc_id))["text"] == "shared"


async def test_a_forged_update_claiming_the_receivers_origin_is_ignored(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """Another member of the organisation may send anything on the channel. An update naming
    B's own device as its origin was stored as B's own and broadcast again by B's relay, as
    if B had made it (it never reaches the cloud: B has no outbox entry for it)."""
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    shown = published(b)
    doc_id = await shared_document(a, b, ws_id, "shared")
    seen = len(b.events)
    state = (await a.store.documents.get(doc_id))["state"]
    payload = forged_update(doc_id, state, " + forged", 0xE3, b.store.device_id)
    conn = a.cloud.live.connection  # a raw peer on the channel: the UI's path refuses the name
    assert conn is not None
    assert await conn.broadcast(ws_id, "doc.update", payload)
    await marked(a, ws_id, shown)
    assert [e.topic for e in b.events[seen:] if e.topic.startswith("doc.")] == []
    assert (await b.store.documents.get(doc_id))["text"] == "shared"
