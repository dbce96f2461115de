"""The daemon checks its database in the background once it listens (app.py, store/
integrity.py): a damaged file is said (an ERROR line, ``daemon.status``, a ``daemon.status``
event to the UIs) while the daemon keeps serving; a healthy one is ``ok``, quietly; the check
can be turned off. Whole daemons in this process, a real client over the local WebSocket."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from daemon import cli_cloud
from daemon.app import Daemon
from daemon.config import BridgeSettings, Settings, StoreSettings
from daemon.store.engine import run_in_thread
from tests.helpers import MS, overwrite_a_leaf_page, store_with_messages, wait_for
from ui_bridge.client import Client, connect


def settings_for(data_dir: Path, *, integrity_check: bool = True) -> Settings:
    return Settings(
        data_dir=data_dir,
        store=StoreSettings(integrity_check=integrity_check),
        bridge=BridgeSettings(port=0),
    )


async def make_data_dir(data_dir: Path) -> Path:
    """A data dir whose database holds a few hundred messages; its path."""
    path = data_dir / "syncd.db"
    await (await store_with_messages(path))[0].close()
    return path


async def store_status(client: Client) -> dict[str, Any]:
    return dict((await client.call("daemon.status"))["store"])


async def status_text(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """What ``syncd status`` prints (it runs its own event loop: in a thread)."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli_cloud.status, settings_for(data_dir), as_json=False)
    assert code == 0
    return capsys.readouterr().out


def stored_status_events(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(
            conn.execute("SELECT count(*) FROM changelog WHERE topic = 'daemon.status'").fetchone()[
                0
            ]
        )
    finally:
        conn.close()


async def test_a_damaged_database_is_said_to_the_log_the_status_and_the_uis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    path = await make_data_dir(data_dir)
    overwrite_a_leaf_page(path)
    caplog.set_level(logging.INFO, logger="daemon")

    async with Daemon(settings_for(data_dir)), await connect(data_dir=data_dir) as client:
        # (subscribed before the check ends: the event comes live; after: retained, first)
        events = await client.subscribe(["daemon.*"])
        event = await asyncio.wait_for(anext(events), 10_000 * MS)
        store = await store_status(client)
        assert (await client.call("workspace.create", {"name": "served"}))["name"] == "served"
        said = await status_text(data_dir, capsys)

    assert f"  database     DAMAGED: {store['detail']}; stop the daemon" in said
    assert event.topic == "daemon.status" and event.data == {"id": "daemon.status", "store": store}
    assert store["integrity"] == "damaged" and store["detail"] and store["checked_at"]
    assert "PRAGMA integrity_check" in store["advice"]
    damaged = [r for r in caplog.records if r.getMessage().startswith("store.integrity.damaged")]
    assert [r.levelno for r in damaged] == [logging.ERROR]
    assert str(path) in damaged[0].getMessage()
    assert "PRAGMA integrity_check" in damaged[0].getMessage()
    assert stored_status_events(path) == 1


async def test_a_healthy_database_is_ok_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    path = await make_data_dir(data_dir)
    caplog.set_level(logging.INFO, logger="daemon")

    async with Daemon(settings_for(data_dir)), await connect(data_dir=data_dir) as client:
        await wait_for(
            lambda: _is(store_status(client), "ok"), message="the integrity check to end"
        )
        store = await store_status(client)
        said = await status_text(data_dir, capsys)

    assert set(store) == {"integrity", "checked_at"} and store["checked_at"]
    assert f"  database     ok (checked at {store['checked_at']})\n" in said
    assert [r.levelno for r in caplog.records if "store.integrity" in r.getMessage()] == [
        logging.INFO
    ]
    assert stored_status_events(path) == 0  # no event: nothing for a UI to react to


async def test_the_check_can_be_turned_off(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = await make_data_dir(data_dir)
    overwrite_a_leaf_page(path)

    async with (
        Daemon(settings_for(data_dir, integrity_check=False)) as daemon,
        await connect(data_dir=data_dir) as client,
    ):
        assert daemon._integrity is not None
        await asyncio.wait_for(daemon._integrity, 10_000 * MS)  # it ended at once
        assert await store_status(client) == {"integrity": "off", "checked_at": None}
    assert stored_status_events(path) == 0


async def _is(status: Any, state: str) -> bool:
    return bool((await status)["integrity"] == state)


async def test_a_status_event_the_store_refuses_still_reaches_the_uis_listening(
    tmp_path: Path,
) -> None:
    """A damaged file may refuse the event's write (here the writer's connection is made
    read-only: the write fails, as one on a corrupt page does): the UIs listening get it live."""
    data_dir = tmp_path / "data"
    await make_data_dir(data_dir)
    settings = settings_for(data_dir, integrity_check=False)
    async with Daemon(settings) as daemon, await connect(data_dir=data_dir) as client:
        events = await client.subscribe(["daemon.status"])
        store = daemon.store
        assert store is not None
        await run_in_thread(store._writer_conn, lambda conn: conn.execute("PRAGMA query_only = ON"))
        part = {"store": {"integrity": "damaged", "checked_at": "now", "detail": "page 3"}}
        await daemon._publish_status(part)
        event = await asyncio.wait_for(anext(events), 10_000 * MS)
        await run_in_thread(
            store._writer_conn, lambda conn: conn.execute("PRAGMA query_only = OFF")
        )

    assert (event.topic, event.ephemeral) == ("daemon.status", True)
    assert event.data == {"id": "daemon.status", **part}
    assert stored_status_events(data_dir / "syncd.db") == 0
