"""A task's status through the local API: open statuses move freely, ended ones never change
(daemon/store/tasks.py's module doc), while a status pulled from another device still merges."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.store import Store
from daemon.store.tasks import FINAL, OPEN
from daemon.types import TASK_STATUSES

from .conftest import Rpc


async def enqueue(rpc: Rpc) -> dict[str, Any]:
    workspace = await rpc.call("workspace.create", {"name": "w"})
    return dict(await rpc.call("task.enqueue", {"workspace_id": workspace["id"], "kind": "k"}))


async def test_open_statuses_move_to_any_status(rpc: Rpc) -> None:
    for start in sorted(OPEN):
        for target in sorted(TASK_STATUSES):
            task = await enqueue(rpc)
            if start != "queued":
                await rpc.call("task.update", {"id": task["id"], "status": start})
            moved = await rpc.call("task.update", {"id": task["id"], "status": target})
            assert moved["status"] == target, (start, target)


@pytest.mark.parametrize("final", sorted(FINAL))
async def test_an_ended_task_keeps_its_status(rpc: Rpc, store: Store, final: str) -> None:
    task = await enqueue(rpc)
    if final == "cancelled":
        ended = await rpc.call("task.cancel", {"id": task["id"]})
    else:
        ended = await rpc.call("task.update", {"id": task["id"], "status": final})
    assert ended["status"] == final
    seq = await store.changelog.last_seq()
    for target in sorted(TASK_STATUSES - {final}):
        reply = await rpc.request("task.update", {"id": task["id"], "status": target})
        error = reply["error"]
        assert error["code"] == -32602, reply
        assert error["data"]["field"] == "status"
        reason = error["data"]["reason"]
        assert f"is {final}, which is final" in reason
        assert "from paused, queued, running to any status" in reason
        # refused with the other fields: nothing of the call is written
        both = {"id": task["id"], "status": target, "priority": 7}
        assert (await rpc.request("task.update", both))["error"]["code"] == -32602
    assert await rpc.call("task.get", {"id": task["id"]}) == ended
    assert await store.changelog.last_seq() == seq  # nothing was written
    # the same status again changes nothing; other fields still change
    same = await rpc.call("task.update", {"id": task["id"], "status": final, "priority": 3})
    assert (same["status"], same["priority"]) == (final, 3)
