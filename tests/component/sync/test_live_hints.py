"""Realtime hints are coalesced (daemon/sync/live_hints.py): a burst of another device's rows
is merged on B in a few store transactions, every row arrives, and the pull cursor does not
move. Against the in-process devcloud (real PostgreSQL change capture, a real socket); B's
periodic pull is an hour away, so what reaches B came through realtime."""

from __future__ import annotations

from pathlib import Path

from daemon.config import StoreSettings
from daemon.store import Store
from daemon.sync.live_hints import HintQueue
from devcloud.server import RunningDevcloud
from tests.component.store.test_sync_support import change, clock, remote_workspace
from tests.helpers import MS, wait_for

from .conftest import MakeDevice, stored
from .test_live_devcloud import last_pull, pair

ROWS = 300


async def test_a_burst_of_hints_is_merged_in_few_transactions(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, b, _, conv_id = await pair(devcloud, make_device, tmp_path)
    pulled_at = await last_pull(b)
    hints = b.cloud.live._hints
    before = hints.transactions
    sent = [
        await a.store.messages.create(conversation_id=conv_id, role="user", content=f"m{i}")
        for i in range(ROWS)
    ]
    await a.cloud.sync_now("push")  # one sync_push transaction: the changes come in a burst

    async def all_on_b() -> bool:
        page = await b.store.messages.list(conversation_id=conv_id, limit=1000)
        return {m["id"] for m in page.items} >= {m["id"] for m in sent}

    await wait_for(all_on_b, timeout=15_000 * MS, message="A's messages on B")
    assert await last_pull(b) == pulled_at, "they came by a pull, not through realtime"
    created = [e for e in b.events if e.topic == "message.created"]
    assert len({e.data["id"] for e in created}) == len(created)  # each told the UIs once
    used = hints.transactions - before
    assert 1 <= used <= ROWS // 5, f"{used} transactions for {ROWS} hints"


async def test_too_many_waiting_hints_ask_for_a_pull_and_unlinked_ones_are_dropped(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "syncd.db", StoreSettings())
    asked: list[str] = []
    linked = {"ws-1", "ws-2"}
    hints = HintQueue(store, asked.append, lambda ws: ws in linked, max_waiting=3)
    try:
        dropped = [remote_workspace(clock(), name=f"d{i}") for i in range(4)]
        for row in dropped:  # no await in between: all four wait, the fourth overflows
            hints.add("ws-1", change("workspaces", row))
        assert asked == ["ws-1"]
        kept = [remote_workspace(clock(), name=f"k{i}") for i in range(2)]
        for row in kept:
            hints.add("ws-2", change("workspaces", row))
        gone = remote_workspace(clock(), name="gone")
        hints.add("ws-3", change("workspaces", gone))  # not linked (any more)

        async def applied() -> bool:
            return all([await stored(store.workspaces.get, row["id"]) for row in kept])

        await wait_for(applied, timeout=5_000 * MS, message="the kept hints")
        assert hints.transactions == 1  # the two waiting hints of ws-2: one transaction
        for row in [*dropped, gone]:
            assert not await stored(store.workspaces.get, row["id"])
        await hints.close()
        late = remote_workspace(clock(), name="late")
        hints.add("ws-2", change("workspaces", late))
        await hints.close()  # what waits when closing is dropped (the next pull brings it)
        assert hints.transactions == 1
        assert not await stored(store.workspaces.get, late["id"])
    finally:
        await store.close()
