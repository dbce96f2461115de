"""The event loop choice (daemon/loop.py) and its setting."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
import uvloop  # a dependency wherever syncd runs uvloop (Linux, macOS)

from daemon import loop
from daemon.config import load_settings
from daemon.errors import ConfigError


def test_asyncio_choice_uses_the_standard_loop() -> None:
    assert loop.loop_factory("asyncio") is None
    assert loop.run(_name(), "asyncio") == "asyncio"


def test_auto_runs_uvloop_when_installed() -> None:
    assert loop.loop_factory("auto") is uvloop.new_event_loop
    assert loop.run(_name()) == "uvloop"


def test_run_returns_the_result_and_closes_its_loop() -> None:
    async def main() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    used = loop.run(main())
    assert used.is_closed()


def test_event_loop_setting_from_env_and_toml(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, environ={}).event_loop == "auto"
    env = {"SYNCD_EVENT_LOOP": "AsyncIO"}
    assert load_settings(data_dir=tmp_path, environ=env).event_loop == "asyncio"
    (tmp_path / "config.toml").write_text('event_loop = "uvloop"\n')
    assert load_settings(data_dir=tmp_path, environ={}).event_loop == "uvloop"
    with pytest.raises(ConfigError, match="SYNCD_EVENT_LOOP"):
        load_settings(data_dir=tmp_path, environ={"SYNCD_EVENT_LOOP": "trio"})


async def _name() -> str:
    return loop.running_loop_name()


def test_tune_gc_freezes_the_startup_heap_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        loop.tune_gc()
        assert gc.get_threshold() == loop.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what exists now is out of future collections
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
