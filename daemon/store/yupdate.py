"""Is this exactly one well-formed Yjs update (v1)? A strict reader of the encoding.

Why not ask pycrdt: yrs decodes leniently. It ignores bytes after the update (two updates
concatenated: the second is lost; a y-protocols sync message ``[0, 2, len, update]`` decodes as
an empty-ish update plus a delete set of garbage), and it keeps some malformed structs
"pending" instead of refusing them, then encodes a state that no Yjs decoder (yrs included)
can read. So an update is read here field by field, as Yjs's ``UpdateDecoderV1`` reads it,
and refused (``MalformedUpdate``) unless every field is valid and the last one ends exactly
at the last byte. What this accepts pycrdt applies, and the states it then encodes decode.
What it refuses is named when it is a well-known other thing (a y-protocols sync message, a
Yjs update v2), so an integrator learns what to send instead.

The encoding (lib0 v1, Yjs ``encoding.md``): varuint = 7 bits per byte, low groups first,
high bit set = more bytes; a string or a buffer = varuint byte length + bytes (UTF-8 for a
string). An update = n clients, each ``structs, client, clock`` then its structs; then the
delete set: n clients, each ``client, ranges`` then ``ranges x (clock, length)``.
A struct = info byte: its low 5 bits the content ref (0 GC and 10 Skip: a length; 1-9 an
item), 0x80 an origin id, 0x40 a right origin id, and without either a parent (varuint 1 +
root name, or 0 + id) and, if 0x20, a parent key; then the content of that ref.

No I/O, no pycrdt: pure bytes. Cost: linear in the update's fields (strings and buffers are
sliced, not walked).
"""

from __future__ import annotations

import json
from typing import Final

__all__ = ["MalformedUpdate", "check_update", "SYNC_MESSAGE_HINT", "V2_HINT"]

_MAX_CLOCK: Final = 2**32 - 1  # yrs keeps clocks as u32
_MAX_UINT: Final = 2**53 - 1  # lib0 refuses larger varuints (JS numbers)
_MAX_DEPTH: Final = 100  # nesting of ``Any`` values (yjs has no limit; we bound recursion)
_TYPE_KEYED: Final = 3  # XmlElement: its type ref has a name
#: Array Map Text XmlElement XmlFragment XmlText; not XmlHook (5), which yrs cannot decode
_TYPE_REFS: Final = frozenset((0, 1, 2, 3, 4, 6))
SYNC_MESSAGE_HINT: Final = (
    "a y-protocols sync message, not a bare update: send its payload (the Yjs update v1)"
)

V2_HINT: Final = (
    "a Yjs update v2, not v1: send v1 (Y.encodeStateAsUpdate, the 'update' event rather than"
    " 'updateV2', or Y.convertUpdateFormatV2ToV1)"
)
_V2_COLUMNS: Final = 9  # UpdateEncoderV2: keyClock client leftClock rightClock info string
# parentInfo typeRef len, each one buffer, after a 0 feature flag and before the rest


class MalformedUpdate(ValueError):
    """Not exactly one well-formed Yjs update v1; the message says where and why."""


class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def fail(self, why: str) -> MalformedUpdate:
        return MalformedUpdate(f"{why} at byte {self.pos}")

    def byte(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self.fail("truncated")
        self.pos = pos + 1
        return self.data[pos]

    def uint(self) -> int:
        data, pos = self.data, self.pos
        if pos < self.end and data[pos] < 0x80:  # one byte: most of them
            self.pos = pos + 1
            return data[pos]
        value = shift = 0
        while True:
            if pos >= self.end:
                raise self.fail("truncated")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 56:
                raise self.fail("integer too long")
        if value > _MAX_UINT:
            raise self.fail("integer out of range")
        self.pos = pos
        return value

    def clock(self) -> int:
        value = self.uint()
        if value > _MAX_CLOCK:
            raise self.fail("clock out of range")
        return value

    def skip_int(self) -> None:
        """A signed varint (lib0 ``writeVarInt``): its value is not needed."""
        data, pos = self.data, self.pos
        for _ in range(10):
            if pos >= self.end:
                raise self.fail("truncated")
            byte = data[pos]
            pos += 1
            if byte < 0x80:
                self.pos = pos
                return
        raise self.fail("integer too long")

    def buf(self) -> bytes:
        size = self.uint()
        start = self.pos
        if size > self.end - start:
            raise self.fail("truncated")
        self.pos = start + size
        return self.data[start : self.pos]

    def string(self) -> str:
        raw = self.buf()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("string is not UTF-8") from None

    def skip(self, size: int) -> None:
        if size > self.end - self.pos:
            raise self.fail("truncated")
        self.pos += size


def check_update(data: bytes) -> int:
    """How many structs and deleted ranges ``data`` carries (0: the empty update, which
    changes nothing); MalformedUpdate unless it is exactly one well-formed Yjs update v1."""
    reader = _Reader(data)
    try:
        count = _structs(reader) + _delete_set(reader)
    except MalformedUpdate as exc:
        raise _what_it_is(data) or exc from None
    if reader.pos != reader.end:
        known = _what_it_is(data)
        if known is not None:
            raise known
        raise MalformedUpdate(
            f"{reader.end - reader.pos} bytes after the end of the update (two updates"
            " concatenated? merge them with Y.mergeUpdates)"
        )
    return count


def _structs(reader: _Reader) -> int:
    count = 0
    for _ in range(reader.uint()):
        structs = reader.uint()
        reader.uint()  # client
        clock = reader.clock()
        for _ in range(structs):
            start = reader.pos
            length = _struct(reader)
            if length == 0 and reader.data[start] & 0x1F != 4:
                raise reader.fail("empty struct")  # yrs mis-encodes what follows one
            clock += length
            if clock > _MAX_CLOCK:
                raise reader.fail("clock out of range")
        count += structs
    return count


def _struct(reader: _Reader) -> int:
    """Read one struct; its length (how many clocks it takes)."""
    info = reader.byte()
    ref = info & 0x1F
    if ref == 0 or ref == 10:  # GC, Skip
        return reader.uint()
    if info & 0x80:
        reader.uint()
        reader.clock()
    if info & 0x40:
        reader.uint()
        reader.clock()
    if not info & 0xC0:  # no origin: the parent is written out
        parent = reader.uint()
        if parent == 1:
            reader.string()  # a root type's name
        elif parent == 0:
            reader.uint()
            reader.clock()
        else:
            raise reader.fail("bad parent info")
        if info & 0x20:
            reader.string()  # parent key (an entry of a map)
    return _content(reader, ref)


def _content(reader: _Reader, ref: int) -> int:
    """Read an item's content of ref ``ref``; its length."""
    if ref == 4:  # String: its length in UTF-16 code units, as Yjs counts (yrs writes an
        # empty string for half a surrogate pair split by an edit)
        text = reader.string()
        return len(text.encode("utf-16-le")) // 2 if not text.isascii() else len(text)
    if ref == 1:  # Deleted
        return reader.uint()
    if ref == 8:  # Any
        size = reader.uint()
        for _ in range(size):
            _any(reader)
        return size
    if ref == 2:  # JSON: strings (JSON text, or "undefined")
        size = reader.uint()
        for _ in range(size):
            text = reader.string()
            if text != "undefined":
                _json(reader, text)
        return size
    if ref == 3:  # Binary
        reader.buf()
    elif ref == 5:  # Embed: JSON text
        _json(reader, reader.string())
    elif ref == 6:  # Format: key, JSON text
        reader.string()
        _json(reader, reader.string())
    elif ref == 7:  # Type
        type_ref = reader.uint()
        if type_ref not in _TYPE_REFS:
            raise reader.fail("unknown type ref")
        if type_ref == _TYPE_KEYED:
            reader.string()
    elif ref == 9:  # Doc: guid, options (Any)
        reader.string()
        _any(reader)
    else:
        raise reader.fail("unknown content ref")
    return 1


def _json(reader: _Reader, text: str) -> None:
    try:
        json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise reader.fail("bad JSON") from None


def _no_constant(name: str) -> None:
    raise ValueError(name)  # NaN, Infinity: not JSON


def _any(reader: _Reader) -> None:
    """Skip one lib0 ``Any`` value (nested arrays and objects included, without recursion)."""
    frames: list[list[int]] = []  # [is_object, values left] of each open container
    while True:
        kind = reader.byte()
        if kind == 119:  # string
            reader.string()
        elif kind == 125:  # varint
            reader.skip_int()
        elif kind == 123 or kind == 122:  # float64, bigint
            reader.skip(8)
        elif kind == 124:  # float32
            reader.skip(4)
        elif kind == 116:  # Uint8Array
            reader.buf()
        elif kind == 117 or kind == 118:  # array, object
            size = reader.uint()
            if size:
                if len(frames) >= _MAX_DEPTH:
                    raise reader.fail("values nested too deep")
                frames.append([kind - 117, size])
                if kind == 118:
                    reader.string()  # the first key
                continue
        elif kind not in (126, 127, 120, 121):  # null, undefined, true, false
            raise reader.fail("unknown value type")
        while frames:  # one value read: close the containers it completes
            frame = frames[-1]
            frame[1] -= 1
            if frame[1]:
                if frame[0]:
                    reader.string()  # the next key
                break
            frames.pop()
        if not frames:
            return


def _delete_set(reader: _Reader) -> int:
    count = 0
    for _ in range(reader.uint()):
        reader.uint()  # client
        ranges = reader.uint()
        for _ in range(ranges):
            if reader.clock() + reader.clock() > _MAX_CLOCK:
                raise reader.fail("deleted range out of range")
        count += ranges
    return count


def _what_it_is(data: bytes) -> MalformedUpdate | None:
    """What ``data``, refused as an update v1, is instead, when it is a well-known other thing."""
    if _is_sync_message(data):
        return MalformedUpdate(SYNC_MESSAGE_HINT)
    if _is_v2_update(data):
        return MalformedUpdate(V2_HINT)
    return None


def _is_v2_update(data: bytes) -> bool:
    """``data`` has the layout of a Yjs update v2: ``0`` (a feature flag), the 9 column buffers,
    then the rest (at least the struct and delete set counts)."""
    if not data or data[0] != 0:
        return False
    reader = _Reader(data)
    reader.pos = 1
    try:
        for _ in range(_V2_COLUMNS):
            reader.buf()
    except MalformedUpdate:
        return False
    return reader.end - reader.pos >= 2


def _is_sync_message(data: bytes) -> bool:
    """``data`` is a y-protocols sync message carrying an update: ``1`` (step 2) or ``2``
    (update), then the update as one buffer, as y-protocols' ``writeSyncStep2`` and
    ``writeUpdate`` write it, or the same after ``0`` (messageSync), as y-websocket frames it."""
    return any(_is_sync_payload(data, start) for start in (0, 1))


def _is_sync_payload(data: bytes, start: int) -> bool:
    """After ``start`` leading ``0`` bytes (the messageSync framing): step 2 or update, then
    exactly one well-formed update as one buffer."""
    if len(data) < start + 2 or any(data[:start]) or data[start] not in (1, 2):
        return False
    reader = _Reader(data)
    reader.pos = start + 1
    try:
        payload = reader.buf()
        if reader.pos != reader.end:
            return False
        inner = _Reader(payload)
        _structs(inner)
        _delete_set(inner)
    except MalformedUpdate:
        return False
    return inner.pos == inner.end
