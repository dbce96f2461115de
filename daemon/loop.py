"""The event loop syncd runs on.

``uvloop`` (libuv; what uvicorn picks by default) where it is installed — it is a dependency on
Linux and macOS — and the standard asyncio loop elsewhere or when asked for
(``event_loop = "asyncio"`` in config.toml, ``SYNCD_EVENT_LOOP=asyncio``). Both run the same
code; uvloop's faster sockets and callbacks cut the local API's per-request cost (see
bench/bridge.py, which uses the same choice). ``syncd status`` shows which one runs.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, Final, Literal, TypeVar, get_args

__all__ = [
    "EVENT_LOOPS",
    "EventLoopChoice",
    "loop_factory",
    "run",
    "running_loop_name",
    "tune_gc",
]

T = TypeVar("T")
EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
EVENT_LOOPS: Final[tuple[str, ...]] = get_args(EventLoopChoice)
#: The cyclic garbage collector's thresholds while the daemon serves (CPython: 700, 10, 10).
GC_THRESHOLDS: Final = (10_000, 20, 20)


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: EventLoopChoice = "auto") -> LoopFactory | None:
    """The factory of the loop ``choice`` names (None: asyncio's default).

    ``auto`` falls back to asyncio when uvloop is not installed; ``uvloop`` requires it.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    new_loop: LoopFactory = uvloop.new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: what the running loop is."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def tune_gc() -> None:
    """Make CPython's cyclic garbage collector cheap for a long-running server; call it once,
    after startup imports, before serving.

    With the default thresholds the collector took 16-18% of the event loop's CPU under load
    (py-spy; bench/bridge.py's 50 clients, bench/docs_trace.py): every request allocates
    short-lived containers (tasks, futures, dicts), so the young generation fills every few
    dozen requests, the requests in flight at that moment are promoted, and every few thousand
    requests a full collection walks the whole heap (~70k objects, ~40 ms holding the GIL: a
    stall for every client and for the store's writer thread). ``gc.freeze()`` takes what
    exists now (modules, classes: never garbage) out of all future collections, and the higher
    thresholds make collections rare. Reference counting still frees everything acyclic at
    once; unreachable cycles wait for the next collection (at most ~10k new containers away).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
