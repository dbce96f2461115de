"""Comparing replicas and waiting for sync, through the public API only (see sync_kit.py).

``snapshot``     what a daemon shows of one workspace, minus local-only columns.
``assert_same``  fails with the paths where two snapshots differ.
``sync_all``     push then pull on every daemon until every replica has seen every change.
``wait_synced``  until a daemon's outbox is empty and it is not failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sync_kit import DaemonProcess

from tests.helpers import MS, wait_for

SYNC_TIMEOUT = 60_000 * MS
# Columns a replica keeps for itself: never pushed, so never compared between replicas.
LOCAL_ONLY = {
    "workspaces": {"path"},
    "tasks": {"lease_owner", "lease_expires_at", "attempts"},
}
ENTITY_TOPICS = ("workspace.", "conversation.", "message.", "task.")


def _comparable(table: str, row: dict[str, Any]) -> dict[str, Any]:
    local = LOCAL_ONLY.get(table, set())
    kept = {k: v for k, v in row.items() if k not in local}
    if isinstance(kept.get("field_hlc"), dict):
        # Clocks of the columns this replica has (a map column's keys as "column.key").
        kept["field_hlc"] = {k: v for k, v in kept["field_hlc"].items() if k.split(".")[0] in kept}
    return kept


async def snapshot(daemon: DaemonProcess, workspace_id: str) -> dict[str, Any]:
    """Everything ``daemon`` shows of one workspace (local-only columns removed)."""
    ws = await daemon.call("workspace.get", {"id": workspace_id})
    convs = await daemon.all_pages("conversation.list", {"workspace_id": workspace_id})
    tasks = await daemon.all_pages("task.list", {"workspace_id": workspace_id})
    messages: dict[str, list[dict[str, Any]]] = {}
    for conv in convs:
        messages[conv["id"]] = [
            _comparable("messages", m) for m in await daemon.messages(conv["id"])
        ]
    return {
        "workspace": _comparable("workspaces", ws),
        "conversations": sorted(
            (_comparable("conversations", c) for c in convs), key=lambda r: r["id"]
        ),
        "messages": messages,
        "tasks": sorted((_comparable("tasks", t) for t in tasks), key=lambda r: r["id"]),
    }


async def sync_all(daemons: Sequence[DaemonProcess], rounds: int = 2) -> None:
    """Push then pull on every daemon, ``rounds`` times: afterwards every replica has seen
    every change (one round moves A's change to the cloud and to later daemons, the second
    brings later daemons' changes back to earlier ones)."""
    for _ in range(rounds):
        for d in daemons:
            await d.push()
        for d in daemons:
            await d.pull()


async def wait_synced(daemon: DaemonProcess, *, within: float = SYNC_TIMEOUT) -> None:
    """Until the daemon's outbox is empty and it is not failing (rejected rows are the
    caller's to check: ``status()["rejected"]``)."""

    async def drained() -> bool:
        status = await daemon.status()
        return status.get("outbox") == 0 and status.get("state") in ("idle", "pulling")

    await wait_for(drained, timeout=within, interval=50 * MS, message=f"{daemon.name} to drain")


def entity_events(events: Iterable[Any]) -> list[Any]:
    return [e for e in events if e.topic.startswith(ENTITY_TOPICS)]


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    """Where two snapshots differ, as ``path: left != right`` lines."""
    if isinstance(left, dict) and isinstance(right, dict):
        found: list[str] = []
        for key in sorted(set(left) | set(right), key=str):
            if key not in left or key not in right:
                found.append(f"{path}.{key}: only on {'left' if key in left else 'right'}")
            else:
                found.extend(differences(left[key], right[key], f"{path}.{key}"))
        return found
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            d
            for i, (x, y) in enumerate(zip(left, right, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]


def assert_same(left: Any, right: Any, what: str = "replicas") -> None:
    found = differences(left, right)
    assert not found, f"{what} differ:\n" + "\n".join(found[:40])
