"""How frames reach the session: whole text frames straight from websockets' parser
(``BridgeConnection``), everything else (binary, fragmented, over the in-flight bound) through
websockets' queue; every kind is answered."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode

from tests.helpers import wait_for
from ui_bridge import session as session_module
from ui_bridge.jsonrpc import ErrorCode
from ui_bridge.server import BridgeServer
from ui_bridge.session import BridgeConnection

from .conftest import Gate, MakeBridge, Rpc
from .test_pipelining import frame, replies_by_id


def ping(req_id: str) -> bytes:
    return frame("daemon.ping", req_id)


async def test_text_frames_skip_the_queue_and_others_take_it(
    bridge: BridgeServer, rpc: Rpc
) -> None:
    assert (await rpc.request("daemon.ping"))["result"] == {"pong": True}
    (session,) = bridge.sessions
    assert isinstance(session.ws, BridgeConnection) and session.ws.frame_sink is not None
    taken: list[bytes] = []
    sink, text_sink = session.ws.frame_sink, session.ws.text_sink
    assert text_sink is not None

    def spy(f: Any) -> bool:
        took = sink(f)
        if took:
            taken.append(bytes(f.data))
        return took

    def text_spy(payload: bytes) -> bool:
        took = text_sink(payload)
        if took:
            taken.append(payload)
        return took

    session.ws.frame_sink, session.ws.text_sink = spy, text_spy
    await rpc.ws.send(ping("text").decode())  # a whole text frame
    await rpc.ws.send(ping("binary"))  # a binary frame
    text = ping("fragmented").decode()
    await rpc.ws.send([text[:10], text[10:20], text[20:]])  # one message in three frames
    replies = await replies_by_id(rpc, 3)
    assert {k: v["result"] for k, v in replies.items()} == {
        "text": {"pong": True},
        "binary": {"pong": True},
        "fragmented": {"pong": True},
    }
    assert taken == [ping("text")]  # only the whole text frame went straight to the session
    assert session._backlog == 0


async def test_invalid_utf8_in_a_text_frame_fails_the_connection_with_1007(
    make_bridge: MakeBridge, open_rpc: Any
) -> None:
    """RFC 6455 8.1: a text message that is not UTF-8 fails the connection (close 1007), on
    the direct path as on websockets' own; UTF-8 beyond ASCII is served, and the same bytes
    in a binary frame are a JSON parse error (a binary frame need not be text)."""
    server = await make_bridge()
    rpc: Rpc = await open_rpc(server)
    await rpc.ws.send('{"jsonrpc":"2.0","method":"daemon.ping","id":"\u00e9\u2713"}')
    assert (await rpc.recv())["id"] == "\u00e9\u2713"
    await rpc.ws.send(b'{"jsonrpc":"2.0","method":"\xff","id":1}')  # binary
    reply = await rpc.recv()
    assert reply["id"] is None and reply["error"]["code"] == ErrorCode.PARSE_ERROR
    await rpc.ws.send(b'{"jsonrpc":"2.0","method":"\xff","id":2}', text=True)
    with pytest.raises(ConnectionClosed):
        await rpc.recv()
    assert rpc.ws.close_code == 1007
    other: Rpc = await open_rpc(server)  # the daemon serves on
    assert (await other.request("daemon.ping"))["result"] == {"pong": True}


async def test_frames_past_the_bound_wait_in_the_queue_then_direct_frames_resume(
    make_bridge: MakeBridge, open_rpc: Any, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "MAX_IN_FLIGHT", 2)
    server = await make_bridge(methods=gate.table())
    rpc: Rpc = await open_rpc(server)
    for i in range(6):
        await rpc.send(frame("gate", i))
    await wait_for(lambda: gate.entered == 2, message="2 requests running")
    (session,) = server.sessions
    await wait_for(lambda: session._backlog == 3, message="4 frames queued, 1 read by run()")
    gate.open.set()
    replies = await replies_by_id(rpc, 6)
    assert sorted(replies) == list(range(6)) and gate.entered == 6
    assert session._backlog == 0
    assert (await rpc.request("daemon.ping"))["result"] == {"pong": True}


async def test_replies_finishing_together_leave_in_one_write(
    make_bridge: MakeBridge, open_rpc: Any, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge = await make_bridge(methods=gate.table())
    rpc: Rpc = await open_rpc(bridge)
    assert (await rpc.request("daemon.ping"))["result"] == {"pong": True}
    (session,) = bridge.sessions
    writes: list[bytes] = []
    write = session.ws.transport.write

    def spy(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    monkeypatch.setattr(session.ws.transport, "write", spy)
    assert (await rpc.request("daemon.ping"))["result"] == {"pong": True}
    assert [frames_in(w) for w in writes] == [1]  # the only request in flight: written at once
    for i in range(5):
        await rpc.send(frame("gate", i))
    await wait_for(lambda: gate.entered == 5, message="5 requests in flight")
    gate.open.set()  # they all finish in the same loop turn
    replies = await replies_by_id(rpc, 5)
    assert {k: v["result"] for k, v in replies.items()} == dict.fromkeys(range(5), "opened")
    assert [frames_in(w) for w in writes] == [1, 5]  # one write for the 5 replies


def frames_in(data: bytes) -> int:
    """How many whole unmasked frames with a 7- or 16-bit length ``data`` holds."""
    count, pos = 0, 0
    while pos < len(data):
        length, pos = data[pos + 1] & 0x7F, pos + 2
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        pos += length
        count += 1
    assert pos == len(data)
    return count


async def test_frames_split_and_joined_across_reads_are_all_answered(rpc: Rpc) -> None:
    """Whole text frames, a binary one and a frame cut across two reads, in two TCP chunks:
    each request is answered, whichever parser reads it."""
    first = b"".join(masked(ping(n)) for n in ("a", "b"))
    first += masked(ping("binary"), binary=True)
    cut = masked(ping("c"))
    rpc.ws.transport.write(first + cut[:9])
    replies = await replies_by_id(rpc, 3)
    rpc.ws.transport.write(cut[9:] + masked(ping("d")))
    replies |= await replies_by_id(rpc, 2)
    assert {k: v["result"] for k, v in replies.items()} == dict.fromkeys(
        ("a", "b", "binary", "c", "d"), {"pong": True}
    )


def masked(payload: bytes, *, binary: bool = False) -> bytes:
    """A client's whole masked frame (text unless ``binary``)."""
    opcode = Opcode.BINARY if binary else Opcode.TEXT
    return WsFrame(opcode, payload).serialize(mask=True)
