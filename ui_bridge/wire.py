"""The WebSocket frames of the request/reply hot path, read and written without websockets' parser.

A request is one masked, unfragmented text frame from the client, a reply one unmasked text frame
from the server (RFC 6455 section 5.2). ``take_text_frame`` reads one such request frame whole
from a chunk of received bytes, and refuses (``None``) anything else: another opcode, a fragment,
reserved bits, an unmasked frame, a payload over ``max_size``, or a frame not wholly in the chunk.
What it refuses goes to websockets' own parser, which answers every protocol error as before.
``text_frame`` is the header and payload of a reply: what websockets' ``send_text`` produces
for a server without extensions (the bridge turns compression off). Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the wheel ships the C extension
    from websockets.utils import apply_mask

__all__ = ["take_text_frame", "text_frame"]

FIN_TEXT: Final = 0x81  # FIN set, no reserved bit, opcode 1 (text)
MASKED: Final = 0x80


def take_text_frame(data: bytes, start: int, max_size: int | None) -> tuple[bytes, int] | None:
    """The unmasked payload of the whole masked text frame at ``data[start:]`` and the offset
    just past it; ``None`` if no such frame starts there (see the module docstring)."""
    end = len(data)
    if end - start < 6 or data[start] != FIN_TEXT:
        return None
    head = data[start + 1]
    if not head & MASKED:
        return None
    length = head & 0x7F
    pos = start + 2
    if length == 126:
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
    elif length == 127:
        length = int.from_bytes(data[pos : pos + 8], "big")
        pos += 8
    if max_size is not None and length > max_size:
        return None
    stop = pos + 4 + length
    if stop > end:
        return None
    return apply_mask(data[pos + 4 : stop], data[pos : pos + 4]), stop


def text_frame(payload: bytes) -> bytes:
    """A server's (unmasked) whole text frame carrying ``payload`` (UTF-8 JSON)."""
    length = len(payload)
    if length < 126:
        return bytes((FIN_TEXT, length)) + payload
    if length < 65536:
        return bytes((FIN_TEXT, 126)) + length.to_bytes(2, "big") + payload
    return bytes((FIN_TEXT, 127)) + length.to_bytes(8, "big") + payload
