"""Publishing through `syncd run` daemons: device A publishes a workspace with a history (it
joins the workspace's realtime channel once that history is pushed, service.py), then a write
on device B reaches A through realtime, not through a pull. (The order of push and join, a
write made elsewhere during the publish and a publish while the cloud is down are covered
deterministically in tests/component/sync/test_publish_join.py.)"""

from __future__ import annotations

from typing import Any

from sync_kit import CloudProcess, DaemonProcess

from tests.helpers import MS, wait_for

WITHIN = 20_000 * MS
HISTORY = 300


async def realtime(daemon: DaemonProcess) -> dict[str, Any]:
    return dict((await daemon.call("cloud.status"))["realtime"])


async def subscribed(daemon: DaemonProcess, ws_id: str) -> bool:
    state = await realtime(daemon)
    return bool(state["connected"]) and ws_id in state["subscribed"]


async def workspace_status(daemon: DaemonProcess, ws_id: str) -> dict[str, Any]:
    status = await daemon.call("sync.status")
    return next(w for w in status["workspaces"] if w["workspace_id"] == ws_id)


async def idle(daemon: DaemonProcess, ws_id: str) -> bool:
    status = await workspace_status(daemon, ws_id)
    return status["state"] == "idle" and status["last_pull_at"] is not None


async def test_a_published_workspace_receives_changes_through_realtime(
    lab: Any, cloud: CloudProcess
) -> None:
    a, b = await lab.two_devices("pat@example.com")
    ws = await a.call("workspace.create", {"name": "published"})
    conv = await a.call("conversation.create", {"workspace_id": ws["id"], "name": "c"})
    for n in range(HISTORY):
        await a.send(conv["id"], f"history {n}")
    await a.call("cloud.link", {"workspace_id": ws["id"]})
    await wait_for(lambda: subscribed(a, ws["id"]), timeout=WITHIN, message="A subscribed")
    await wait_for(lambda: idle(a, ws["id"]), timeout=WITHIN, message="A's catch-up pull")
    assert await cloud.count("messages", ws["id"]) == HISTORY
    await b.clone(ws["id"], lab.root / "b-folder")
    await wait_for(lambda: subscribed(b, ws["id"]), timeout=WITHIN, message="B subscribed")
    await wait_for(lambda: idle(b, ws["id"]), timeout=WITHIN, message="B's first sync")
    pulled_at = (await workspace_status(a, ws["id"]))["last_pull_at"]
    sent = await b.send(conv["id"], "from b")
    await b.push()

    async def arrived() -> bool:
        return any(m["id"] == sent["id"] for m in await a.messages(conv["id"]))

    await wait_for(arrived, timeout=5_000 * MS, message="B's message on A")
    # A has not pulled since before B's write (its periodic pull is 30 s away): realtime.
    assert (await workspace_status(a, ws["id"]))["last_pull_at"] == pulled_at
    assert len(await a.messages(conv["id"])) == HISTORY + 1
