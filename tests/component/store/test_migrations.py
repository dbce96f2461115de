"""Migrations: from an empty database, from every earlier version, refusal of newer ones."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from daemon.config import StoreSettings
from daemon.errors import MigrationError, StoreError
from daemon.store import Store, migrate
from daemon.store.schema import metadata
from daemon.store.sql import list_sql
from daemon.store.sync_sql import (
    outbox_count_linked_sql,
    outbox_pending_fields_sql,
    rejected_creates_sql,
    rejected_of_row_sql,
    snapshot_conversations_sql,
)

from .conftest import rows

LATEST = len(migrate.discover())


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return rows(
        conn,
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
    )


def database_at(path: Path, version: int) -> sqlite3.Connection:
    """A fixture database built by the migration files up to ``version``."""
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate.migrate(conn, target=version) == version
    return conn


def seed_version_1(conn: sqlite3.Connection) -> None:
    """Rows as a version-1 daemon wrote them."""
    ts, clock, dev = "2026-01-01T00:00:00.000Z", "1767225600000-000000-dev", "dev"
    conn.execute("INSERT INTO meta VALUES ('device_id', 'dev')")
    conn.execute(
        "INSERT INTO workspaces (id, name, created_at, updated_at, hlc, origin)"
        " VALUES ('w1', 'old', ?, ?, ?, ?)",
        (ts, ts, clock, dev),
    )
    conn.execute(
        "INSERT INTO conversations (id, workspace_id, name, created_at, updated_at, hlc, origin)"
        " VALUES ('c1', 'w1', 'chat', ?, ?, ?, ?)",
        (ts, ts, clock, dev),
    )
    conn.execute(
        "INSERT INTO tasks (id, workspace_id, kind, created_at, updated_at, hlc, origin)"
        " VALUES ('t1', 'w1', 'build', ?, ?, ?, ?)",
        (ts, ts, clock, dev),
    )
    conn.execute(
        "INSERT INTO changelog (topic, row_id, workspace_id, data, created_at)"
        " VALUES ('workspace.created', 'w1', 'w1', '{}', ?)",
        (ts,),
    )


def test_empty_database_migrates_to_latest(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        assert migrate.migrate(conn) == LATEST
        assert migrate.schema_version(conn) == LATEST
        assert rows(conn, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(LATEST),)]
        assert migrate.migrate(conn) == LATEST  # idempotent
    finally:
        conn.close()


@pytest.mark.parametrize("version", range(1, LATEST))
def test_every_earlier_version_migrates_with_its_data(tmp_path: Path, version: int) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh", isolation_level=None)
    migrate.migrate(fresh)
    old = database_at(tmp_path / "old", version)
    try:
        seed_version_1(old)
        assert migrate.migrate(old) == LATEST
        assert schema_of(old) == schema_of(fresh)
        assert rows(old, "SELECT name FROM workspaces") == [("old",)]
        assert rows(old, "SELECT status, priority, attempts FROM tasks") == [("queued", 0, 0)]
        assert rows(old, "PRAGMA integrity_check") == [("ok",)]
    finally:
        old.close()
        fresh.close()


async def test_store_opens_an_old_database_and_keeps_its_device_and_seq(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    conn = database_at(path, 1)
    seed_version_1(conn)
    conn.close()
    store = await Store.open(path, StoreSettings())
    try:
        assert store.device_id == "dev"
        assert (await store.workspaces.get("w1"))["name"] == "old"
        ws = await store.workspaces.create(name="new")
        assert [e.data["id"] for e in await store.changelog.read_since(1)] == [ws["id"]]
    finally:
        await store.close()


def test_sqlalchemy_tables_match_the_migrated_schema(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        migrate.migrate(conn)
        for table in metadata.sorted_tables:
            info = rows(conn, f"PRAGMA table_info({table.name})")
            in_db = [
                (name, bool(notnull) or bool(pk), bool(pk)) for _, name, _, notnull, _, pk in info
            ]
            in_code = [(c.name, not c.nullable, c.primary_key) for c in table.columns]
            assert in_db == in_code, table.name
    finally:
        conn.close()


async def test_device_id_is_created_once(db_path: Path) -> None:
    first = await Store.open(db_path, StoreSettings())
    device = first.device_id
    await first.close()
    second = await Store.open(db_path, StoreSettings())
    try:
        assert second.device_id == device
    finally:
        await second.close()


async def test_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(MigrationError, match="newer than this syncd"):
        await Store.open(path, StoreSettings())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == ["syncd.db"]  # no WAL created


async def test_a_file_that_is_not_a_database_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        await Store.open(path, StoreSettings())


def test_a_failing_migration_rolls_every_pending_one_back(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for m in migrate.discover():
        shutil.copy(m.path, folder / m.path.name)
    (folder / f"{LATEST + 1:04d}_broken.sql").write_text("CREATE TABLE ok (x);\nNOT SQL;\n")
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        with pytest.raises(MigrationError, match="nothing changed"):
            migrate.migrate(conn, migrate.discover(folder))
        assert migrate.schema_version(conn) == 0
        assert schema_of(conn) == []
    finally:
        conn.close()


def test_python_migrations_are_supported(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_base.sql").write_text("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);")
    (folder / "0002_seed.py").write_text(
        "def migrate(conn):\n    conn.execute(\"INSERT INTO meta VALUES ('seeded', 'yes')\")\n"
    )
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        assert migrate.migrate(conn, migrate.discover(folder)) == 2
        assert ("seeded", "yes") in rows(conn, "SELECT key, value FROM meta")
    finally:
        conn.close()


def test_gaps_and_duplicates_in_numbering_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("SELECT 1;")
    (folder / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="0002"):
        migrate.discover(folder)
    (folder / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="two migrations"):
        migrate.discover(folder)


def test_statement_splitting_keeps_semicolons_inside_strings() -> None:
    script = "-- comment\nCREATE TABLE t (x);\n\nINSERT INTO t VALUES ('a;b');\n"
    assert migrate.split_statements(script) == [
        "CREATE TABLE t (x);",
        "INSERT INTO t VALUES ('a;b');",
    ]


def plan_ops(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f"EXPLAIN {sql}", [None] * sql.count("?"))]


def test_checked_inserts_build_no_in_list_table(tmp_path: Path) -> None:
    """0006: the CHECKs are OR chains, so an INSERT builds no ephemeral b-tree of the IN list
    (SQLite does that per row for three constants or more), and still refuse what they did."""
    old = database_at(tmp_path / "db", 5)
    seed_version_1(old)
    message = "INSERT INTO messages VALUES ('m1', 'w1', 'c1', ?, 'hi', 't', 't', NULL, 'h', 'dev')"
    outbox = (
        "INSERT INTO outbox (table_name, row_id, op, fields, field_hlc, hlc, origin, created_at)"
        " VALUES ('messages', 'm1', ?, '{}', '{}', 'h', 'dev', 't')"
    )
    try:
        assert "OpenEphemeral" in plan_ops(old, message)  # what 0001 wrote
        migrate.migrate(old)
        other = sqlite3.connect(tmp_path / "db", isolation_level=None)  # sees the new schema
        for conn in (old, other):
            assert "OpenEphemeral" not in plan_ops(conn, message)
            assert "OpenEphemeral" not in plan_ops(conn, outbox)
            for sql, bad in ((message, "robot"), (outbox, "upsert")):
                with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                    conn.execute(sql, (bad,))
        other.close()
        old.execute(message, ("tool",))
        old.execute(outbox, ("delete",))
        assert rows(old, "PRAGMA integrity_check") == [("ok",)]
    finally:
        old.close()


def query_plan(conn: sqlite3.Connection, sql: str, params: dict[str, str] | None = None) -> str:
    return " ".join(str(r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params or {}))


def test_the_outbox_has_no_row_index_and_pending_fields_use_the_workspace_index(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        migrate.migrate(conn)
        indexes = rows(
            conn,
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox'"
            " ORDER BY name",
        )
        # every write's entry goes into outbox_workspace only: outbox_ranges is partial
        assert [name for name, _ in indexes] == ["outbox_ranges", "outbox_workspace"]
        assert str(indexes[0][1]).endswith("WHERE row_id = ''")
        params = {"_table": "tasks", "_ids": "[]", "_ws": "[]"}
        plan = query_plan(conn, outbox_pending_fields_sql(), params)
        assert "USING INDEX outbox_workspace" in plan
    finally:
        conn.close()


def test_the_outbox_count_finds_snapshot_ranges_on_their_partial_index(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        migrate.migrate(conn)
        plan = query_plan(conn, outbox_count_linked_sql())
        # the entries on the covering workspace index, the ranges on theirs: no walk by rowid
        assert "COVERING INDEX outbox_workspace" in plan
        assert "USING INDEX outbox_ranges" in plan and "PRIMARY KEY" not in plan
    finally:
        conn.close()


def test_a_link_snapshot_reads_the_messages_of_its_workspace_only(tmp_path: Path) -> None:
    """Linking a workspace counts its messages per conversation: from the workspace's
    conversations, each one's messages on their index; never a walk over every message of the
    store (100k messages elsewhere made each link of a small workspace read them all)."""
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        migrate.migrate(conn)
        plan = query_plan(conn, snapshot_conversations_sql(), {"ws": "w"})
        assert "SEARCH conversations USING COVERING INDEX conversations_workspace" in plan
        assert "SEARCH messages USING INDEX messages_conversation (conversation_id=?)" in plan
        assert "SCAN" not in plan
    finally:
        conn.close()


def test_rejections_are_looked_up_by_row_not_walked(tmp_path: Path) -> None:
    """Each outbox take asks which of its rows' creates were rejected, and settling a row reads
    its rejections: on the row index, whatever the number of rejections filed."""
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        migrate.migrate(conn)
        creates = query_plan(conn, rejected_creates_sql(), {"_ids": '["a", "b"]'})
        of_row = query_plan(conn, rejected_of_row_sql(), {"table_name": "t", "row_id": "a"})
        for plan in (creates, of_row):
            assert "SEARCH rejected USING INDEX rejected_row (row_id=?)" in plan
            assert "SCAN rejected" not in plan
    finally:
        conn.close()


TASK_FILTERS = [(), ("status",), ("workspace_id",), ("status", "workspace_id")]


@pytest.mark.parametrize("filters", TASK_FILTERS)
@pytest.mark.parametrize("has_cursor", [False, True])
def test_every_task_list_page_is_read_on_an_index_in_id_order(
    tmp_path: Path, filters: tuple[str, ...], has_cursor: bool
) -> None:
    """``task.list {status}`` used to read every task of that status and sort them for each
    page (50,000 queued tasks: 120 ms a page, minutes to list them, the reader held meanwhile):
    each filter must have an index that yields its rows in id order from the cursor on."""
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        migrate.migrate(conn)
        compiled = list_sql("tasks", filters, has_cursor, live_workspace=True)
        values = {"status": "queued", "workspace_id": "w", "_limit": 51, "_after": "t"}
        plan = query_plan(conn, compiled.sql, compiled.params(values))
        assert "TEMP B-TREE" not in plan  # no sort: the index gives the id order
        searched = re.search(r"(?:SEARCH|SCAN) tasks USING INDEX \w+(?: \((.*?)\))?", plan)
        assert searched is not None, plan
        terms = set((searched[1] or "").split(" AND "))
        # every filter and the cursor narrow the index range: no walk over other rows
        expected = {f"{name}=?" for name in filters} | ({"id>?"} if has_cursor else set())
        assert terms - {""} == expected, plan
    finally:
        conn.close()
