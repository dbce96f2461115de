"""HotLoop: the loop keeps polling until spin_s after the latest touch, then sleeps again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from ui_bridge.hot import HotLoop


class FakeLoop:
    """Records ``call_soon`` callbacks; ``turn`` runs those queued before it, as a loop turn."""

    def __init__(self) -> None:
        self.ready: list[Callable[[], Any]] = []
        self.now = 100.0

    def call_soon(self, callback: Callable[[], Any]) -> None:
        self.ready.append(callback)

    def turn(self) -> None:
        queued, self.ready = self.ready, []
        for callback in queued:
            callback()

    def clock(self) -> float:
        return self.now


def hot_loop(spin_s: float) -> tuple[HotLoop, FakeLoop]:
    loop = FakeLoop()
    return HotLoop(cast(asyncio.AbstractEventLoop, loop), spin_s, loop.clock), loop


def test_touch_keeps_a_callback_queued_until_the_time_is_up() -> None:
    hot, loop = hot_loop(0.0003)
    hot.touch()
    for _ in range(5):
        assert len(loop.ready) == 1  # every turn has a ready callback: it polls, never sleeps
        loop.turn()
    loop.now += 0.0002
    loop.turn()
    assert hot.spinning and len(loop.ready) == 1
    loop.now += 0.0002  # 0.4 ms after the touch
    loop.turn()
    assert not hot.spinning
    assert loop.ready == []  # the loop may sleep again


def test_a_touch_while_spinning_extends_it_with_one_callback() -> None:
    hot, loop = hot_loop(0.0003)
    hot.touch()
    loop.now += 0.0002
    hot.touch()  # now until 0.5 ms after the first touch
    hot.touch()
    assert len(loop.ready) == 1
    loop.now += 0.0002
    loop.turn()
    assert hot.spinning and len(loop.ready) == 1
    loop.now += 0.0002
    loop.turn()
    assert not hot.spinning and loop.ready == []
    hot.touch()  # a later reply starts it again
    assert hot.spinning and len(loop.ready) == 1


def test_zero_spin_queues_nothing() -> None:
    hot, loop = hot_loop(0.0)
    hot.touch()
    assert not hot.spinning
    assert loop.ready == []
