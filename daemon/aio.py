"""Small asyncio helpers shared by the daemon's long-running parts."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait", "discard"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished. Its own CancelledError is absorbed; a
    cancellation of the caller (while it waits) is not."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if (current := asyncio.current_task()) is not None and current.cancelling():
            raise  # we are being cancelled ourselves, not just the task we stopped


def discard(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` without waiting for it; a failure it ends with is consumed (nobody
    needs its result, and asyncio would log it as never retrieved)."""
    task.cancel()
    task.add_done_callback(_consume)


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
