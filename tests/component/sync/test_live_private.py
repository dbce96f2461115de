"""Realtime Authorization of the workspace channels against the in-process devcloud: a user of
another organisation (Eve, on a raw socket) can neither join a workspace's private channel nor
hear or reach its devices through the public channel of the same topic.

Frames of one socket arrive in order, and devcloud fans a broadcast out to every member's queue
at once: a heartbeat answered on Eve's socket after a member's broadcast reached B proves that
nothing of that broadcast was queued for her (no sleeps)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets

from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, MakeDevice, stored
from .test_live_devcloud import pair, published
from .test_live_docs import update_after

EVE = "eve@example.com"


class RawSocket:
    """Eve's hand-made Phoenix socket (vsn 1.0.0): sends frames, reads replies in order."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._ref = 0

    async def push(self, topic: str, event: str, payload: Any, join_ref: str | None) -> str:
        self._ref += 1
        ref = str(self._ref)
        frame = {"topic": topic, "event": event, "payload": payload, "ref": ref}
        frame["join_ref"] = join_ref or ref
        await self.ws.send(json.dumps(frame))
        return ref

    async def reply(self, ref: str) -> dict[str, Any]:
        """Read until the reply to ``ref`` (keeping everything read in ``frames``)."""
        while True:
            async with asyncio.timeout(10_000 * MS):
                frame = json.loads(await self.ws.recv())
            self.frames.append(frame)
            if frame["event"] == "phx_reply" and frame["ref"] == ref:
                return frame

    async def join(self, topic: str, token: str, *, private: bool) -> dict[str, Any]:
        config = {"presence": {"key": "eve", "enabled": True}, "private": private}
        ref = await self.push(topic, "phx_join", {"config": config, "access_token": token}, None)
        return await self.reply(ref)

    async def fence(self) -> None:
        """Everything the server queued for this socket so far is in ``frames``."""
        await self.reply(await self.push("phoenix", "heartbeat", {}, None))

    def seen(self, event: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] == event]


@asynccontextmanager
async def eve_socket(devcloud: RunningDevcloud) -> AsyncIterator[tuple[RawSocket, str]]:
    """Eve (her own organisation) signed in; her socket and access token."""
    await devcloud.create_user(EVE, PASSWORD, org="Evil")
    async with httpx.AsyncClient(base_url=devcloud.url, timeout=10) as http:
        response = await http.post(
            "/auth/v1/token?grant_type=password",
            json={"email": EVE, "password": PASSWORD},
            headers={"apikey": devcloud.anon_key},
        )
    response.raise_for_status()
    token = str(response.json()["access_token"])
    ws_url = devcloud.url.replace("http", "ws", 1) + "/realtime/v1/websocket"
    async with websockets.connect(f"{ws_url}?apikey={devcloud.anon_key}&vsn=1.0.0") as ws:
        yield RawSocket(ws), token


async def rest_broadcast(
    devcloud: RunningDevcloud, key: str, ws_id: str, event: str, payload: dict[str, Any]
) -> None:
    message = {"topic": f"workspace:{ws_id}", "event": event, "payload": payload, "private": True}
    async with httpx.AsyncClient(base_url=devcloud.url, timeout=10) as http:
        response = await http.post(
            "/realtime/v1/api/broadcast",
            json={"messages": [message]},
            headers={"apikey": devcloud.anon_key, "authorization": f"Bearer {key}"},
        )
    assert response.status_code == 202


async def test_an_outsider_is_refused_the_private_channel_and_hears_nothing_on_the_public_one(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    shown = published(b)
    topic = f"realtime:workspace:{ws_id}"
    opened = await a.store.documents.open(workspace_id=ws_id, name="plan")
    await a.cloud.sync_now("push")
    await b.cloud.sync_now("pull")
    await wait_for(lambda: stored(b.store.documents.get, opened["id"]), message="plan on B")
    async with eve_socket(devcloud) as (eve, token):
        refused = await eve.join(topic, token, private=True)
        assert refused["payload"] == {
            "status": "error",
            "response": {
                "reason": "Unauthorized: You do not have permissions to read from this Channel"
                f" topic: workspace:{ws_id}"
            },
        }
        # the public channel of the same topic admits her, but it is not where the devices are
        assert (await eve.join(topic, token, private=False))["payload"]["status"] == "ok"
        await a.cloud.live.set_presence(ws_id, {"active_file": "secret.md"})
        await a.store.documents.apply_update(opened["id"], update_after(opened["state"], "hush"))

        async def hushed_on_b() -> bool:  # the update was broadcast (on the private channel)
            return (await b.store.documents.get(opened["id"]))["text"] == "hush"

        await wait_for(hushed_on_b, timeout=5_000 * MS, message="the update on B")
        await a.cloud.live.broadcast(ws_id, "marker", {"n": 1})
        await wait_for(
            lambda: shown.of("broadcast.received") != [], timeout=5_000 * MS, message="marker"
        )
        await eve.fence()
    # an empty presence state (the devices track theirs on the private channel), then nothing
    assert [f for f in eve.frames if f["event"] != "phx_reply"] == [
        {"topic": topic, "event": "presence_state", "payload": {}, "ref": None}
    ]


async def test_an_outsiders_broadcasts_reach_neither_the_ui_nor_the_document(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    doc = await b.store.documents.open(workspace_id=ws_id, name="shared")
    seen, shown = len(b.events), published(b)
    forged = {
        "id": doc["id"],
        "update_id": "01900000-0000-7000-8000-0000000000e2",
        "update": base64.b64encode(update_after(doc["state"], "evil")).decode(),
        "origin": a.store.device_id,
    }
    topic = f"realtime:workspace:{ws_id}"
    async with eve_socket(devcloud) as (eve, token):
        assert (await eve.join(topic, token, private=True))["payload"]["status"] == "error"
        # not joined privately: what she pushes on the topic is refused
        body = {"type": "broadcast", "event": "doc.update", "payload": forged}
        refused = await eve.reply(await eve.push(topic, "broadcast", body, "1"))
        assert refused["payload"]["status"] == "error"
        # on the public channel it goes to nobody of the organisation
        joined = await eve.join(topic, token, private=False)
        join_ref = joined["ref"]
        await eve.push(topic, "broadcast", body, join_ref)
        fake = {"type": "broadcast", "event": "hello", "payload": {"from": "eve"}}
        await eve.push(topic, "broadcast", fake, join_ref)
        track = {"type": "presence", "event": "track", "payload": {"name": "Ada"}}
        await eve.reply(await eve.push(topic, "presence", track, join_ref))
        await eve.fence()  # her frames are handled (and fanned out) by now
        # the REST API with her token: a private broadcast her policies do not allow is dropped
        await rest_broadcast(devcloud, token, ws_id, "doc.update", forged)
        # the service role may send to the private channel: this one reaches B, after the rest
        await rest_broadcast(devcloud, devcloud.service_role_key, ws_id, "marker", {"n": 2})
        await wait_for(
            lambda: shown.of("broadcast.received") != [], timeout=5_000 * MS, message="marker"
        )
    assert [d["event"] for d in shown.of("broadcast.received")] == ["marker"]
    assert [e.topic for e in b.events[seen:] if e.topic.startswith("doc.")] == []
    assert (await b.store.documents.get(doc["id"]))["text"] == ""
    members = b.cloud.live.presence(ws_id)["members"]
    assert {m.get("device_id") for m in members} <= {a.store.device_id, b.store.device_id}
