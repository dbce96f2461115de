"""Cloud outages: writes made while devcloud is down arrive exactly once after it returns,
without any user action, also when the access token expired in the meantime."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sync_checks import snapshot, wait_synced
from sync_kit import CloudProcess, DaemonProcess

from tests.helpers import MS, wait_for

EMAIL = "ana@example.com"
OFFLINE_WRITES = 10_000
BATCH = 500  # calls in flight at once


async def send_many(daemon: DaemonProcess, conv_id: str, n: int, prefix: str) -> dict[str, str]:
    """``n`` messages through concurrent calls; {acknowledged id: content}."""
    acked: dict[str, str] = {}
    for start in range(0, n, BATCH):
        contents = [f"{prefix} {i}" for i in range(start, min(n, start + BATCH))]
        rows = await asyncio.gather(*(daemon.send(conv_id, c) for c in contents))
        acked.update((row["id"], row["content"]) for row in rows)
    return acked


async def cloud_messages(cloud: CloudProcess, ws_id: str) -> list[tuple[str, str]]:
    rows = await cloud.fetch(
        "SELECT id::text, content FROM messages WHERE workspace_id = $1::uuid", ws_id
    )
    return [(r["id"], r["content"]) for r in rows]


async def test_writes_made_while_the_cloud_is_down_arrive_exactly_once(
    lab: Any, cloud: CloudProcess
) -> None:
    await cloud.create_user(EMAIL, org="acme")
    a = await lab.daemon("a")
    await a.login(EMAIL)
    ws_id = await a.publish("offline work")
    conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "log"})
    first = await a.send(conv["id"], "online")
    await a.push()
    assert await cloud_messages(cloud, ws_id) == [(first["id"], "online")]

    await cloud.stop()
    acked = await send_many(a, conv["id"], OFFLINE_WRITES, "offline")
    assert len(acked) == OFFLINE_WRITES
    assert (await a.status())["outbox"] >= OFFLINE_WRITES

    async def knows_it_is_offline() -> bool:
        return (await a.status())["state"] in ("offline", "error", "connecting")

    await wait_for(knows_it_is_offline, message="sync.status to show the outage")
    assert await cloud.count("messages", ws_id) == 1

    await cloud.start()  # the same cloud, on the same port; nobody tells the daemon
    expected = {first["id"]: "online", **acked}

    async def all_arrived() -> bool:
        return await cloud.count("messages", ws_id) >= len(expected)

    await wait_for(all_arrived, timeout=90_000 * MS, interval=100 * MS, message="the backlog")
    await wait_synced(a)
    rows = await cloud_messages(cloud, ws_id)
    assert len(rows) == len(expected)  # nothing twice
    assert dict(rows) == expected  # nothing lost, nothing altered
    assert (await a.status())["rejected"] == 0

    # A second device clones the workspace: every message exactly once there too.
    b = await lab.daemon("b")
    await b.login(EMAIL)
    await b.clone(ws_id, lab.root / "b-folder")
    await b.pull()
    on_b = await b.messages(conv["id"])
    assert {m["id"]: m["content"] for m in on_b} == expected
    assert len(on_b) == len(expected)


async def test_an_access_token_expiring_while_offline_recovers_by_itself(lab: Any) -> None:
    expiry_s = 3
    cloud = await lab.start_cloud(jwt_expiry=expiry_s)
    await cloud.create_user(EMAIL, org="acme")
    a = await lab.daemon("a")
    await a.login(EMAIL)
    ws_id = await a.publish("token test")
    conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "log"})
    await a.push()

    await cloud.stop()
    down_at = time.monotonic()
    acked = await send_many(a, conv["id"], 50, "while offline")
    # Every access token issued before the outage has expired once this much time has passed.
    await wait_for(
        lambda: time.monotonic() > down_at + expiry_s + 1,
        timeout=(expiry_s + 5) * 1000 * MS,
        message="the access token to expire",
    )
    issued = await cloud.fetchval("SELECT coalesce(max(id), 0) FROM auth.refresh_tokens")
    await cloud.start()

    async def arrived() -> bool:
        return await cloud.count("messages", ws_id) == len(acked)

    await wait_for(arrived, timeout=60_000 * MS, interval=100 * MS, message="the backlog")
    await wait_synced(a)
    status = await a.call("cloud.status")
    assert status["user"]["email"] == EMAIL, status  # still logged in: no user action needed
    refreshed = "SELECT count(*) FROM auth.refresh_tokens WHERE id > $1"
    assert await cloud.fetchval(refreshed, issued) >= 1  # it renewed its expired session
    assert (await a.status())["state"] != "auth_required"

    # Pushing goes on by itself: a write made now arrives without a sync.push.
    later = await a.send(conv["id"], "after recovery")
    await wait_for(
        lambda: _has_id(cloud, ws_id, later["id"]), timeout=30_000 * MS, message="a new write"
    )
    assert sorted(await cloud.ids("messages", ws_id)) == sorted([*acked, later["id"]])
    assert (await snapshot(a, ws_id))["messages"][conv["id"]][-1]["content"] == "after recovery"


async def _has_id(cloud: CloudProcess, ws_id: str, row_id: str) -> bool:
    return row_id in await cloud.ids("messages", ws_id)
