"""devcloud when a client dies half-way through sending a request (a SIGKILLed daemon pushing):
no ERROR traceback in the log, only a DEBUG line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import wait_for


async def test_a_client_gone_before_its_body_arrived_is_logged_quietly(
    devcloud: RunningDevcloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", devcloud.port)
    head = (
        "POST /rest/v1/rpc/sync_push HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{devcloud.port}\r\n"
        f"apikey: {devcloud.anon_key}\r\n"
        f"Authorization: Bearer {devcloud.anon_key}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n"
        '{"changes": ['
    )
    writer.write(head.encode())
    await writer.drain()
    writer.close()  # the rest of the body never comes
    await writer.wait_closed()

    def handled() -> bool:
        return any(
            "client_disconnected" in r.getMessage() or r.levelno >= logging.ERROR
            for r in caplog.records
        )

    await wait_for(handled, message="devcloud to notice the client went away")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors[0].getMessage() if errors else ""
    [quiet] = [r for r in caplog.records if "client_disconnected" in r.getMessage()]
    assert quiet.levelno == logging.DEBUG and quiet.name == "devcloud.rest.routes"
