"""The one-clock form of an outbox entry (real SQLite files): a local write and a message's
link snapshot store ``field_hlc`` as ``{}`` (every field under the entry's ``hlc``), a row
whose fields carry different clocks keeps them spelt out, and the push reads both alike: a
clock for every field it sends. A change of one such entry is ``one_clock`` (it goes to the
cloud in the compact form, one ``hlc``; a change coalesced from several entries is not), and
batches weigh it so (``max_bytes``). Migration 0007 rewrites the entries an older daemon left
where the short form means the same.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from daemon.store import Store, migrate
from daemon.store.sql import OUTBOX_ONE_CLOCK

from .conftest import rows
from .linking import ORG, create_linked, take_all

ONE_CLOCK_VERSION = 7  # migrations/local/0007_outbox_one_clock.sql


def stored(raw: sqlite3.Connection, row_id: str) -> list[tuple[str, str, str]]:
    """(fields, field_hlc, hlc) of the row's entries as stored, oldest first."""
    sql = "SELECT fields, field_hlc, hlc FROM outbox WHERE row_id = ? ORDER BY id"
    return [(f, c, h) for f, c, h in rows(raw, sql, row_id)]


async def test_local_writes_store_one_clock_and_push_a_clock_per_field(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await create_linked(store, name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    renamed = await store.conversations.update(conv["id"], name="renamed")
    [(_, created_clocks, created_hlc), (_, edit_clocks, edit_hlc)] = stored(raw, conv["id"])
    [(msg_fields, msg_clocks, msg_hlc)] = stored(raw, msg["id"])
    assert created_clocks == edit_clocks == msg_clocks == OUTBOX_ONE_CLOCK
    assert (created_hlc, edit_hlc, msg_hlc) == (conv["hlc"], renamed["hlc"], msg["hlc"])

    taken = {c.row_id: c for c in await store.sync.take_outbox(workspace_ids=[ws["id"]])}
    pushed_msg = taken[msg["id"]]
    assert pushed_msg.fields == orjson.loads(msg_fields)
    assert pushed_msg.field_hlc == dict.fromkeys(pushed_msg.fields, msg["hlc"])
    assert pushed_msg.hlc == msg["hlc"] and pushed_msg.one_clock
    # Two one-clock entries of a row coalesce per field: the rename's clock where it wrote.
    pushed_conv = taken[conv["id"]]
    assert set(pushed_conv.field_hlc) == set(pushed_conv.fields)
    assert pushed_conv.field_hlc["name"] == pushed_conv.field_hlc["updated_at"] == renamed["hlc"]
    assert pushed_conv.field_hlc["created_at"] == conv["hlc"]
    assert pushed_conv.fields["name"] == "renamed" and pushed_conv.hlc == renamed["hlc"]
    assert not pushed_conv.one_clock


async def test_a_snapshot_keeps_clocks_spelt_out_only_where_they_differ(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await store.workspaces.create(name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    msg = await store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    ws = await store.workspaces.update(ws["id"], name="renamed")  # two clocks from now on
    await store.sync.link(workspace_id=ws["id"], org_id=ORG, path=None)
    [(_, ws_clocks, _)] = stored(raw, ws["id"])
    [(_, conv_clocks, _)] = stored(raw, conv["id"])
    assert stored(raw, msg["id"]) == []  # (in the snapshot range: sync_outbox.py)
    assert conv_clocks == OUTBOX_ONE_CLOCK
    assert orjson.loads(ws_clocks)["name"] == ws["hlc"] != ws["field_hlc"]["created_at"]

    taken = {c.row_id: c for c in await take_all(store, ws["id"])}
    assert {k: v for k, v in taken[ws["id"]].field_hlc.items() if k != "id"} == ws["field_hlc"]
    assert not taken[ws["id"]].one_clock
    for row in (conv, msg):
        assert taken[row["id"]].field_hlc == dict.fromkeys(taken[row["id"]].fields, row["hlc"])
        assert taken[row["id"]].one_clock


def compact_size(raw: sqlite3.Connection, row_id: str) -> int:
    """What a one-clock entry weighs in a batch: its fields and ``,"hlc":"<hlc>"`` (it is sent
    in the compact form, not with a clock per field)."""
    [(fields, _, hlc)] = stored(raw, row_id)
    return len(fields) + len(b',"hlc":') + len(orjson.dumps(hlc))


async def test_max_bytes_counts_one_clock_entries_as_sent_in_the_compact_form(
    store: Store, raw: sqlite3.Connection
) -> None:
    ws = await create_linked(store, name="w")
    conv = await store.conversations.create(workspace_id=ws["id"], name="c")
    sent = [
        await store.messages.create(conversation_id=conv["id"], role="user", content="x" * 300)
        for _ in range(2)
    ]
    assert {stored(raw, r["id"])[0][1] for r in (ws, conv, *sent)} == {OUTBOX_ONE_CLOCK}
    before = sum(compact_size(raw, r["id"]) for r in (ws, conv))
    first = compact_size(raw, sent[0]["id"])
    ids = [ws["id"]]

    async def taken(max_bytes: int) -> list[str]:
        found = await store.sync.take_outbox(workspace_ids=ids, max_bytes=max_bytes)
        return [c.row_id for c in found]

    assert await taken(before + first) == [ws["id"], conv["id"], sent[0]["id"]]
    assert await taken(before + first - 1) == [ws["id"], conv["id"]]


def entry(fields: dict[str, Any], clocks: dict[str, str], hlc: str) -> tuple[str, str, str]:
    return orjson.dumps(fields).decode(), orjson.dumps(clocks).decode(), hlc


def test_migration_0007_rewrites_only_entries_the_short_form_describes(tmp_path: Path) -> None:
    h1, h2 = "1767225600000-000000-dev", "1767225600001-000000-dev"
    cases = {
        "one": entry({"id": "m1", "content": "a"}, {"id": h1, "content": h1}, h1),
        "two_clocks": entry({"name": "a", "status": "s"}, {"name": h1, "status": h2}, h2),
        "older_than_hlc": entry({"name": "a"}, {"name": h1}, h2),
        "extra_key": entry({"shared_memory": {}}, {"shared_memory": h1, "shared_memory.k": h1}, h1),
        "missing_clock": entry({"name": "a", "status": "s"}, {"name": h1, "other": h1}, h1),
        "no_clock": entry({"name": "a"}, {}, h1),
    }
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    try:
        assert migrate.migrate(conn, target=ONE_CLOCK_VERSION - 1) == ONE_CLOCK_VERSION - 1
        conn.executemany(
            "INSERT INTO outbox (table_name, row_id, workspace_id, op, fields, field_hlc, hlc,"
            " origin, created_at) VALUES ('workspaces', ?, 'w', 'update', ?, ?, ?, 'dev', 'now')",
            [(name, *values) for name, values in cases.items()],
        )
        assert migrate.migrate(conn, target=ONE_CLOCK_VERSION) == ONE_CLOCK_VERSION
        after = dict(rows(conn, "SELECT row_id, field_hlc FROM outbox"))
    finally:
        conn.close()
    assert after == {
        name: OUTBOX_ONE_CLOCK if name == "one" else clocks
        for name, (_, clocks, _) in cases.items()
    }
