"""Status events are durable changelog entries, so only a change a UI must react to makes one
(service.py ``_publish_new``, status.py ``settled``): pulls that bring nothing and retries that
fail again move only times, which ``sync.status`` answers but no event carries on its own.

Against the in-process devcloud. A's HTTP client goes through ``Gate``, an httpx transport in
front of the real one that refuses every request as a down cloud does (a connection error)
while ``down`` is set. A pulls every 50 ms here (30 s in the daemon)."""

from __future__ import annotations

from pathlib import Path

from daemon.events import ChangeEvent
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, Device, MakeDevice
from .transports import Outage

STATUS = ("sync.status", "cloud.status")


def status_events(device: Device, since: int = 0) -> list[ChangeEvent]:
    return [e for e in device.events[since:] if e.topic in STATUS]


def last(device: Device, topic: str) -> dict:
    return [e.data for e in device.events if e.topic == topic][-1]


async def test_pulls_and_retries_that_change_nothing_write_no_status_event(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    gate = Outage()
    a = await make_device("a", gate, pull_interval_s=50 * MS)
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    await a.cloud.login("ada@example.com", PASSWORD)
    ws = (await a.store.workspaces.create(name="notes"))["id"]
    await a.cloud.link(workspace_id=ws)
    sync = a.cloud.driver.syncs[ws]

    def settled_idle() -> bool:  # linked, pushed, joined, and every status event written
        if not any(e.topic == "sync.status" for e in a.events):
            return False
        shown = last(a, "sync.status")
        return (
            shown["state"] == "idle"
            and shown["outbox"] == 0
            and last(a, "cloud.status")["realtime"]["subscribed"] == [ws]
            and last(a, "cloud.status")["organization"] is not None  # the account loaded too
        )

    await wait_for(settled_idle, message="A idle, its status events written")
    since = len(a.events)

    # Idle: manual and periodic pulls bring nothing; each moves last_pull_at (answered)...
    for _ in range(3):
        assert (await a.cloud.sync_now("pull"))["error"] is None
    pulls: set[float | None] = set()

    def pulled_three_times() -> bool:
        pulls.add(sync.status.last_pull_at)
        return len(pulls) > 3

    await wait_for(pulled_three_times, message="three periodic pulls")
    assert (await a.cloud.sync_status())["last_pull_at"] is not None

    # ... and a real change is an event: a write the cloud cannot take (it is down).
    gate.down = True
    conv = await a.store.conversations.create(workspace_id=ws, name="chat")

    def offline(event: ChangeEvent) -> bool:
        data = event.data
        return data["state"] == "offline" and data["last_error"] == "connect"

    def offline_cloud(event: ChangeEvent) -> bool:
        return event.data["sync_state"] == "offline"

    await wait_for(  # (the publisher writes sync.status, then the cloud.status it shows)
        lambda: (
            any(e.topic == "sync.status" and offline(e) for e in a.events[since:])
            and any(e.topic == "cloud.status" and offline_cloud(e) for e in a.events[since:])
        ),
        message="the outage in a sync.status and a cloud.status event",
    )
    # ... and no event from the pulls before it (the publisher writes in order): each one
    # since shows the write (its count, or its pending push when the count was read just
    # before the write committed)
    written = [e.data for e in a.events[since:] if e.topic == "sync.status"]
    assert all(s["outbox"] == 1 or any(w["pending"] for w in s["workspaces"]) for s in written), [
        (s["state"], s["outbox"]) for s in written
    ]
    shown = [e.data for e in status_events(a, since) if e.topic == "cloud.status"]
    assert all(s["sync_state"] != "idle" for s in shown), shown  # (all of it: seen once in CI)

    # The outage: every retry fails again with the same error, at a new retry_at.
    during = len(status_events(a))
    refused = gate.refused
    retries: set[float | None] = set()

    def retried() -> bool:
        retries.add(sync.status.retry_at)
        return gate.refused >= refused + 4 and len(retries) > 3

    await wait_for(retried, message="four more retries")
    assert len(status_events(a)) == during, [
        (e.topic, e.data.get("state") or e.data.get("sync_state")) for e in status_events(a)
    ]

    # The cloud is back: the outbox drains, and that is an event again.
    gate.down = False
    await a.store.messages.create(conversation_id=conv["id"], role="user", content="back")

    def drained() -> bool:
        shown = last(a, "sync.status")
        return shown["state"] == "idle" and shown["outbox"] == 0 and shown["last_error"] is None

    await wait_for(drained, timeout=5_000 * MS, message="the drained outbox in an event")
    assert len(status_events(a)) > during
