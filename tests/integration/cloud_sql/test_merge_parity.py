"""sync_push merges exactly like the daemon's pure merge (daemon/sync/merge.py): the same random
edits, folded by merge_row in one order and pushed to the cloud in others (one per request, and
all in one batch), end in the same values and the same clocks."""

from __future__ import annotations

import random
from typing import Any

import pytest

from daemon.sync.merge import RowState, merge_row

from .kit import Cloud, new_id

DEVICES = ("laptop", "phone", "tablet")


def random_edits(rng: random.Random, base_ms: int, users: list[str], n: int) -> list[RowState]:
    edits = []
    for counter in range(n):
        clock = f"{base_ms + rng.randrange(0, 5_000):013d}-{counter:06d}-{rng.choice(DEVICES)}"
        fields: dict[str, Any] = {}
        clocks: dict[str, str] = {}
        for name in rng.sample(["status", "priority", "created_by", "progress"], rng.randint(1, 3)):
            if name == "status":
                fields[name] = rng.choice(["queued", "running", "succeeded", "cancelled"])
            elif name == "priority":
                fields[name] = rng.randrange(10)
            elif name == "created_by":
                fields[name] = rng.choice([*users, None])
            else:
                keys = rng.sample(["a", "b", "c", "d"], rng.randint(1, 3))
                fields[name] = {k: rng.choice([None, 1, 2, "x", [1, 2], {"n": 1}]) for k in keys}
                clocks |= {f"progress.{k}": clock for k in keys}
                if rng.random() < 0.2:  # a whole-map replacement
                    clocks["progress"] = clock
                continue
            clocks[name] = clock
        edits.append(RowState(fields, clocks))
    return edits


def as_change(task: str, ws: str, edit: RowState) -> dict[str, Any]:
    return {
        "table": "tasks",
        "id": task,
        "workspace_id": ws,
        "fields": dict(edit.fields),
        "field_hlc": dict(edit.field_hlc),
        "origin": "dev",
    }


async def bulk_loaded_task(cloud: Cloud, ws: str, task: str, user: str, clock: str) -> None:
    """A task as a bulk load (COPY, triggers off) leaves it: its row clock and field_hlc {}."""
    async with cloud.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "INSERT INTO public.tasks (id, workspace_id, kind, status, priority, progress,"
            " created_by, created_at, updated_at, hlc, origin) VALUES ($1, $2, 'build',"
            " 'running', 4, '{\"a\": 1, \"b\": \"x\"}', $3, '2026-01-01T00:00:00Z',"
            " '2026-01-01T00:00:00Z', $4, 'seed')",
            task, ws, user, clock,
        )  # fmt: skip


@pytest.mark.parametrize("one_register", [False, True], ids=["new", "one_register"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cloud_merge_matches_the_daemon(cloud: Cloud, seed: int, one_register: bool) -> None:
    """From nothing, and from a stored row in the one-register form (field_hlc {}: every field
    carries the row clock, in the middle of the edits' clocks), which both sides expand."""
    rng = random.Random(seed)
    alice, bob = await cloud.user("alice@a.io"), await cloud.user("bob@b.io")
    org = await cloud.org("A", alice, bob)
    ws = await cloud.workspace(org)
    edits = random_edits(rng, cloud.base_ms, [alice, bob], 25)

    one_by_one, one_batch = new_id(), new_id()
    state: RowState | None = None
    if one_register:
        clock = f"{cloud.base_ms + 2_500:013d}-000000-seed"
        creator = rng.choice([alice, bob])
        for task in (one_by_one, one_batch):
            await bulk_loaded_task(cloud, ws, task, creator, clock)
        stored = await cloud.row("tasks", one_by_one)
        assert stored is not None and stored["field_hlc"] == {}
        state = RowState.from_row(stored)
        assert set(state.field_hlc.values()) == {clock}
    for edit in rng.sample(edits, len(edits)):
        state = merge_row("tasks", state, edit).row
    assert state is not None

    for edit in rng.sample(edits, len(edits)):
        results = await cloud.push(alice, [as_change(one_by_one, ws, edit)])
        assert results[0]["status"] in ("applied", "superseded"), results
    shuffled = rng.sample(edits, len(edits))
    results = await cloud.push(alice, [as_change(one_batch, ws, e) for e in shuffled])
    assert {r["status"] for r in results} <= {"applied", "superseded"}, results

    for task in (one_by_one, one_batch):
        row = await cloud.row("tasks", task)
        assert row is not None
        assert row["field_hlc"] == dict(state.field_hlc)
        for name, value in state.fields.items():
            assert row[name] == value, name
        assert row["hlc"] == max(state.field_hlc.values())
