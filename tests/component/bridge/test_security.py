"""Access control before the upgrade, loopback-only binding, frame limits, no secrets in logs."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from daemon.config import load_settings
from tests.helpers import MS, wait_for
from ui_bridge.server import BridgeServer

from .conftest import MakeBridge, Rpc, auth


async def handshake(
    server: BridgeServer,
    *,
    path: str = "/",
    host: str | None = None,
    origin: str | None = None,
    authorization: str | None = None,
    upgrade: bool = True,
) -> int:
    """Send a raw upgrade request (without its Upgrade and Connection headers unless
    ``upgrade``); return the HTTP status of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host if host is not None else f'127.0.0.1:{server.port}'}",
    ]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    lines += ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5_000 * MS)
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


async def test_valid_token_upgrades(bridge: BridgeServer) -> None:
    bearer = f"Bearer {bridge.token}"
    assert await handshake(bridge, authorization=bearer) == 101
    assert await handshake(bridge, path=f"/?token={bridge.token}") == 101
    assert await handshake(bridge, host=f"localhost:{bridge.port}", authorization=bearer) == 101


async def test_missing_or_wrong_token_is_401(bridge: BridgeServer) -> None:
    assert await handshake(bridge) == 401
    assert await handshake(bridge, authorization="Bearer wrong") == 401
    assert await handshake(bridge, authorization=f"Basic {bridge.token}") == 401
    assert await handshake(bridge, path="/?token=wrong") == 401
    assert await handshake(bridge, path=f"/?token={bridge.token[:-1]}") == 401


async def test_foreign_origin_is_403(bridge: BridgeServer) -> None:
    bearer = f"Bearer {bridge.token}"
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{bridge.port + 1}"):
        assert await handshake(bridge, origin=origin, authorization=bearer) == 403, origin
    for origin in (
        f"http://127.0.0.1:{bridge.port}",
        f"http://localhost:{bridge.port}",
        "vscode-webview://1a2b3c",
        "vscode-file://vscode-app",
    ):
        assert await handshake(bridge, origin=origin, authorization=bearer) == 101, origin


async def test_configured_origins_are_allowed(make_bridge: MakeBridge) -> None:
    server = await make_bridge(allowed_origins=("https://editor.example", "app://*"))
    bearer = f"Bearer {server.token}"
    assert await handshake(server, origin="https://editor.example", authorization=bearer) == 101
    assert await handshake(server, origin="app://x", authorization=bearer) == 101
    assert await handshake(server, origin="https://other.example", authorization=bearer) == 403


async def test_configured_origins_match_what_browsers_send(
    make_bridge: MakeBridge, tmp_path: Path
) -> None:
    """SYNCD_ALLOWED_ORIGINS as a user writes it (spaces, a trailing slash, capitals) lets in
    the page whose browser sends ``https://app.example``: scheme://host[:port], no slash."""
    env = {"SYNCD_ALLOWED_ORIGINS": "http://localhost:3000, https://App.Example/"}
    settings = load_settings(data_dir=tmp_path, environ=env)
    server = await make_bridge(allowed_origins=settings.bridge.allowed_origins)
    bearer = f"Bearer {server.token}"
    for origin in ("https://app.example", "http://localhost:3000", "HTTPS://APP.EXAMPLE"):
        assert await handshake(server, origin=origin, authorization=bearer) == 101, origin
    for origin in ("https://app.example.evil", "http://app.example", "https://app.example:8443"):
        assert await handshake(server, origin=origin, authorization=bearer) == 403, origin


async def test_host_and_origin_names_are_case_insensitive(bridge: BridgeServer) -> None:
    bearer = f"Bearer {bridge.token}"
    port = bridge.port
    for host in (f"LOCALHOST:{port}", f"LocalHost:{port}"):
        assert await handshake(bridge, host=host, authorization=bearer) == 101, host
    for origin in (f"http://LOCALHOST:{port}", f"HTTP://localhost:{port}", "VSCODE-WEBVIEW://x"):
        assert await handshake(bridge, origin=origin, authorization=bearer) == 101, origin
    assert await handshake(bridge, host=f"LOCALHOST.evil:{port}", authorization=bearer) == 403


async def test_foreign_host_is_403(bridge: BridgeServer) -> None:
    bearer = f"Bearer {bridge.token}"
    for host in ("evil.example", f"evil.example:{bridge.port}", "127.0.0.1", "127.0.0.1:1"):
        assert await handshake(bridge, host=host, authorization=bearer) == 403, host


async def test_other_paths_are_404(bridge: BridgeServer) -> None:
    assert await handshake(bridge, path="/other", authorization=f"Bearer {bridge.token}") == 404


async def test_client_library_sees_the_refusal(bridge: BridgeServer) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as info:
        await connect(bridge.url, additional_headers={"Authorization": "Bearer nope"})
    assert info.value.response.status_code == 401


def _other_local_addresses() -> list[str]:
    addresses = ["127.0.0.2"]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = probe.getsockname()[0]
        if not address.startswith("127.") and address != "0.0.0.0":
            addresses.append(address)
    except OSError:
        pass
    finally:
        probe.close()
    return addresses


async def test_bound_to_loopback_only(bridge: BridgeServer) -> None:
    assert bridge._server is not None
    bound = {sock.getsockname()[0] for sock in bridge._server.sockets}
    assert bound == {"127.0.0.1"}
    for address in _other_local_addresses():
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(address, bridge.port), 2_000 * MS)
    # IPv6 loopback is a different interface too.
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("::1", bridge.port), 2_000 * MS)


async def test_non_loopback_host_setting_is_refused(make_bridge: MakeBridge) -> None:
    from daemon.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        await make_bridge(host="0.0.0.0")
    assert info.value.key == "bridge.host"


async def test_oversized_frame_closes_with_1009(make_bridge: MakeBridge, open_rpc: Any) -> None:
    server = await make_bridge(max_frame_bytes=4096)
    rpc: Rpc = await open_rpc(server)
    await rpc.send('{"jsonrpc":"2.0","method":"daemon.ping","params":{"x":"' + "a" * 5000 + '"}}')
    with pytest.raises(ConnectionClosedError):
        await rpc.recv()
    assert rpc.ws.close_code == 1009
    assert rpc.ws.close_reason  # a reason says why
    # The server is still up for everyone else.
    other: Rpc = await open_rpc(server)
    assert await other.call("daemon.ping") == {"pong": True}


async def test_token_never_logged(
    make_bridge: MakeBridge, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    from ui_bridge.client import connect as client_connect

    caplog.set_level(logging.DEBUG)
    server = await make_bridge()
    async with connect(f"{server.url}?token={server.token}") as ws:
        await ws.send('{"jsonrpc":"2.0","method":"daemon.ping","id":1}')
        await ws.recv()
    async with connect(server.url, additional_headers=auth(server)) as ws:
        await ws.send('{"jsonrpc":"2.0","method":"daemon.ping","id":1}')
        await ws.recv()
    async with await client_connect(data_dir=tmp_path) as client:
        assert await client.call("daemon.status")
    assert await handshake(server, authorization="Bearer wrong-token-value") == 401
    ours = [r for r in caplog.records if r.name.startswith(("ui_bridge", "daemon"))]
    assert any("Authorization" in r.getMessage() for r in ours), "header logging was captured"
    text = "\n".join(r.getMessage() for r in ours)
    assert server.token not in text
    assert "wrong-token-value" not in text


def handshake_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    records = (r for r in caplog.records if r.name == "ui_bridge.websockets")
    return [r for r in records if "handshake failed" in r.getMessage()]


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ("", "did not receive a valid HTTP request: connection closed while reading HTTP request"),
        ("GET / HTTP/1.0\r\n\r\n", "did not receive a valid HTTP request: unsupported protocol"),
        ("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "unsupported HTTP method"),
        ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", "connection closed while reading HTTP headers"),
    ],
    ids=["connect-and-close", "http-1.0", "post", "gives-up-mid-request"],
)
async def test_a_peer_that_sends_no_valid_request_is_one_info_line(
    bridge: BridgeServer, caplog: pytest.LogCaptureFixture, sent: str, reason: str
) -> None:
    """Port probes, plain HTTP clients and clients that give up are no daemon errors: one line
    at INFO saying what was wrong and who, no traceback (it was an ERROR with one)."""
    caplog.set_level(logging.INFO)
    _, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(sent.encode())
    writer.close()
    await writer.wait_closed()
    await wait_for(lambda: bool(handshake_failures(caplog)), message="the handshake failure")
    [record] = handshake_failures(caplog)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert reason in record.getMessage() and "peer=127.0.0.1:" in record.getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_request_without_upgrade_is_answered_426_and_logged_at_info(
    bridge: BridgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert await handshake(bridge, authorization=f"Bearer {bridge.token}", upgrade=False) == 426
    await wait_for(lambda: bool(handshake_failures(caplog)), message="the handshake failure")
    [record] = handshake_failures(caplog)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "missing Connection header" in record.getMessage()
    assert bridge.token not in record.getMessage()


async def test_a_failure_of_our_own_during_the_handshake_keeps_its_traceback(
    bridge: BridgeServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("a bug in the access check")

    monkeypatch.setattr("ui_bridge.server.check_handshake", broken)
    caplog.set_level(logging.INFO)
    assert await handshake(bridge, authorization=f"Bearer {bridge.token}") == 500
    await wait_for(lambda: bool(handshake_failures(caplog)), message="the handshake failure")
    [record] = handshake_failures(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
