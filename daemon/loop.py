"""The event loop syncd runs on.

``uvloop`` (libuv; what uvicorn picks by default) where it is installed — it is a dependency on
Linux and macOS — and the standard asyncio loop elsewhere or when asked for
(``event_loop = "asyncio"`` in config.toml, ``SYNCD_EVENT_LOOP=asyncio``). Both run the same
code; uvloop's faster sockets and callbacks cut the local API's per-request cost (see
bench/bridge.py, which uses the same choice). ``syncd status`` shows which one runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, Literal, TypeVar, get_args

__all__ = ["EVENT_LOOPS", "EventLoopChoice", "loop_factory", "run", "running_loop_name"]

T = TypeVar("T")
EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
EVENT_LOOPS: Final[tuple[str, ...]] = get_args(EventLoopChoice)


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
