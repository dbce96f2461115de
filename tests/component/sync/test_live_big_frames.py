"""The daemon's Realtime socket takes the frames Realtime sends, however large they grow within
reason (daemon/realtime/connection.py ``MAX_FRAME_BYTES``): a 1.5 MiB broadcast, over
websockets' default 1 MiB, is delivered and the socket stays open, against devcloud."""

from __future__ import annotations

from typing import Any

from daemon.realtime.connection import RealtimeConnection
from daemon.realtime.frames import BroadcastReceived, ConnectionOpened
from daemon.realtime.states import ChannelState
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import MakeDevice
from .test_live_presence_frame import joined_device
from .test_live_private import rest_broadcast


async def test_a_broadcast_over_one_mib_arrives_and_the_socket_stays_open(
    devcloud: RunningDevcloud, make_device: MakeDevice
) -> None:
    _, ws_id, token = await joined_device(devcloud, make_device)
    events: list[Any] = []

    async def provide() -> str:
        return token

    async def record(event: Any) -> None:
        events.append(event)

    async with RealtimeConnection(
        devcloud.url, devcloud.anon_key, token_provider=provide, on_event=record, device_id="rt"
    ) as conn:
        await conn.join_workspace(ws_id)
        await wait_for(lambda: conn.channel_state(ws_id) is ChannelState.JOINED, message="joined")
        big = {"blob": "x" * (3 << 19)}  # 1.5 MiB
        await rest_broadcast(devcloud, devcloud.service_role_key, ws_id, "big", big)
        await rest_broadcast(devcloud, devcloud.service_role_key, ws_id, "marker", {"n": 1})

        def received() -> list[str]:
            return [e.event for e in events if isinstance(e, BroadcastReceived)]

        await wait_for(
            lambda: "marker" in received(), timeout=20_000 * MS, message="the marker arrived"
        )
        assert received() == ["big", "marker"]
        [payload] = [e.payload for e in events if isinstance(e, BroadcastReceived)][:1]
        assert payload == big
        assert sum(isinstance(e, ConnectionOpened) for e in events) == 1  # never reconnected
