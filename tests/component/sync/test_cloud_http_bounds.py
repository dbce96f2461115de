"""A cloud that answers too slowly or too much cannot wedge or exhaust the daemon (http.py
``Bounds``): an answer trickling in fails the request at its deadline as a ``timeout``; an
answer over its size is given up (``too_large``) without being read whole. Against a tiny
HTTP/1.1 server on asyncio streams (a real socket: httpx's own per-read timeout is in play),
and through the sync driver with an httpx mock whose answer trickles."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from daemon.store import Store
from daemon.sync.cloud import http
from daemon.sync.cloud.errors import CloudProtocolError, CloudUnavailable
from daemon.sync.cloud.http import Bounds, CloudHttp, decode_json
from daemon.sync.retry import Backoff
from tests.component.sync.mock_cloud import grant, link_workspace, mocked_driver
from tests.helpers import MS

WITHIN = 5_000 * MS
#: The bounds under test: short and small, so that each test takes well under a second.
SMALL = {"rest": Bounds(deadline_s=300 * MS, max_bytes=256 << 10)}

#: ~59 s (rand 0.99): the driver's own retry does not come during a test
SLOW = Backoff(base_s=60.0, cap_s=60.0)

Answer = Callable[["TinyServer", asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> None:
    """Read one HTTP/1.1 request, its body too (Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n")
         if line.lower().startswith(b"content-length:")),
        0,
    )  # fmt: skip
    await reader.readexactly(length)


class TinyServer:
    """Answers every request with ``answer``; counts the bytes of answer it could send."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent = 0
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        with contextlib.suppress(ConnectionError):  # the client hanging up: what is tested
            await self.answer(self, writer)
        writer.close()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.sent += len(data)


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[TinyServer]:
    server = TinyServer(answer)
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    async with listening:
        yield server


def head(extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


async def trickle(server: TinyServer, writer: asyncio.StreamWriter) -> None:
    """200 and its headers at once, then one byte of a long body every 50 ms (a stalled
    proxy): each read gets a byte well within httpx's per-read timeout."""
    await server.write(writer, head("Content-Length: 100000\r\n"))
    while True:
        await server.write(writer, b" ")
        await asyncio.sleep(50 * MS)


async def endless(server: TinyServer, writer: asyncio.StreamWriter) -> None:
    """A JSON array that does not end (no Content-Length: the body ends with the connection)."""
    await server.write(writer, head("Connection: close\r\n") + b"[")
    chunk = b"0," * (32 << 10)
    while server.sent < 64 << 20:  # (the test fails long before, if nothing stops reading)
        await server.write(writer, chunk)


async def declared_huge(server: TinyServer, writer: asyncio.StreamWriter) -> None:
    """A Content-Length of 2 GB, then a body that never comes."""
    await server.write(writer, head(f"Content-Length: {2 << 30}\r\n"))
    await asyncio.Event().wait()


async def gzipped(server: TinyServer, writer: asyncio.StreamWriter) -> None:
    body = gzip.compress(orjson.dumps([{"id": "a"}] * 1000))
    extra = f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
    await server.write(writer, head(extra) + body)


async def test_an_answer_trickling_in_fails_at_the_deadline_as_a_timeout() -> None:
    async with serving(trickle) as server, CloudHttp(server.url, "anon", bounds=SMALL) as cloud:
        send = cloud.send("POST", "/rest/v1/rpc/sync_push", operation="rest.push", content=b"{}")
        with pytest.raises(CloudUnavailable) as failed:
            await asyncio.wait_for(send, WITHIN)  # was: never answered (a read every 50 ms)
        assert failed.value.reason == "timeout" and failed.value.retryable
        assert 0 < server.sent < 1000  # it did answer, slowly


@pytest.mark.parametrize("answer", [endless, declared_huge], ids=["endless", "declared"])
async def test_an_answer_over_its_size_is_given_up_unread(answer: Answer) -> None:
    async with serving(answer) as server, CloudHttp(server.url, "anon", bounds=SMALL) as cloud:
        send = cloud.send("POST", "/rest/v1/rpc/sync_pull", operation="rest.pull", content=b"{}")
        with pytest.raises(CloudProtocolError) as failed:
            await asyncio.wait_for(send, WITHIN)
        assert failed.value.reason == "too_large" and failed.value.retryable
        # read no further than the cap (plus what the sockets' buffers took on the way)
        assert server.sent < 16 << 20


async def test_an_answer_within_its_size_is_read_whole_and_decoded() -> None:
    async with serving(gzipped) as server, CloudHttp(server.url, "anon", bounds=SMALL) as cloud:
        response = await cloud.send("GET", "/rest/v1/workspaces", operation="rest.workspaces")
        assert decode_json(response, operation="rest.workspaces") == [{"id": "a"}] * 1000
        assert "content-encoding" not in response.headers  # (kept decoded)


class Trickle(httpx.AsyncByteStream):
    """A body that sends one byte, then waits for ever."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"["
        await asyncio.Event().wait()


def trickling_push(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/auth/v1/token":
        return httpx.Response(200, json=grant())
    if path == "/rest/v1/rpc/sync_pull":
        return httpx.Response(200, json={"changes": [], "cursor": None, "has_more": False})
    if path == "/rest/v1/rpc/sync_push":
        return httpx.Response(200, stream=Trickle())
    return httpx.Response(404, json={"code": "PGRST202"})


async def test_a_push_whose_answer_trickles_in_fails_and_is_retried(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sync.push`` answered the timeout (was: never answered, until a restart); the
    outbox is kept for the retry."""
    monkeypatch.setattr(http, "BOUNDS", SMALL)
    async with mocked_driver(
        store, tmp_path, trickling_push,
        backoff=SLOW, rand=lambda: 0.99, pull_interval_s=3600.0,
    ) as driver:  # fmt: skip
        ws_id = await link_workspace(store, driver)
        result = await asyncio.wait_for(driver.sync_now("push"), WITHIN)
        assert result["error"] == "timeout" and result["applied"] == 0
        assert (await store.sync.counts())["outbox"] == 2
        status = driver.syncs[ws_id].status
        assert (status.state, status.error) == ("error", "timeout")
        assert status.retry_at is not None  # the backoff runs
