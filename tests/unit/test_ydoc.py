"""daemon.store.ydoc: varuint codecs, "is this update integrated?", fold and state."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text, TransactionEvent

from daemon.store.ydoc import (
    Waiting,
    blocker,
    decode_delete_set,
    decode_state_vector,
    fold,
    is_integrated,
    read_varuint,
    replay,
    state_with,
)


def varuint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varuint_round_trip(value: int) -> None:
    encoded = varuint(value)
    assert read_varuint(encoded + b"\x05", 0) == (value, len(encoded))


@given(st.lists(st.integers(min_value=0, max_value=2**63 - 1), max_size=8))
def test_consecutive_varuints_are_read_from_their_offsets(values: list[int]) -> None:
    data = b"".join(varuint(v) for v in values)
    pos, read = 0, []
    for _ in values:
        value, pos = read_varuint(data, pos)
        read.append(value)
    assert read == values and pos == len(data)
    with pytest.raises(ValueError):
        read_varuint(data, pos)  # nothing left


def test_truncated_or_overlong_varuints_are_refused() -> None:
    with pytest.raises(ValueError):
        read_varuint(b"", 0)
    with pytest.raises(ValueError):
        read_varuint(b"\x05\x80", 1)
    with pytest.raises(ValueError):
        read_varuint(b"\x80\x80", 0)
    with pytest.raises(ValueError):
        read_varuint(b"\xff" * 11, 0)


def test_state_vector_and_delete_set_decoding() -> None:
    state = varuint(2) + varuint(7) + varuint(300) + varuint(2**40) + varuint(1)
    assert decode_state_vector(state) == {7: 300, 2**40: 1}
    deletes = varuint(1) + varuint(9) + varuint(2) + varuint(3) + varuint(4) + varuint(10)
    deletes += varuint(1)
    assert decode_delete_set(b"\x00" + deletes, 1) == [(9, 3, 4), (9, 10, 1)]


class Editor:
    def __init__(self, client_id: int) -> None:
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.text = self.doc.get("content", type=Text)
        self.updates: list[bytes] = []
        self.doc.observe(self._keep)

    def _keep(self, event: TransactionEvent) -> None:
        self.updates.append(event.update)


def conversation() -> tuple[list[bytes], str]:
    """Two clients editing one text: inserts, deletes of the other's text, concurrent edits."""
    alice, bob = Editor(1), Editor(2)
    alice.text += "hello"
    alice.text += " world"
    bob.doc.apply_update(alice.doc.get_update())
    bob.text.insert(3, "BBB")
    del bob.text[0:2]
    for update in bob.updates:
        alice.doc.apply_update(update)
    del alice.text[5:7]
    alice.text.insert(0, "X")
    bob.doc.apply_update(alice.doc.get_update())
    assert str(alice.text) == str(bob.text)
    # each observer also saw the updates its doc received: keep the local edits only
    local = alice.updates[:2] + bob.updates[1:3] + alice.updates[4:6]
    return local, str(alice.text)


UPDATES, FINAL = conversation()


def apply_tracking(order: list[bytes]) -> tuple[Doc[Any], Text, list[bytes]]:
    """Apply updates one by one, keeping the ones that are not integrated (as the store does)."""
    doc, text, waiting, _ = replay(None, order)
    return doc, text, waiting.updates()


def test_in_order_updates_are_integrated_at_once() -> None:
    doc, text, waiting = apply_tracking(UPDATES)
    assert waiting == [] and str(text) == FINAL


def test_structs_and_deletions_waiting_for_dependencies_are_detected() -> None:
    insert_after_missing = UPDATES[1]  # " world" needs "hello"
    _, _, waiting = apply_tracking([insert_after_missing])
    assert waiting == [insert_after_missing]
    delete_of_missing = UPDATES[3]  # bob deletes "he", which this doc has not received
    doc, text, waiting = apply_tracking([delete_of_missing])
    assert waiting == [delete_of_missing]
    assert str(doc.get("content", type=Text)) == "" == str(text)
    doc, text, waiting = apply_tracking([delete_of_missing, UPDATES[0]])
    assert waiting == [] and str(text) == "llo"


def test_pycrdt_leaves_pending_updates_out_of_its_state() -> None:
    """Why the store tracks them: without state_with, the pending update would be lost."""
    doc, _, waiting = apply_tracking([UPDATES[1]])
    lossy_text = replay(doc.get_update(), [UPDATES[0]]).text
    assert str(lossy_text) == "hello"
    pending = Waiting()
    for update in waiting:
        pending.add(update, (0, 0))
    full_text = replay(state_with(doc, pending), [UPDATES[0]]).text
    assert str(full_text) == "hello world"


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(len(UPDATES))), st.integers(min_value=0, max_value=len(UPDATES)))
def test_any_order_any_cut_converges_through_fold_and_state(order: list[int], cut: int) -> None:
    updates = [UPDATES[i] for i in order]
    snapshot, pending = fold(None, updates[:cut])
    kept = [updates[i] for i in pending]
    text = replay(snapshot, kept + updates[cut:]).text
    assert str(text) == FINAL
    doc, _, pending, _ = replay(None, updates[:cut])
    text = replay(state_with(doc, pending), updates[cut:]).text
    assert str(text) == FINAL


def test_fold_of_nothing_pending_keeps_nothing() -> None:
    snapshot, pending = fold(None, UPDATES)
    assert pending == []
    assert str(replay(snapshot, [])[1]) == FINAL


def typing_trace(edits: int, seed: int) -> tuple[list[bytes], str]:
    """One client typing near the end of its text and deleting here and there."""
    rng = random.Random(seed)
    editor = Editor(5)
    for _ in range(edits):
        size = len(editor.text)
        if size > 10 and rng.random() < 0.2:
            start = rng.randrange(size - 2)
            del editor.text[start : start + rng.randint(1, 2)]
        else:
            editor.text.insert(rng.randint(max(0, size - 5), size), rng.choice("abcdef "))
    return editor.updates, str(editor.text)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_reordered_delivery_converges_and_nothing_stays_waiting(seed: int) -> None:
    """Each update displaced by up to 8 places (as over several connections). Plain pycrdt
    applying the same order ends with a wrong text (pending updates stuck in yrs); ``apply``
    applies a waiting update again once the clock it waits for is reached."""
    updates, final = typing_trace(2000, seed=7)
    jitter = random.Random(seed)
    order = sorted(range(len(updates)), key=lambda i: i + jitter.random() * 8)
    doc, text, waiting, _ = replay(None, [updates[i] for i in order])
    assert str(text) == final and len(waiting) == 0
    snapshot, pending = fold(None, [updates[i] for i in order[:1000]])
    kept = [updates[order[i]] for i in pending]
    _, text, waiting, _ = replay(snapshot, kept + [updates[i] for i in order[1000:]])
    assert str(text) == final and len(waiting) == 0


def test_is_integrated_against_a_state_vector() -> None:
    doc: Doc[Any] = Doc()
    doc.apply_update(UPDATES[1])  # " world" without "hello": pending
    assert not is_integrated(UPDATES[1], doc.get_state())
    doc.apply_update(UPDATES[0])
    state = doc.get_state()
    assert is_integrated(UPDATES[0], state) and is_integrated(UPDATES[1], state)
    empty: Doc[Any] = Doc()
    empty.apply_update(UPDATES[3])  # deletes items the doc has never seen
    assert not is_integrated(UPDATES[3], empty.get_state())


def test_blocker_names_the_clock_an_update_waits_for() -> None:
    doc: Doc[Any] = Doc()
    doc.apply_update(UPDATES[1])  # alice's " world" starts at her clock 5, after "hello"
    assert blocker(UPDATES[1], doc.get_state()) == (1, 5)
    empty: Doc[Any] = Doc()
    empty.apply_update(UPDATES[3])  # bob deletes "he": alice's clocks 0-1
    assert blocker(UPDATES[3], empty.get_state()) == (1, 2)
    doc.apply_update(UPDATES[0])
    assert blocker(UPDATES[1], doc.get_state()) is None


def test_waiting_hands_back_what_a_state_unblocks_in_arrival_order() -> None:
    waiting = Waiting()
    waiting.add(b"c", (1, 9))
    waiting.add(b"a", (1, 3))
    waiting.add(b"b", (2, 1))
    assert len(waiting) == 3 and waiting.updates() == [b"c", b"a", b"b"]
    state = bytes([2, 1, 5, 2, 0])  # client 1 at clock 5, client 2 at clock 0
    assert waiting.take_due(state) == [b"a"]
    assert waiting.take_due(bytes([2, 1, 9, 2, 1])) == [b"c", b"b"]
    assert len(waiting) == 0
