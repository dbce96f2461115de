"""``syncd pull``'s progress loop (cli_cloud._until) when the daemon goes away mid-pull: the
events end with the connection and so does the call; the loop stops, the call's error is the
one reported, and no task is left with an exception nobody retrieved (asyncio would print
"Task exception was never retrieved" under the CLI's message)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.cli_cloud import _until
from ui_bridge.client import ConnectionLost


async def _events(first: list[Any], lost: asyncio.Event) -> AsyncIterator[Any]:
    for event in first:
        yield event
    await lost.wait()
    raise ConnectionLost("the daemon went away")


async def _call(lost: asyncio.Event) -> Any:
    await lost.wait()
    raise ConnectionLost("the daemon went away")


async def _collect_unretrieved(run: Any) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        await run()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:  # dropped tasks finish their cancellation
            _, pending = await asyncio.wait(others, timeout=1.0)
            assert not pending
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    return seen


async def test_connection_lost_mid_pull_is_reported_once() -> None:
    lost = asyncio.Event()
    received: list[Any] = []

    async def run() -> None:
        call = asyncio.ensure_future(_call(lost))
        async for event in _until(_events(["a", "b"], lost), call):
            received.append(event)
            if len(received) == 2:
                lost.set()
        with pytest.raises(ConnectionLost):
            await call

    seen = await _collect_unretrieved(run)
    assert received == ["a", "b"]
    assert seen == []


async def test_events_until_the_call_is_done() -> None:
    finished = asyncio.Event()

    async def call_body() -> str:
        await finished.wait()
        return "done"

    async def events() -> AsyncIterator[int]:
        n = 0
        while True:
            n += 1
            if n == 3:
                finished.set()
            yield n
            await asyncio.sleep(0)

    received: list[int] = []

    async def run() -> None:
        call = asyncio.ensure_future(call_body())
        async for event in _until(events(), call):
            received.append(event)
        assert await call == "done"

    seen = await _collect_unretrieved(run)
    assert received[:3] == [1, 2, 3]
    assert seen == []
