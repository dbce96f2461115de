"""Realtime inside CloudService (daemon/sync/live.py) against the in-process devcloud: real
SQLite stores, a real Realtime socket, real PostgreSQL change capture. B's periodic pull is an
hour away, so whatever reaches B after its catch-up pull came through realtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.backoff import Backoff
from daemon.errors import InvalidInput
from daemon.sync.cloud.errors import AuthRequired
from daemon.sync.live import MAX_BROADCAST_BYTES, DisabledLive
from daemon.sync.local import CloudNotConfigured
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, Device, MakeDevice, stored
from .transports import PushGate

ADA = "ada@example.com"
BOB = "bob@example.com"
HOUR = 3600.0


class Published(list[tuple[str, dict[str, Any]]]):
    """Records what LiveSync hands to the UIs (the bridge hub's live-only path)."""

    def __call__(self, topic: str, data: dict[str, Any]) -> None:
        self.append((topic, data))

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [data for t, data in self if t == topic]


def published(device: Device) -> Published:
    recorder = Published()
    device.cloud.live.publisher = recorder
    return recorder


async def pair(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    tmp_path: Path,
    a_transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Device, Device, str, str]:
    """Ada's device A (its requests through ``a_transport`` if given) publishes a workspace
    with a conversation; Bob's device B clones it. Returns once B has pulled it and receives
    its changes through realtime."""
    await devcloud.create_user(ADA, PASSWORD, org="Acme")
    await devcloud.create_user(BOB, PASSWORD, org="Acme", role="member")
    a = await make_device("a", a_transport, pull_interval_s=HOUR)
    b = await make_device("b", pull_interval_s=HOUR)
    await a.cloud.login(ADA, PASSWORD)
    await b.cloud.login(BOB, PASSWORD)
    ws = await a.store.workspaces.create(name="notes")
    conv = await a.store.conversations.create(workspace_id=ws["id"], name="chat")
    await a.cloud.link(workspace_id=ws["id"])
    await a.cloud.sync_now("push")
    (tmp_path / "b-notes").mkdir()
    await b.cloud.link(cloud_workspace_id=ws["id"], path=str(tmp_path / "b-notes"))
    for device in (a, b):
        await wait_for(
            lambda d=device: ws["id"] in d.cloud.live.status()["subscribed"],  # type: ignore[misc]
            timeout=10_000 * MS,
            message=f"realtime subscribed on {device.data_dir.name}",
        )
    await wait_for(lambda: stored(b.store.conversations.get, conv["id"]), timeout=10_000 * MS)
    await wait_for(lambda: pull_done(b, ws["id"]), message="B's catch-up pulls to finish")
    return a, b, ws["id"], conv["id"]


async def pull_done(device: Device, ws_id: str) -> bool:
    [status] = (await device.cloud.sync_status())["workspaces"]
    return status["workspace_id"] == ws_id and status["state"] == "idle"


async def last_pull(device: Device) -> Any:
    return (await device.cloud.sync_status())["workspaces"][0]["last_pull_at"]


async def test_a_message_reaches_the_other_device_through_realtime(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, conv_id = await pair(devcloud, make_device, tmp_path)
    pulled_at = await last_pull(b)
    seen = len(b.events)
    message = await a.store.messages.create(conversation_id=conv_id, role="user", content="hi")

    def arrived() -> bool:
        return any(
            e.topic == "message.created" and e.data["id"] == message["id"] for e in b.events[seen:]
        )

    await wait_for(arrived, timeout=5_000 * MS, message="the message on B")
    assert await last_pull(b) == pulled_at, "it came by a pull, not through realtime"
    [row] = [m for m in (await b.store.messages.list(conversation_id=conv_id)).items]
    assert (row["id"], row["content"], row["role"]) == (message["id"], "hi", "user")
    assert b.cloud.cloud_status()["realtime"] == {"connected": True, "subscribed": [ws_id]}


async def test_the_echo_of_our_own_write_tells_no_ui(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, conv_id = await pair(devcloud, make_device, tmp_path)
    first = await a.store.messages.create(conversation_id=conv_id, role="user", content="one")
    await a.store.conversations.update(conv_id, name="renamed on A")
    # B receives both through the same channel A listens on; after B has them, a marker
    # written on B and seen by A proves A has handled its own echoes (frames come in order).
    await wait_for(lambda: "conversation.updated" in b.topics(), timeout=5_000 * MS)
    marker = await b.store.messages.create(conversation_id=conv_id, role="user", content="m")

    def marker_on_a() -> bool:
        return any(e.topic == "message.created" and e.data["id"] == marker["id"] for e in a.events)

    await wait_for(marker_on_a, timeout=5_000 * MS, message="B's marker on A")
    created = [e for e in a.events if e.topic == "message.created" and e.data["id"] == first["id"]]
    updated = [e for e in a.events if e.topic == "conversation.updated"]
    assert len(created) == 1 and len(updated) == 1, "an echo was announced again"


async def test_a_late_push_into_a_row_this_device_wrote_last_reaches_it_through_realtime(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    tmp_path: Path,
    cloud_rows: Callable[..., Awaitable[list[Any]]],
) -> None:
    """A edits the description while its push cannot go out, B then renames: the cloud row
    ends with A's description and B's newer name, so its ``origin`` is B. The hint of A's
    push must still bring the description to B (B used to skip it as its own echo)."""
    gate = PushGate()
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path, gate)
    gate.hold = True
    try:
        await a.store.workspaces.update(ws_id, description="from a")  # clock older than B's
        await wait_for(lambda: gate.held == 1, timeout=5_000 * MS, message="A's push held")
        seen = len(b.events)
        await b.store.workspaces.update(ws_id, name="renamed on b")
        await wait_for(lambda: pushed(b), timeout=5_000 * MS, message="B's push")
        pulled_at = await last_pull(b)
    finally:
        gate.release.set()

    async def description_on_b() -> bool:
        return (await b.store.workspaces.get(ws_id))["description"] == "from a"

    await wait_for(description_on_b, timeout=5_000 * MS, message="A's description on B")
    assert await last_pull(b) == pulled_at, "it came by a pull, not through realtime"
    [row] = await cloud_rows("SELECT origin FROM public.workspaces WHERE id = $1::uuid", ws_id)
    assert row["origin"] == b.store.device_id  # (the case: the last writer is B)
    # B's rename, then A's description: the echo of B's own push (in the cloud's commit
    # order, before A's) told no UI again
    updated = [e.data for e in b.events[seen:] if e.topic == "workspace.updated"]
    assert [(d["name"], d["description"]) for d in updated] == [
        ("renamed on b", None),
        ("renamed on b", "from a"),
    ]


async def pushed(device: Device) -> bool:
    return (await device.cloud.sync_status())["outbox"] == 0


async def test_presence_shows_updates_and_leaves(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    on_b = published(b)

    def devices() -> set[str]:
        return {m["device_id"] for m in b.cloud.live.presence(ws_id)["members"]}

    await wait_for(lambda: devices() == {a.store.device_id, b.store.device_id})
    shown = await a.cloud.live.set_presence(
        ws_id, {"status": "busy", "active_file": "notes.md", "cursor": {"line": 7}}
    )
    assert shown["presence"]["status"] == "busy"

    def ada_on_b() -> dict[str, Any] | None:
        members = b.cloud.live.presence(ws_id)["members"]
        return next((m for m in members if m["device_id"] == a.store.device_id), None)

    await wait_for(lambda: (ada_on_b() or {}).get("active_file") == "notes.md")
    ada = ada_on_b()
    assert ada is not None
    assert (ada["status"], ada["cursor"], ada["display_name"]) == ("busy", {"line": 7}, "ada")
    assert ada["self"] is False
    await wait_for(  # the UIs are shown it too (not necessarily in the same loop turn)
        lambda: any(
            any(m.get("active_file") == "notes.md" for m in data["members"])
            for data in on_b.of("presence.changed")
        ),
        message="a presence.changed showing the file",
    )
    await a.cloud.logout()  # A's socket closes: B sees A leave
    await wait_for(lambda: devices() == {b.store.device_id}, message="A gone on B")
    last = on_b.of("presence.changed")[-1]
    assert last["workspace_id"] == ws_id
    assert [m["device_id"] for m in last["members"]] == [b.store.device_id]


async def test_presence_list_right_after_presence_set_shows_what_was_set(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """Connected, the channel's echo of a track comes a round trip later, and a second track
    within a second is held by the coalescing: this device is shown as it last set itself all
    the same, at once, in presence.list and in presence.changed."""
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    on_a = published(a)

    def mine() -> list[tuple[str | None, Any]]:
        members = a.cloud.live.presence(ws_id)["members"]
        return [(m["active_file"], m["cursor"]) for m in members if m["self"]]

    def bob_listed() -> bool:
        members = a.cloud.live.presence(ws_id)["members"]
        return b.store.device_id in {m["device_id"] for m in members}

    await wait_for(bob_listed, message="B in A's presence")
    for n, name in enumerate(("one.md", "two.md", "three.md")):  # the 2nd and 3rd are held
        await a.cloud.live.set_presence(ws_id, {"active_file": name, "cursor": {"line": n}})
        assert mine() == [(name, {"line": n})]
        [me] = [m for m in on_a.of("presence.changed")[-1]["members"] if m["self"]]
        assert (me["active_file"], me["cursor"]) == (name, {"line": n})
    assert bob_listed()  # the others are still those the channel shows
    shown = len(on_a.of("presence.changed"))

    def echoed() -> bool:  # the channel (B too) shows A's last value: its echo came
        conn = a.cloud.live.connection
        return conn is not None and [
            m.active_file for m in conn.members(ws_id) if m.device_id == a.store.device_id
        ] == ["three.md"]

    await wait_for(echoed, message="the echo of the last track")
    assert mine() == [("three.md", {"line": 2})]
    assert len(on_a.of("presence.changed")) == shown  # the echoes changed nothing shown


async def test_broadcast_reaches_the_other_device_and_is_never_stored(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    on_a, on_b = published(a), published(b)
    seq_before = await b.store.changelog.last_seq()
    result = await a.cloud.live.broadcast(ws_id, "cursor", {"line": 3, "file": "a.md"})
    assert result == {"workspace_id": ws_id, "event": "cursor", "sent": True}
    await wait_for(lambda: bool(on_b.of("broadcast.received")), timeout=5_000 * MS)
    assert on_b.of("broadcast.received") == [
        {"workspace_id": ws_id, "event": "cursor", "payload": {"line": 3, "file": "a.md"}}
    ]
    assert on_a.of("broadcast.received") == []  # no echo to the sender
    stored = await b.store.changelog.read_since(seq_before, 1000)  # status events may come
    assert not [e for e in stored if e.topic.startswith(("broadcast.", "presence."))]
    assert not [e for e in b.events if e.topic.startswith(("broadcast.", "presence."))]


async def test_size_limits_count_the_utf8_json_the_frame_carries(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """16 KiB of cursor and 256 KiB of payload as UTF-8 JSON: non-ASCII text escaped as
    ``\\uXXXX`` would count 2 to 3 times over and be refused well below the limit."""
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)
    on_b = published(b)
    cursor = "é" * 3000  # 6 002 bytes as UTF-8 JSON (18 002 escaped)
    await a.cloud.live.set_presence(ws_id, {"cursor": cursor})
    with pytest.raises(InvalidInput) as caught:  # 16 386 bytes: one code point too many
        await a.cloud.live.set_presence(ws_id, {"cursor": "\U0001f600" * 4096})
    assert caught.value.field == "cursor"

    def cursor_on_b() -> Any:
        members = b.cloud.live.presence(ws_id)["members"]
        return next((m["cursor"] for m in members if m["device_id"] == a.store.device_id), None)

    await wait_for(lambda: cursor_on_b() == cursor, message="A's cursor on B")
    text = "中" * 50_000  # 150 010 bytes as UTF-8 JSON (300 010 escaped)
    assert (await a.cloud.live.broadcast(ws_id, "text", {"t": text}))["sent"]
    room = MAX_BROADCAST_BYTES - len('{"t":""}')
    full = "中" * (room // 3) + "a" * (room % 3)  # exactly the limit
    with pytest.raises(InvalidInput) as caught:
        await a.cloud.live.broadcast(ws_id, "text", {"t": full + "a"})
    assert caught.value.field == "payload"
    assert (await a.cloud.live.broadcast(ws_id, "text", {"t": full}))["sent"]
    await wait_for(lambda: len(on_b.of("broadcast.received")) == 2, timeout=5_000 * MS)
    assert on_b.of("broadcast.received") == [
        {"workspace_id": ws_id, "event": "text", "payload": {"t": t}} for t in (text, full)
    ]


async def test_bad_calls_are_refused_and_change_nothing(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, _ = await pair(devcloud, make_device, tmp_path)

    def my_statuses() -> list[str]:
        return [m["status"] for m in a.cloud.live.presence(ws_id)["members"] if m["self"]]

    await wait_for(lambda: my_statuses() == ["active"], message="A's own presence")
    unlinked = await a.store.workspaces.create(name="private")
    with pytest.raises(InvalidInput) as caught:
        await a.cloud.live.set_presence(unlinked["id"], {"status": "active"})
    assert caught.value.field == "workspace_id"
    with pytest.raises(InvalidInput):
        await a.cloud.live.broadcast("not-a-uuid", "e", {})
    with pytest.raises(InvalidInput) as caught:
        await a.cloud.live.set_presence(ws_id, {"status": "sleeping"})
    assert caught.value.field == "status"
    with pytest.raises(InvalidInput):
        await a.cloud.live.broadcast(ws_id, "", {})
    with pytest.raises(InvalidInput):
        await a.cloud.live.broadcast(ws_id, "big", {"x": "y" * 300_000})
    await a.cloud.live.set_presence(ws_id, {"active_file": "later.md"})  # keeps the status
    await wait_for(
        lambda: (
            [m["active_file"] for m in a.cloud.live.presence(ws_id)["members"] if m["self"]]
            == ["later.md"]
        )
    )
    assert my_statuses() == ["active"]  # the refused status changed nothing
    await a.cloud.logout()
    with pytest.raises(AuthRequired):
        a.cloud.live.presence(ws_id)
    with pytest.raises(AuthRequired):
        await a.cloud.live.broadcast(ws_id, "e", {})
    assert a.cloud.cloud_status()["realtime"] == {"connected": False, "subscribed": []}
    off = DisabledLive()
    with pytest.raises(CloudNotConfigured):
        off.presence(ws_id)
    with pytest.raises(CloudNotConfigured):
        await off.set_presence(ws_id, {})


async def test_unlink_leaves_the_channel(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, ws_id, conv_id = await pair(devcloud, make_device, tmp_path)
    await b.cloud.unlink(ws_id)
    assert b.cloud.live.status()["subscribed"] == []
    await wait_for(
        lambda: (
            [m["device_id"] for m in a.cloud.live.presence(ws_id)["members"]] == [a.store.device_id]
        ),
        message="B gone from A's presence",
    )
    with pytest.raises(InvalidInput):
        b.cloud.live.presence(ws_id)


async def test_realtime_lost_reconnects_once_a_sync_reaches_the_cloud(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> None:
    """Realtime's socket is lost while sync goes on: the next push that reaches the cloud ends
    realtime's reconnect backoff (here ~59 s, beyond wait_for's timeout), so live changes flow
    again at once, not up to 30 s after sync recovered."""
    await devcloud.create_user(ADA, PASSWORD, org="Acme")
    a = await make_device("a", pull_interval_s=HOUR)
    a.cloud.live._options.update(backoff=Backoff(base_s=60.0, cap_s=60.0), rand=lambda: 0.99)
    await a.cloud.login(ADA, PASSWORD)
    ws = await a.store.workspaces.create(name="notes")
    await a.cloud.link(workspace_id=ws["id"])
    await a.cloud.sync_now("push")
    await wait_for(lambda: a.cloud.live.status()["subscribed"] == [ws["id"]], message="joined")
    conn = a.cloud.live.connection
    assert conn is not None
    lost = conn._ws  # (the socket, closed here as a network blip would)
    assert lost is not None
    await lost.close()
    await a.store.conversations.create(workspace_id=ws["id"], name="chat")  # a push follows

    def rejoined() -> bool:
        return conn._ws not in (None, lost) and a.cloud.live.status()["subscribed"] == [ws["id"]]

    await wait_for(rejoined, message="a new socket, the workspace joined again")


async def test_while_the_cloud_is_unreachable_presence_still_lists_this_device(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> None:
    """presence.list is "this device included": during an outage it shows this device as it
    last set it (others are unknown), and a change made offline shows at once."""
    await devcloud.create_user(ADA, PASSWORD, org="Acme")
    a = await make_device("a", pull_interval_s=HOUR)
    a.cloud.live._options.update(backoff=Backoff(base_s=60.0, cap_s=60.0), rand=lambda: 0.99)
    on_a = published(a)
    await a.cloud.login(ADA, PASSWORD)
    ws = await a.store.workspaces.create(name="notes")
    ws_id = ws["id"]
    await a.cloud.link(workspace_id=ws_id)
    await a.cloud.sync_now("push")
    await wait_for(lambda: a.cloud.live.status()["subscribed"] == [ws_id], message="joined")
    await a.cloud.live.set_presence(ws_id, {"status": "busy", "cursor": {"line": 1}})

    def me() -> list[tuple[str, bool, str, Any, str | None]]:
        return [
            (m["device_id"], m["self"], m["status"], m["cursor"], m["active_file"])
            for m in a.cloud.live.presence(ws_id)["members"]
        ]

    online = [(a.store.device_id, True, "busy", {"line": 1}, None)]
    assert me() == online  # at once, as set
    conn = a.cloud.live.connection
    assert conn is not None

    def echoed() -> bool:
        return [(m.device_id, m.status) for m in conn.members(ws_id)] == [
            (a.store.device_id, "busy")
        ]

    await wait_for(echoed, message="A's own presence through the channel")
    assert conn._ws is not None
    await conn._ws.close()  # the cloud unreachable: the reconnect waits ~59 s
    await wait_for(lambda: not a.cloud.live.status()["connected"], message="A offline")
    assert me() == online
    [shown] = a.cloud.live.presence(ws_id)["members"]
    assert shown["display_name"] == "ada"
    assert on_a.of("presence.changed")[-1] == {
        "workspace_id": ws_id,
        "members": [shown],
        "truncated": 0,
    }
    await a.cloud.live.set_presence(ws_id, {"active_file": "offline.md"})
    assert me() == [(a.store.device_id, True, "busy", {"line": 1}, "offline.md")]
    assert on_a.of("presence.changed")[-1]["members"] == a.cloud.live.presence(ws_id)["members"]
