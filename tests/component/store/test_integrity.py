"""The background integrity check (daemon/store/integrity.py) on real files: a healthy one, one
whose leaf page was overwritten, one named with bytes that are not UTF-8; and one stopped
before it ran (the daemon stopping)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from daemon.config import StoreSettings
from daemon.store import Store
from daemon.store.integrity import IntegrityCheck
from tests.helpers import overwrite_a_leaf_page, store_with_messages


async def test_a_healthy_database_is_ok(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    store, _, _ = await store_with_messages(path)
    try:
        check = IntegrityCheck(path, enabled=True)
        assert check.report.state == "checking"
        report = await check.run()
    finally:
        await store.close()
    assert report.state == "ok" and report.detail is None and report.checked_at is not None
    assert check.report == report


async def test_an_overwritten_page_is_damage_found_while_the_store_serves(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    await (await store_with_messages(path))[0].close()
    overwrite_a_leaf_page(path)

    store = await Store.open(path, StoreSettings(integrity_check=True))
    try:
        assert store.integrity.report.state == "checking"
        report = await store.integrity.run()
        ws = await store.workspaces.create(name="still writable")  # the writer was never held
    finally:
        await store.close()
    assert report.state == "damaged" and report.checked_at is not None
    # quick_check's list of problems, or (here, as SQLite is) the error it stopped at
    assert report.detail in ("database disk image is malformed",) or "page" in str(report.detail)
    assert report.as_status()["advice"].startswith("stop the daemon")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT name FROM workspaces WHERE id = ?", (ws["id"],)).fetchall()
    finally:
        conn.close()


async def test_a_path_that_is_not_utf8_is_checked(tmp_path: Path) -> None:
    data_dir = tmp_path / os.fsdecode(b"data\xff")
    path = data_dir / "syncd.db"
    store, _, _ = await store_with_messages(path, count=5)
    try:
        report = await IntegrityCheck(path, enabled=True).run()
    finally:
        await store.close()
    assert report.state == "ok", report


async def test_a_database_that_cannot_be_opened_is_a_failed_check(tmp_path: Path) -> None:
    report = await IntegrityCheck(tmp_path / "missing" / "syncd.db", enabled=True).run()
    assert report.state == "failed" and report.detail == "unable to open database file"


async def test_off_stays_off_and_a_stopped_check_does_not_run(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    await (await store_with_messages(path, count=1))[0].close()
    off = IntegrityCheck(path, enabled=False)
    assert (await off.run()).state == "off"
    stopped = IntegrityCheck(path, enabled=True)
    stopped.stop()  # the daemon stops before the check started
    assert (await stopped.run()).state == "checking"
    assert stopped._conn is None
