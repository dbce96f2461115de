"""Opening a shared document on a second device joins it, against the in-process devcloud:
nobody calls ``sync_now``, and both devices' periodic pulls are an hour away, so what moves
moved because a commit woke the push and realtime brought it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.errors import NotFound
from daemon.store import Store
from daemon.store.ids import uuid7
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import MakeDevice
from .test_live_devcloud import pair
from .test_live_docs import update_after

WAIT = 20_000 * MS


async def type_into(store: Store, doc_id: str, words: str) -> None:
    state = (await store.documents.get(doc_id))["state"]
    await store.documents.apply_update(doc_id, update_after(state, words))


async def text(store: Store, doc_id: str) -> str:
    return str((await store.documents.get(doc_id))["text"])


async def test_opening_the_id_before_the_document_arrived_joins_it(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: Any
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    doc_id = uuid7()
    # Bob's UI opens the id Ada's UI told it, before her document reached his daemon
    mine = await b.store.documents.open(doc_id)
    assert mine["workspace_id"] is None
    await type_into(b.store, doc_id, "bob ")
    # Ada creates it: the creation alone reaches the cloud (no write of hers wakes the push)
    await a.store.documents.open(doc_id, workspace_id=ws_id, name="shared.md")

    async def in_cloud() -> bool:
        return bool(await cloud_rows("SELECT 1 FROM documents WHERE id = $1::uuid", doc_id))

    await wait_for(in_cloud, timeout=WAIT, message="Ada's new document in the cloud")
    await type_into(a.store, doc_id, "ada ")

    async def converged() -> bool:
        texts = {await text(a.store, doc_id), await text(b.store, doc_id)}
        return len(texts) == 1 and {"ada", "bob"} <= set(texts.pop().split())

    await wait_for(converged, timeout=WAIT, message="both devices to hold both edits")
    opened = await b.store.documents.open(doc_id)
    assert (opened["workspace_id"], opened["name"]) == (ws_id, "shared.md")
    # Bob's later edits are shared too
    await type_into(b.store, doc_id, "again")

    async def reached_ada() -> bool:
        return "again" in await text(a.store, doc_id)

    await wait_for(reached_ada, timeout=WAIT, message="Bob's later edit on Ada's device")
    [cloud] = await cloud_rows("SELECT name FROM documents WHERE id = $1::uuid", doc_id)
    assert cloud["name"] == "shared.md"


async def test_joining_with_the_workspace_never_renames_the_document(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: Any
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    opened = await a.store.documents.open(workspace_id=ws_id, name="roadmap.md")
    doc_id = opened["id"]
    await a.store.documents.apply_update(doc_id, update_after(opened["state"], "roadmap"))
    joined = await b.store.documents.open(doc_id, workspace_id=ws_id)  # before the row came
    assert (joined["workspace_id"], joined["name"]) == (ws_id, "")

    async def b_has_it() -> bool:
        got = await b.store.documents.open(doc_id)
        return bool(got["name"] == "roadmap.md" and await text(b.store, doc_id) == "roadmap")

    await wait_for(b_has_it, timeout=WAIT, message="Ada's document, named, on Bob's device")

    # Bob's creation row went out (his push was woken) and renamed nothing
    async def b_pushed() -> bool:
        return (await b.cloud.sync_status())["outbox"] == 0

    await wait_for(b_pushed, timeout=WAIT, message="Bob's outbox to drain")
    [cloud] = await cloud_rows("SELECT name FROM documents WHERE id = $1::uuid", doc_id)
    assert cloud["name"] == "roadmap.md"
    assert (await a.store.documents.open(doc_id))["name"] == "roadmap.md"


async def test_opening_a_local_only_document_with_the_workspace_shares_it(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: Any
) -> None:
    """A document written offline without a workspace, then opened with one, is adopted into
    it (as a pulled row would adopt it) and reaches the other device, edits and all."""
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    doc_id = uuid7()
    await a.store.documents.open(doc_id)
    await type_into(a.store, doc_id, "drafted offline")
    adopted = await a.store.documents.open(doc_id, workspace_id=ws_id)
    assert adopted["workspace_id"] == ws_id

    async def in_cloud() -> bool:
        found = await cloud_rows("SELECT workspace_id FROM documents WHERE id = $1::uuid", doc_id)
        return [str(r["workspace_id"]) for r in found] == [ws_id]

    await wait_for(in_cloud, timeout=WAIT, message="the adopted document in the cloud")

    async def on_b() -> bool:
        try:
            return await text(b.store, doc_id) == "drafted offline"
        except NotFound:
            return False

    await wait_for(on_b, timeout=WAIT, message="the adopted document's text on Bob's device")
    assert (await b.store.documents.open(doc_id))["workspace_id"] == ws_id
