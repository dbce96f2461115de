"""A real Store on a SQLite file in tmp_path, plus raw sqlite3 access to check what it wrote."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.config import StoreSettings
from daemon.store import Store, engine


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "syncd.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(db_path, StoreSettings())
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def untimed_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inline groups are split by count only: a busy machine could otherwise pass a group's
    time budget (``INLINE_BUDGET_S``, 2 ms; it has its own test) and split a group a test
    expects whole."""
    monkeypatch.setattr(engine, "INLINE_BUDGET_S", 3600.0)


@pytest.fixture
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A second, plain connection to the same file (sees only committed data)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def rows(conn: sqlite3.Connection, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()
