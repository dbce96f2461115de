"""Up to PUSH_IN_FLIGHT (three) ``sync_push`` requests in flight per workspace (workspace.py):
batch N+1 is sent while N is in flight, answers settle in send order, a failure drops every
one in flight (their entries stay and are sent again), unlink and logout leave no request
behind.

Against the in-process devcloud (real HTTP, real PostgreSQL). A's HTTP client goes through
``Gate``, an httpx transport in front of the real one that numbers the ``sync_push`` requests
of leaf rows only (the history's messages and tasks; the first batch, which creates the
workspace and conversation, is never sent beside another: push_batch.py ``leaves_only``) and
holds or refuses them on cue. A's periodic pull is an hour away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import orjson
import pytest

from daemon.sync.workspace import PUSH_IN_FLIGHT
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, Device, MakeDevice

ADA = "ada@example.com"
HOUR = 3600.0
LIMIT = 100
WITHIN = 20_000 * MS
Hook = Callable[[int], Awaitable[None]]


class Gate(httpx.AsyncBaseTransport):
    """The real transport; ``hooks[n]`` runs before the n-th (from 1) leaf-only push goes on
    (it may wait, or raise as a down cloud does). Counts requests in flight."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.hooks: dict[int, Hook] = {}
        self.leaf_pushes: list[list[str]] = []  # row ids of each leaf-only push, as sent
        self.pushes: list[list[str]] = []  # row ids of every push, as sent
        self.answered: set[int] = set()  # leaf pushes the cloud answered
        self.in_flight = 0
        self.max_in_flight = 0
        self.parents_in_flight = 0  # pushes of rows others may reference (not leaf-only)
        self.beside_parents = 0  # pushes sent while such a push was in flight
        self.release = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/rpc/sync_push"):
            return await self.inner.handle_async_request(request)
        changes = orjson.loads(request.content)["changes"]
        ids = [c["id"] for c in changes]
        self.pushes.append(ids)
        self.beside_parents += self.parents_in_flight > 0
        leaves = all(c["table"] in ("messages", "tasks") for c in changes)
        self.parents_in_flight += not leaves
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            number = 0
            if leaves:
                self.leaf_pushes.append(ids)
                number = len(self.leaf_pushes)
                if (hook := self.hooks.get(number)) is not None:
                    await hook(number)
            response = await self.inner.handle_async_request(request)
            await response.aread()
            self.answered.add(number)
            return response
        finally:
            self.in_flight -= 1
            self.parents_in_flight -= not leaves

    def hold(self, *numbers: int) -> None:
        async def held(_: int) -> None:
            await self.release.wait()

        self.hooks.update(dict.fromkeys(numbers, held))

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def gated(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> AsyncIterator[tuple[Device, Gate]]:
    """Ada's device A (logged in), its HTTP requests through a Gate."""
    gate = Gate()
    device = await make_device("a", gate, pull_interval_s=HOUR, push_limit=LIMIT)
    await devcloud.create_user(ADA, PASSWORD, org="Acme")
    await device.cloud.login(ADA, PASSWORD)
    try:
        yield device, gate
    finally:
        gate.release.set()  # a held request must not outlive the test


async def publish(a: Device, messages: int = 250, tasks: int = 250) -> str:
    """A publishes a workspace of a conversation with ``messages`` messages and ``tasks``
    tasks (the first batch carries the workspace and conversation)."""
    ws = await a.store.workspaces.create(name="notes")
    conv = await a.store.conversations.create(workspace_id=ws["id"], name="chat")
    for n in range(messages):
        await a.store.messages.create(conversation_id=conv["id"], role="user", content=f"m{n}")
    for n in range(tasks):
        await a.store.tasks.create(workspace_id=ws["id"], kind=f"t{n}")
    await a.cloud.link(workspace_id=ws["id"])
    return str(ws["id"])


async def cloud_count(devcloud: RunningDevcloud, ws_id: str) -> int:
    async with devcloud.ctx.pool.acquire() as conn:
        sql = """SELECT (SELECT count(*) FROM public.messages WHERE workspace_id = $1::uuid)
                      + (SELECT count(*) FROM public.tasks WHERE workspace_id = $1::uuid)"""
        return int(await conn.fetchval(sql, ws_id))


async def all_pushed(a: Device, devcloud: RunningDevcloud, ws_id: str, rows: int = 500) -> None:
    async def done() -> bool:
        status = await a.cloud.sync_status()
        return status["outbox"] == 0 and await cloud_count(devcloud, ws_id) == rows

    await wait_for(done, timeout=WITHIN, message="every row in the cloud, the outbox drained")
    assert (await a.store.sync.counts())["rejected"] == 0


#: the leaf pushes a full pipeline holds in flight (numbered from 1)
FULL = range(1, PUSH_IN_FLIGHT + 1)


async def publish_held(gate: Gate, a: Device, messages: int = 250, tasks: int = 250) -> str:
    """``publish``, holding the first PUSH_IN_FLIGHT leaf pushes until ``gate.release``."""
    gate.hold(*FULL)
    ws_id = await publish(a, messages, tasks)
    await wait_for(lambda: len(gate.leaf_pushes) == len(FULL), timeout=WITHIN, message="in flight")
    return ws_id


def push_tasks() -> list[asyncio.Task[object]]:
    return [
        t for t in asyncio.all_tasks() if t.get_name().startswith("sync-push-") and not t.done()
    ]


async def test_the_next_batches_are_sent_while_one_is_held_and_never_one_more(
    devcloud: RunningDevcloud, gated: tuple[Device, Gate]
) -> None:
    assert PUSH_IN_FLIGHT > 1
    a, gate = gated
    gate.hold(*FULL, len(FULL) + 1)
    ws_id = await publish(a)
    # one request at a time would never send the second while the first is held
    await wait_for(lambda: len(gate.leaf_pushes) == len(FULL), timeout=WITHIN, message="full")
    assert gate.in_flight == PUSH_IN_FLIGHT
    assert (await a.cloud.sync_status())["outbox"] > 0  # nothing settled while unanswered
    gate.release.set()
    await all_pushed(a, devcloud, ws_id)
    assert gate.max_in_flight == PUSH_IN_FLIGHT
    # the batch creating the conversation was answered before the next one was sent (its
    # messages would fail their foreign key beside it): push_batch.py leaves_only
    assert len(gate.pushes) > len(gate.leaf_pushes) and gate.beside_parents == 0


async def test_a_push_asked_for_during_a_run_is_answered_by_its_last_take(
    devcloud: RunningDevcloud, gated: tuple[Device, Gate], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sync.push`` answers once a take that began after the call found the outbox drained
    (workspace.py ``_run_finished``): a call made while batches are in flight is answered
    by that run, every row written before it in the cloud, and not by a run of its own after
    it (one empty take before the answer, not two)."""
    a, gate = gated
    ws_id = await publish_held(gate, a)
    await a.store.tasks.create(workspace_id=ws_id, kind="written before the call")
    asked: list[asyncio.Task[dict[str, object]]] = []
    drained: list[bool] = []  # per empty take from the outbox's start: was the call answered?
    take = a.store.sync.take_outbox

    async def spy(**options: object) -> object:
        changes = await take(**options)  # type: ignore[arg-type]
        if options["after"] == 0 and not changes:
            drained.append(asked[0].done())
        return changes

    monkeypatch.setattr(a.store.sync, "take_outbox", spy)
    asked.append(asyncio.create_task(a.cloud.sync_now("push")))
    # released once the call has begun (callbacks run in the order they were queued)
    asyncio.get_running_loop().call_soon(gate.release.set)
    result = await asyncio.wait_for(asked[0], timeout=WITHIN)
    assert result["error"] is None
    assert await cloud_count(devcloud, ws_id) == 501
    assert drained.count(False) == 1


async def test_a_failed_batch_drops_those_answered_after_it_and_all_are_sent_again(
    devcloud: RunningDevcloud, gated: tuple[Device, Gate]
) -> None:
    a, gate = gated

    async def fail_after_the_next_is_answered(number: int) -> None:
        await wait_for(lambda: number + 1 in gate.answered, timeout=WITHIN)
        raise httpx.ConnectError("connection refused")

    gate.hooks[1] = fail_after_the_next_is_answered
    ws_id = await publish(a)
    await all_pushed(a, devcloud, ws_id)
    failed, answered_after = gate.leaf_pushes[0], gate.leaf_pushes[1]
    sent_again = gate.leaf_pushes[PUSH_IN_FLIGHT:]  # (the full pipeline went first)
    # the retry takes the outbox from its start: the failed batch, then the one answered
    # after it (not settled out of order), each sent again as it was
    assert sent_again[0] == failed and sent_again[1] == answered_after


async def test_a_row_edited_while_its_batch_is_in_flight_keeps_its_newer_entry(
    devcloud: RunningDevcloud, gated: tuple[Device, Gate]
) -> None:
    a, gate = gated
    ws_id = await publish_held(gate, a, messages=0, tasks=500)
    first, second = gate.leaf_pushes[0][0], gate.leaf_pushes[1][-1]
    await a.store.tasks.update(first, priority=7)
    await a.store.tasks.update(second, priority=9)
    gate.release.set()
    await all_pushed(a, devcloud, ws_id)
    async with devcloud.ctx.pool.acquire() as conn:
        sql = "SELECT id::text, priority FROM public.tasks WHERE id = ANY($1::uuid[])"
        rows = dict(await conn.fetch(sql, [first, second]))
    assert rows == {first: 7, second: 9}


async def test_unlink_while_batches_are_in_flight_leaves_no_request_behind(
    devcloud: RunningDevcloud, gated: tuple[Device, Gate]
) -> None:
    a, gate = gated
    ws_id = await publish_held(gate, a)
    assert len(push_tasks()) == PUSH_IN_FLIGHT
    await a.cloud.unlink(ws_id)
    await wait_for(lambda: not push_tasks(), timeout=WITHIN, message="no push request left")
    assert ws_id not in a.cloud.driver.syncs
    assert (await a.store.sync.counts())["outbox"] == 0
    gate.release.set()
    await wait_for(lambda: gate.in_flight == 0, timeout=WITHIN)
    assert (await a.store.sync.counts())["outbox"] == 0  # nothing came back after the unlink


async def test_logout_while_batches_are_in_flight_drops_all_but_the_first_and_login_pushes_the_rest(
    devcloud: RunningDevcloud, gated: tuple[Device, Gate]
) -> None:
    a, gate = gated
    ws_id = await publish_held(gate, a)
    await a.cloud.logout()
    await wait_for(lambda: len(push_tasks()) == 1, timeout=WITHIN, message="the others dropped")
    gate.release.set()
    await wait_for(lambda: not push_tasks(), timeout=WITHIN, message="the first answered")
    sent = len(gate.pushes)
    await a.cloud.login(ADA, PASSWORD)
    await all_pushed(a, devcloud, ws_id)
    assert len(gate.pushes) > sent  # the rest went out after the login, not while offline


async def test_batches_creating_conversations_are_answered_before_the_next_is_sent(
    devcloud: RunningDevcloud, gated: tuple[Device, Gate]
) -> None:
    a, gate = gated
    ws = await a.store.workspaces.create(name="many")
    for n in range(150):
        conv = await a.store.conversations.create(workspace_id=ws["id"], name=f"c{n}")
        await a.store.messages.create(conversation_id=conv["id"], role="user", content=f"m{n}")
    await a.cloud.link(workspace_id=ws["id"])
    await all_pushed(a, devcloud, ws["id"], rows=150)  # no message failed its conversation
    # the link's snapshot holds the conversations first: two batches create them (each
    # answered before the next was sent), then the messages go PUSH_IN_FLIGHT at a time
    assert gate.beside_parents == 0
    assert len(gate.pushes) - len(gate.leaf_pushes) >= 3  # the publish's row, two batches
