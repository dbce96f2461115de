"""Store failures the user can act on reach a UI as clear JSON-RPC errors: a damaged row, a full
disk, a read-only database (dispatch.py ``map_error``), on a real store and connection."""

from __future__ import annotations

import sqlite3

from daemon.store import Store
from daemon.store.engine import run_in_thread

from .conftest import Rpc


async def test_a_damaged_row_neither_hides_the_list_nor_fails_without_saying_so(
    rpc: Rpc, store: Store
) -> None:
    ids = [(await rpc.call("workspace.create", {"name": f"w{i}"}))["id"] for i in range(3)]
    with sqlite3.connect(store.path, isolation_level=None) as raw:
        raw.execute("UPDATE workspaces SET field_hlc = '{bad' WHERE id = ?", (ids[1],))

    listing = await rpc.call("workspace.list")
    reply = await rpc.request("workspace.update", {"id": ids[1], "name": "x"})

    assert [w["id"] for w in listing["items"]] == ids
    assert listing["items"][1]["damaged"] == ["field_hlc"]
    assert reply["error"]["code"] == -32603
    assert reply["error"]["data"] == {
        "reason": "damaged_row", "table": "workspaces", "id": ids[1], "columns": ["field_hlc"],
    }  # fmt: skip
    assert "field_hlc" in reply["error"]["message"]


async def test_a_full_disk_is_answered_as_such(rpc: Rpc, store: Store) -> None:
    ws = await rpc.call("workspace.create", {"name": "w"})

    def fill(conn: sqlite3.Connection) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, as a full disk

    await run_in_thread(store._writer_conn, fill)
    reply = await rpc.request("workspace.update", {"id": ws["id"], "description": "d" * 100_000})

    assert reply["error"] == {
        "code": -32603,
        "message": f"the disk is full: cannot write {store.path}",
        "data": {"reason": "disk_full"},
    }
    assert (await rpc.call("workspace.get", {"id": ws["id"]}))["description"] != "d" * 100_000
