"""Realtime end to end: `syncd run` daemons A and B on a devcloud subprocess, a UI on B.

A write on A reaches B's UI through realtime (not the 30 s periodic pull: it arrives within
seconds and B's last pull stays where it was); presence and broadcasts from A reach B's UI as
ephemeral events that B never stores."""

from __future__ import annotations

import time
from typing import Any

from rt_e2e_kit import Lab, linked_pair, workspace_sync

from tests.helpers import MS, wait_for

WITHIN = 5_000 * MS  # realtime: a few seconds at most (the periodic pull is 30 s away)


async def test_a_message_written_on_a_reaches_a_ui_on_b_through_realtime(lab: Lab) -> None:
    cloud = await lab.start_cloud()
    a, b, ws_id, conv_id = await linked_pair(lab, cloud)
    ui = await lab.ui(b)
    await ui.subscribe(["message.*"])
    pulled_at = (await workspace_sync(b, ws_id))["last_pull_at"]
    for n in range(3):
        written_at = time.monotonic()
        message = await a.send(conv_id, f"hello {n}")

        def arrived(message_id: str = message["id"]) -> bool:
            return any(e.data["id"] == message_id for e in ui.of("message.created"))

        await wait_for(arrived, timeout=WITHIN, message=f"message {n} on B's UI")
        [event] = [e for e in ui.of("message.created") if e.data["id"] == message["id"]]
        assert event.data["content"] == f"hello {n}" and not event.ephemeral
        assert event.at - written_at < WITHIN
    # B has not pulled since before the writes: the messages came through realtime.
    assert (await workspace_sync(b, ws_id))["last_pull_at"] == pulled_at
    assert [m["content"] for m in await b.messages(conv_id)] == ["hello 0", "hello 1", "hello 2"]


async def test_presence_and_broadcast_reach_b_and_are_never_stored(lab: Lab) -> None:
    cloud = await lab.start_cloud()
    a, b, ws_id, _ = await linked_pair(lab, cloud)
    ui = await lab.ui(b)
    sub = await ui.subscribe(["presence.*", "broadcast.*"])

    def ada_shown() -> dict[str, Any] | None:
        changes = ui.of("presence.changed", sub)
        members = changes[-1].data["members"] if changes else []
        return next((m for m in members if m["device_id"] == a_device), None)

    a_device = (await a.call("daemon.status"))["device_id"]
    await a.call(
        "presence.set",
        {"workspace_id": ws_id, "status": "busy", "active_file": "plan.md", "cursor": {"l": 4}},
    )
    await wait_for(
        lambda: (ada_shown() or {}).get("active_file") == "plan.md",
        timeout=WITHIN,
        message="A's presence on B's UI",
    )
    ada = ada_shown()
    assert ada is not None and (ada["status"], ada["cursor"], ada["self"]) == (
        "busy",
        {"l": 4},
        False,
    )
    listed = await b.call("presence.list", {"workspace_id": ws_id})
    assert {m["device_id"] for m in listed["members"]} >= {a_device}

    sent = await a.call(
        "broadcast.send", {"workspace_id": ws_id, "event": "cursor", "payload": {"line": 9}}
    )
    assert sent["sent"] is True
    await wait_for(lambda: bool(ui.of("broadcast.received", sub)), timeout=WITHIN)
    [got] = ui.of("broadcast.received", sub)
    assert got.data == {"workspace_id": ws_id, "event": "cursor", "payload": {"line": 9}}
    assert got.ephemeral and all(e.ephemeral for e in ui.of("presence.changed"))

    # Never stored: a replay of B's whole changelog has neither.
    replay = await ui.subscribe(["**"], since=0)
    await b.call("workspace.update", {"id": ws_id, "description": "marker"})
    await wait_for(
        lambda: any(e.subscription == replay and e.topic == "workspace.updated" for e in ui.events),
        message="the replay to reach the marker",
    )
    replayed = {e.topic for e in ui.events if e.subscription == replay}
    assert not replayed & {"presence.changed", "broadcast.received"}

    await a.stop()  # A's socket closes: B's UI sees A leave
    await wait_for(lambda: ada_shown() is None, timeout=10_000 * MS, message="A gone on B")
    b_device = (await b.call("daemon.status"))["device_id"]
    assert [m["device_id"] for m in ui.of("presence.changed", sub)[-1].data["members"]] == [
        b_device
    ]
