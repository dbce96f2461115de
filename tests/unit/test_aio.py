"""cancel_and_wait and discard (daemon/aio.py)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from daemon.aio import cancel_and_wait, discard


async def test_cancels_and_waits_for_the_task() -> None:
    cleaned: list[str] = []
    started = asyncio.Event()

    async def worker() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("done")

    task = asyncio.create_task(worker())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned == ["done"]
    await cancel_and_wait(task)  # a finished task: nothing to do
    await cancel_and_wait(None)


async def test_a_cancellation_of_the_caller_is_not_swallowed() -> None:
    release, started, waiting = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            waiting.set()  # cancel_and_wait has cancelled it and now waits for it
            await release.wait()  # takes its time to stop
            raise

    task = asyncio.create_task(stubborn())
    await started.wait()
    caller = asyncio.create_task(cancel_and_wait(task))
    await waiting.wait()
    caller.cancel()  # the caller is cancelled while it waits
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_discard_cancels_and_consumes_the_failure_nobody_takes() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    started = asyncio.Event()

    async def fails_when_cancelled() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ValueError("broken while stopping") from None

    task = asyncio.create_task(fails_when_cancelled())
    await started.wait()
    discard(task)
    await asyncio.wait([task])
    assert task.done() and not task.cancelled()  # it ended with its ValueError
    del task
    gc.collect()
    assert reported == []  # no "Task exception was never retrieved"
    loop.set_exception_handler(None)
