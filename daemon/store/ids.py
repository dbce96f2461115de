"""UUIDv7 ids (RFC 9562): 48-bit Unix ms timestamp, version, 12 + 62 random bits.

Ids minted by one process are strictly increasing: within the same millisecond (or when the wall
clock steps back) the 12-bit ``rand_a`` field is used as a counter, and on its overflow the
timestamp part is moved forward by one millisecond. Time-ordered keys keep SQLite's B-tree
inserts append-only and make keyset pagination follow creation order.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

RANDOM_CHUNK = 256  # ids' worth of random bytes read at once


class Uuid7Generator:
    """Mints increasing UUIDv7s; one process-wide instance backs ``uuid7()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_seq = 0
        self._random = b""  # os.urandom read RANDOM_CHUNK ids at a time: one syscall per chunk
        self._used = 0
        # A forked child must not reuse its parent's unread random bytes.
        os.register_at_fork(after_in_child=self._forget_random)

    def _forget_random(self) -> None:
        self._random, self._used = b"", 0

    def mint(self, now_ms: int | None = None) -> str:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if self._used >= len(self._random):
                self._random, self._used = os.urandom(10 * RANDOM_CHUNK), 0
            rand = int.from_bytes(self._random[self._used : self._used + 10], "big")
            self._used += 10
            if ms > self._last_ms:
                self._last_ms, self._last_seq = ms, (rand >> 64) & 0x7FF  # room to count up
            elif self._last_seq < 0xFFF:
                self._last_seq += 1
            else:
                self._last_ms, self._last_seq = self._last_ms + 1, 0
            ms, seq = self._last_ms, self._last_seq
        value = (ms & 0xFFFF_FFFF_FFFF) << 80
        value |= 0x7 << 76
        value |= seq << 64
        value |= 0b10 << 62
        value |= rand & 0x3FFF_FFFF_FFFF_FFFF
        h = f"{value:032x}"  # the canonical form, as str(uuid.UUID(int=value)) gives
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_default = Uuid7Generator()


def uuid7(now_ms: int | None = None) -> str:
    """A new UUIDv7 string, greater than every one this process minted before."""
    return _default.mint(now_ms)


def is_uuid(value: object) -> bool:
    """True for a canonical lower-case UUID string (any version)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def uuid7_time_ms(value: str) -> int:
    """The millisecond timestamp embedded in a UUIDv7."""
    return uuid.UUID(value).int >> 80
