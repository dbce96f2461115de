"""Pure pycrdt/Yjs helpers of the document store: replay, fold, and "is this update integrated?".

Why the last one: a Yjs update whose dependencies have not arrived yet (another client's
insert it refers to, a deletion of items not received) stays *pending* inside a pycrdt Doc, and
``Doc.get_update()`` leaves pending content out: a snapshot or a state taken from such a Doc
would silently drop that update. Worse, yrs does not always integrate a pending update once its
dependencies arrive (measured: the B4 trace delivered with a little reordering leaves hundreds
of updates stuck). So ``apply`` keeps the updates that are not integrated yet (``Waiting``),
each under the clock it waits for (``blocker``), and applies one again once the doc's state
vector reaches that clock; compaction keeps the ones still waiting as rows, and ``state_with``
adds them to a state.

How: after applying ``update`` to ``doc``, ``pycrdt.get_update(update, doc.get_state())`` is
the part of the update the doc does not cover. Its structs are all covered exactly when it
starts with zero clients; what follows is then the update's delete set (v1 encoding), whose
deletions are applied exactly when every deleted range lies below the doc's state vector.

Encodings (lib0 v1): varuint = 7 bits per byte, low groups first, high bit set = more bytes.
State vector: n, then n x (client, clock). Delete set: n, then n x (client, k, k x (clock, len)).
Stored data that cannot be used (written before updates were checked, or by another app
through the cloud) is left out by ``replay`` and kept as rows by ``fold``: see yupdate.py.
No I/O, no clock: pycrdt's Doc is CPU-only.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

from pycrdt import Doc, Text, get_update, merge_updates

from daemon.store.yupdate import MalformedUpdate, check_update

__all__ = [
    "CONTENT",
    "SNAPSHOT",
    "Replayed",
    "Waiting",
    "apply",
    "blocker",
    "check",
    "decode_delete_set",
    "decode_state_vector",
    "fold",
    "is_integrated",
    "read_varuint",
    "replay",
    "state_with",
]

#: The root ``Text`` whose string is a document's text.
CONTENT: Final = "content"
_EMPTY_DIFF: Final = b"\x00\x00"  # no struct, no deletion
#: The index ``Replayed.skipped`` gives the snapshot.
SNAPSHOT: Final = -1


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """The lib0 varuint at ``pos`` and the position after it; ValueError if truncated."""
    if pos < len(data) and data[pos] < 0x80:  # one byte: most of them
        return data[pos], pos + 1
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varuint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varuint too long")


def decode_state_vector(data: bytes) -> dict[int, int]:
    """``{client: clock}`` from an encoded state vector (``Doc.get_state()``)."""
    count, pos = read_varuint(data, 0)
    state: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_varuint(data, pos)
        state[client], pos = read_varuint(data, pos)
    return state


def decode_delete_set(data: bytes, pos: int = 0) -> list[tuple[int, int, int]]:
    """``(client, clock, length)`` ranges of the delete set encoded at ``pos``."""
    ranges: list[tuple[int, int, int]] = []
    clients, pos = read_varuint(data, pos)
    for _ in range(clients):
        client, pos = read_varuint(data, pos)
        count, pos = read_varuint(data, pos)
        for _ in range(count):
            clock, pos = read_varuint(data, pos)
            length, pos = read_varuint(data, pos)
            ranges.append((client, clock, length))
    return ranges


def blocker(update: bytes, state: bytes) -> tuple[int, int] | None:
    """What ``update`` (applied to a doc whose state vector is ``state``) still waits for:
    ``(client, clock)`` = every struct of ``client`` before ``clock``; None when it is
    integrated entirely."""
    diff = get_update(update, state)
    if diff == _EMPTY_DIFF:
        return None
    clients, pos = read_varuint(diff, 0)
    if clients:  # uncovered structs: the first one of the first client is where it is stuck
        _, pos = read_varuint(diff, pos)
        client, pos = read_varuint(diff, pos)
        clock, _ = read_varuint(diff, pos)
        return client, clock
    covered = decode_state_vector(state)
    for client, clock, length in decode_delete_set(diff, pos):
        if clock + length > covered.get(client, 0):  # deletes items the doc has not got
            return client, clock + length
    return None


def is_integrated(update: bytes, state: bytes) -> bool:
    """True when every struct and deletion of ``update`` is part of a doc whose state vector
    is ``state`` (``update`` having been applied to it); False while some of it is pending."""
    return blocker(update, state) is None


class Waiting:
    """The updates of a doc not integrated yet, each under the clock it waits for."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, int, bytes]]] = {}
        self._order = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def updates(self) -> list[bytes]:
        """Every waiting update, in the order they arrived."""
        entries = sorted((e for heap in self._heaps.values() for e in heap), key=lambda e: e[1])
        return [update for _, _, update in entries]

    def add(self, update: bytes, need: tuple[int, int]) -> None:
        client, clock = need
        heapq.heappush(self._heaps.setdefault(client, []), (clock, next(self._order), update))
        self._size += 1

    def take_due(self, state: bytes) -> list[bytes]:
        """Remove and return the updates whose awaited clock ``state`` has reached."""
        covered = decode_state_vector(state)
        due: list[tuple[int, bytes]] = []
        for client, heap in self._heaps.items():
            reached = covered.get(client, 0)
            while heap and heap[0][0] <= reached:
                _, order, update = heapq.heappop(heap)
                due.append((order, update))
        self._size -= len(due)
        return [update for _, update in sorted(due)]


def apply(doc: Doc[Any], update: bytes, waiting: Waiting) -> None:
    """Apply ``update`` to ``doc`` in its own transaction (pycrdt is quadratic when many edits
    share one), keep it in ``waiting`` if it is not integrated, and apply again the waiting
    updates it unblocks. Raises ValueError (changing nothing) if ``update`` is undecodable."""
    doc.apply_update(update)
    state = doc.get_state()
    need = blocker(update, state)
    if need is not None:
        waiting.add(update, need)
    while waiting:  # yrs does not always integrate its pending updates by itself
        due = waiting.take_due(state)
        if not due:
            return
        for pending in due:
            doc.apply_update(pending)  # a no-op for what got integrated meanwhile
        moved = doc.get_state()
        for pending in due:
            need = blocker(pending, moved)
            if need is not None:
                waiting.add(pending, need)
        if moved == state:  # nothing moved: what is due now stays due until the next update
            return
        state = moved


def check(update: bytes) -> int:
    """``check_update`` (how many structs and deletions; MalformedUpdate), then a trial apply
    to an empty Doc for what yrs refuses only when applying (e.g. an item whose parent, in the
    same update, is not a type). For an update that is stored without being applied."""
    count = check_update(update)
    refused = _refusal(Doc().apply_update, update)
    if refused is not None:
        raise MalformedUpdate(refused)
    return count


class Replayed(NamedTuple):
    """A replayed document: its Doc, root Text ``CONTENT``, the updates still waiting, and
    what was left out as unusable: ``(index, reason)``, index ``SNAPSHOT`` for the snapshot.
    A reason never quotes the data."""

    doc: Doc[Any]
    text: Text
    waiting: Waiting
    skipped: list[tuple[int, str]]


def replay(snapshot: bytes | None, updates: Sequence[bytes]) -> Replayed:
    """A Doc holding ``snapshot`` then ``updates`` (never merged into one update first: see
    ``apply``). What cannot be used is left out, so stored bad data never breaks a document:
    an update that is not exactly one well-formed update (``check_update``: yrs would keep
    one that is malformed pending and encode states nobody can decode), or that pycrdt cannot
    decode or apply, and an undecodable snapshot."""
    doc: Doc[Any] = Doc()
    text = doc.get(CONTENT, type=Text)
    skipped: list[tuple[int, str]] = []
    if snapshot is not None:
        refused = _refusal(doc.apply_update, snapshot)
        if refused is not None:
            doc = Doc()  # a failed apply may have left part of it
            text = doc.get(CONTENT, type=Text)
            skipped.append((SNAPSHOT, refused))
    waiting = Waiting()
    for index, update in enumerate(updates):
        refused = _refusal(_checked_apply, doc, update, waiting)
        if refused is not None:
            skipped.append((index, refused))
    return Replayed(doc, text, waiting, skipped)


def _checked_apply(doc: Doc[Any], update: bytes, waiting: Waiting) -> None:
    check_update(update)
    apply(doc, update, waiting)


def _refusal(call: Callable[..., object], *args: Any) -> str | None:
    """Why ``call(*args)`` refused its data (never quoting it), or None if it did not."""
    try:
        call(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except MalformedUpdate as exc:
        return str(exc)  # ours: positions, never content
    except BaseException as exc:  # pyo3 raises a panic in yrs as a BaseException
        return f"pycrdt refused it ({type(exc).__name__})"
    return None


def fold(snapshot: bytes | None, updates: Sequence[bytes]) -> tuple[bytes, list[int]]:
    """Compaction: the new snapshot, and the indexes of ``updates`` that must be kept: still
    pending, or left out as unusable (kept as they are, never deleted by a compaction).
    ValueError if ``snapshot`` itself is unusable (compacting would lose it)."""
    doc, _, waiting, skipped = replay(snapshot, updates)
    if any(index == SNAPSHOT for index, _ in skipped):
        raise ValueError("the stored snapshot cannot be decoded")
    kept = {index for index, _ in skipped}
    if waiting:
        state = doc.get_state()
        kept.update(
            i
            for i, update in enumerate(updates)
            if i not in kept and not is_integrated(update, state)
        )
    return doc.get_update(), sorted(kept)


def state_with(doc: Doc[Any], waiting: Waiting) -> bytes:
    """The whole state of ``doc`` as one update, the waiting updates included."""
    state = doc.get_update()
    return merge_updates(state, *waiting.updates()) if waiting else state
