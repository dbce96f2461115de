"""The cloud client keeps its connection across the 30 s periodic pull (http.py
``KEEPALIVE_S``), and a connection the server closed while it was idle costs no failed
request: httpcore sees it closed before it takes it from the pool and opens a new one. Against
a tiny HTTP/1.1 server on asyncio streams (real sockets) that counts its connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from daemon.sync.cloud.http import CloudHttp
from daemon.sync.driver import DriverSettings
from tests.helpers import MS

from .test_cloud_http_bounds import read_request

WITHIN = 5_000 * MS
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class KeepAliveServer:
    """Answers every request with ``{}`` on a kept-alive connection; with ``close_idle``, it
    closes each connection once it answered (as a server's idle timeout does, without a
    ``Connection: close``). ``connections`` counts those accepted; ``closed`` is set whenever
    the server has closed one."""

    def __init__(self, *, close_idle: bool) -> None:
        self.close_idle = close_idle
        self.connections = 0
        self.closed = asyncio.Event()
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await read_request(reader)
                writer.write(ANSWER)
                await writer.drain()
                if self.close_idle:
                    break
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        self.closed.set()


@contextlib.asynccontextmanager
async def serving(server: KeepAliveServer) -> AsyncIterator[KeepAliveServer]:
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()


async def test_an_idle_connection_outlives_the_periodic_pull() -> None:
    """The client's pool keeps an idle connection longer than the pull interval (it let it
    go after 4 s: every 30 s pull was a new TCP and TLS handshake)."""
    cloud = CloudHttp("http://127.0.0.1:9", "anon")
    try:
        pool = cloud._client._transport._pool  # type: ignore[attr-defined]
        assert pool._keepalive_expiry > DriverSettings().pull_interval_s
    finally:
        await cloud.aclose()


async def test_requests_reuse_the_kept_connection() -> None:
    async with serving(KeepAliveServer(close_idle=False)) as server:
        cloud = CloudHttp(server.url, "anon")
        try:
            for _ in range(3):
                async with asyncio.timeout(WITHIN):
                    response = await cloud.send("POST", "/rest/v1/rpc/x", operation="rest.rpc")
                assert response.json() == {}
        finally:
            await cloud.aclose()
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """Each request finds its idle connection closed by the server: it succeeds on a new
    one (no ``reset`` failure, so no retry and no backoff)."""
    rounds = 3
    async with serving(KeepAliveServer(close_idle=True)) as server:
        cloud = CloudHttp(server.url, "anon")
        try:
            for _ in range(rounds):
                server.closed.clear()
                async with asyncio.timeout(WITHIN):
                    response = await cloud.send("POST", "/rest/v1/rpc/x", operation="rest.rpc")
                    assert response.json() == {}
                    await server.closed.wait()  # the connection in the pool is closed now
        finally:
            await cloud.aclose()
    assert server.connections == rounds
