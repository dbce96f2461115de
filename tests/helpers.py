"""Shared test helpers: one time unit, and waiting on conditions instead of sleeping."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

# Every timeout in the tests is a multiple of MS; SYNCD_TESTS_TIMEOUT_FACTOR scales them on slow CI.
MS = 0.001 * float(os.environ.get("SYNCD_TESTS_TIMEOUT_FACTOR", "1"))


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10_000 * MS,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
    interval: float = 10 * MS,
    message: str = "condition",
) -> None:
    """Poll ``predicate`` until it is true; fail the test with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], bool],
    *,
    timeout: float = 10_000 * MS,
    interval: float = 10 * MS,
    message: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}")
        time.sleep(interval)
