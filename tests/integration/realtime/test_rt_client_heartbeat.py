"""A server that accepts the socket but never answers heartbeats: the client notices the missing
reply, drops the socket and connects again (real WebSocket server, no devcloud)."""

from __future__ import annotations

import json
from typing import Any

from rt_kit import Recorder
from websockets.asyncio.server import ServerConnection, serve

from daemon.realtime.connection import RealtimeConnection
from daemon.realtime.frames import ConnectionLost, ConnectionOpened
from daemon.sync.retry import Backoff
from tests.helpers import MS, wait_for


async def test_missing_heartbeat_replies_make_the_client_reconnect() -> None:
    connections: list[str] = []
    received: list[dict[str, Any]] = []

    async def silent(ws: ServerConnection) -> None:
        assert ws.request is not None
        connections.append(ws.request.path)
        async for message in ws:
            received.append(json.loads(message))

    async with serve(silent, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        rec = Recorder()
        rt = RealtimeConnection(
            f"http://127.0.0.1:{port}",
            "the-anon-key",
            token_provider=None,
            on_event=rec,
            device_id="device-a",
            heartbeat_interval_s=100 * MS,
            backoff=Backoff(base_s=10 * MS, cap_s=50 * MS),
        )
        async with rt:
            # The server sees the third socket before the client has read its handshake reply
            # (ConnectionOpened): wait for both sides, not only the server's.
            await wait_for(
                lambda: len(connections) >= 3 and len(rec.of(ConnectionOpened)) >= 3,
                message="two reconnects",
            )
    assert connections[0] == "/realtime/v1/websocket?apikey=the-anon-key&vsn=1.0.0"
    assert rec.of(ConnectionLost)[:2] == [ConnectionLost("heartbeat timeout")] * 2
    assert len(rec.of(ConnectionOpened)) >= 3
    heartbeats = [f for f in received if f["event"] == "heartbeat"]
    assert heartbeats and all(f["topic"] == "phoenix" and f["ref"] for f in heartbeats)
