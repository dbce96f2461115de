"""A ``subscribe {since}`` older than what the byte bound (``changelog_retain_bytes``) kept
answers the explicit refetch (invariant I7); a ``since`` among the kept entries replays."""

from __future__ import annotations

from pathlib import Path

from websockets.asyncio.client import connect

from daemon.config import BridgeSettings, StoreSettings
from daemon.store import Store
from ui_bridge.server import BridgeServer

from .conftest import Rpc, auth


async def test_since_pruned_by_size_is_an_explicit_refetch(tmp_path: Path) -> None:
    settings = StoreSettings(changelog_retain_bytes=100_000)  # count bound: 100k, not reached
    store = await Store.open(tmp_path / "syncd.db", settings)
    server = BridgeServer(BridgeSettings(port=0), store=store, data_dir=tmp_path, version="t")
    await server.start()
    try:
        async with connect(server.url, additional_headers=auth(server)) as ws:
            rpc = Rpc(ws)
            ws_row = await rpc.call("workspace.create", {"name": "w"})
            conv = await rpc.call(
                "conversation.create", {"workspace_id": ws_row["id"], "name": "c"}
            )
            for i in range(20):  # 20 x 20 kB
                params = {
                    "conversation_id": conv["id"],
                    "role": "user",
                    "content": f"{i:02d}" * 10_000,
                }
                await rpc.call("message.send", params)
            first = await store.changelog.first_seq()
            last = await store.changelog.last_seq()
            assert last == 22 and 3 < first < last - 2  # pruned by size only
            for since in (0, first - 2):
                reply = await rpc.request("subscribe", {"topics": ["**"], "since": since})
                assert reply["error"]["code"] == -32001, since
                assert reply["error"]["data"]["reason"] == "refetch"
                assert reply["error"]["message"] == "Events no longer retained: refetch"
            ok = await rpc.call("subscribe", {"topics": ["**"], "since": first - 1})
            assert ok["seq"] == first - 1
            replayed = [await rpc.next_event() for _ in range(first, last + 1)]
            assert [e["seq"] for e in replayed] == list(range(first, last + 1))
            assert replayed[-1]["data"]["content"] == "19" * 10_000
    finally:
        await server.stop()
        await store.close()
