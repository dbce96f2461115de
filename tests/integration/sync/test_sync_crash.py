"""SIGKILL at random moments while a daemon writes and pushes, restarted each time: no
acknowledged write is lost (I1), nothing reaches the cloud twice or altered (I2), and in the end
the cloud holds exactly what the device holds (I4).

Kill moments rotate through three kinds: in the middle of a burst of writes (some calls never
get their answer), right after the writes were acknowledged (before or as the push starts), and
once the cloud has received part of the round's rows (between two push batches, or between the
cloud's commit and the device settling its outbox). ``SYNCD_TEST_SEED`` replays a run.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from sync_checks import wait_synced
from sync_kit import CloudProcess, DaemonProcess

from daemon.store.ids import uuid7
from tests.helpers import MS, wait_for

EMAIL = "ana@example.com"
ROUNDS = 21
IN_FLIGHT = 500
KINDS = ("mid-write", "after-ack", "mid-push")


class Round:
    """One burst of messages with client-chosen ids (as a UI retrying a send would use)."""

    def __init__(self, daemon: DaemonProcess, conv_id: str, number: int, n: int) -> None:
        self.daemon = daemon
        self.conv_id = conv_id
        self.contents = {uuid7(): f"round {number} message {k}" for k in range(n)}
        self.acked: set[str] = set()

    async def _send(self, row_id: str) -> None:
        row = await self.daemon.send(self.conv_id, self.contents[row_id], id=row_id)
        assert row["id"] == row_id
        self.acked.add(row_id)

    async def write(self) -> None:
        """Send everything, ``IN_FLIGHT`` calls at a time; stop when the daemon goes away."""
        ids = list(self.contents)
        for start in range(0, len(ids), IN_FLIGHT):
            results = await asyncio.gather(
                *(self._send(i) for i in ids[start : start + IN_FLIGHT]), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                assert self.daemon.stopping, failures[0]  # only the kill may fail a call
                return


async def seeded_login(lab: Any, cloud: CloudProcess) -> tuple[random.Random, DaemonProcess]:
    """The run's random source (``SYNCD_TEST_SEED`` replays it) and daemon "a", logged in."""
    seed = int(os.environ.get("SYNCD_TEST_SEED", time.time_ns()))
    print(f"SYNCD_TEST_SEED={seed}")
    await cloud.create_user(EMAIL, org="acme")
    a = await lab.daemon("a")
    await a.login(EMAIL)
    return random.Random(seed), a


async def test_sigkill_at_random_moments_during_push_loses_and_duplicates_nothing(
    lab: Any, cloud: CloudProcess
) -> None:
    rng, a = await seeded_login(lab, cloud)
    ws_id = await a.publish("crashy")
    conv = await a.call("conversation.create", {"workspace_id": ws_id, "name": "log"})
    await a.push()

    attempted: dict[str, str] = {}
    acked: set[str] = set()
    mid_push_kills = 0  # kills that found the cloud part-way through the acknowledged rows
    for number in range(ROUNDS):
        kind = KINDS[number % len(KINDS)]
        burst = Round(a, conv["id"], number, rng.randint(600, 1400))
        attempted.update(burst.contents)
        in_cloud = await cloud.count("messages", ws_id)
        if kind == "mid-write":
            writer = asyncio.create_task(burst.write())
            threshold = rng.randint(1, len(burst.contents) - 1)

            def part_acked(
                w: asyncio.Task[None] = writer, b: Round = burst, t: int = threshold
            ) -> bool:
                return len(b.acked) >= t or w.done()

            await wait_for(part_acked, message="part of the burst to be acknowledged")
            await a.kill()
            await writer
        else:
            await burst.write()
            assert burst.acked == set(burst.contents)
            if kind == "mid-push":
                target = in_cloud + rng.randint(1, len(burst.contents) - 1)

                async def reached(t: int = target) -> bool:
                    return await cloud.count("messages", ws_id) >= t

                await wait_for(reached, timeout=30_000 * MS, interval=2 * MS, message="a push")
            await a.kill()
        acked |= burst.acked
        at_kill = await cloud.count("messages", ws_id)
        print(
            f"round {number:2d} {kind:9s} rows {len(burst.contents):4d} cloud {in_cloud}->{at_kill}"
        )
        mid_push_kills += in_cloud < at_kill < len(acked)
        await a.start()

    await wait_synced(a)
    local = [m["id"] for m in await a.messages(conv["id"])]
    assert acked <= set(local), "an acknowledged write was lost"
    assert set(local) <= set(attempted)
    assert len(local) == len(set(local))
    rows = await cloud.fetch(
        "SELECT id::text, content FROM messages WHERE workspace_id = $1::uuid", ws_id
    )
    cloud_ids = [r["id"] for r in rows]
    assert len(cloud_ids) == len(set(cloud_ids))
    assert set(cloud_ids) == set(local), "the cloud and the device differ"
    assert all(attempted[r["id"]] == r["content"] for r in rows)
    assert len({r["content"] for r in rows}) == len(rows)  # no message twice under a new id
    assert (await a.status())["rejected"] == 0
    assert mid_push_kills >= 3, "too few kills landed in the middle of a push"


PUBLISH_KILLS = 3


async def test_sigkill_during_a_publish_resumes_its_history_without_loss_or_duplicates(
    lab: Any, cloud: CloudProcess
) -> None:
    """A workspace's messages written before its link go out as one snapshot range (store
    /sync_outbox.py), read from their table as the push goes: killed part-way, again and
    again, the restarted daemon goes on from where the range was settled, and the cloud ends
    with every message once."""
    rng, a = await seeded_login(lab, cloud)
    ws = await a.call("workspace.create", {"name": "history"})
    convs = [
        await a.call("conversation.create", {"workspace_id": ws["id"], "name": f"c{i}"})
        for i in range(3)
    ]
    written: dict[str, str] = {}
    for number, conv in enumerate(convs):
        burst = Round(a, conv["id"], number, 2000)
        await burst.write()
        assert burst.acked == set(burst.contents)
        written.update(burst.contents)
    await a.call("cloud.link", {"workspace_id": ws["id"]})
    mid_push_kills = 0
    for kill in range(PUBLISH_KILLS):
        in_cloud = await cloud.count("messages", ws["id"])
        left = len(written) - in_cloud
        target = in_cloud + rng.randint(1, max(1, left // (PUBLISH_KILLS - kill)))

        async def reached(t: int = target) -> bool:
            return await cloud.count("messages", ws["id"]) >= t

        await wait_for(reached, timeout=30_000 * MS, interval=2 * MS, message="a push")
        await a.kill()
        at_kill = await cloud.count("messages", ws["id"])
        print(f"kill {kill} cloud {in_cloud}->{at_kill} of {len(written)}")
        mid_push_kills += at_kill < len(written)
        await a.start()

    await wait_synced(a)
    rows = await cloud.fetch(
        "SELECT id::text, content FROM messages WHERE workspace_id = $1::uuid", ws["id"]
    )
    assert len(rows) == len({r["id"] for r in rows}) == len(written)
    assert {r["id"]: r["content"] for r in rows} == written
    status = await a.status()
    assert (status["rejected"], status["outbox"]) == (0, 0)
    assert mid_push_kills >= 2, "too few kills landed in the middle of the publish"
