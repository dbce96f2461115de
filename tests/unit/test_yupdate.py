"""daemon.store.yupdate: exactly one well-formed Yjs update v1, or MalformedUpdate; and the
check behind it (ydoc.check), so that what it accepts never breaks a document's state."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import (
    Array,
    Doc,
    Map,
    Text,
    XmlElement,
    XmlFragment,
    XmlText,
    create_update_message,
    merge_updates,
    write_var_uint,
)

from daemon.store.ydoc import CONTENT, check, replay, state_with
from daemon.store.yupdate import SYNC_MESSAGE_HINT, V2_HINT, MalformedUpdate, check_update

#: A valid update with a few bytes changed (audit G1, t3_poison.py): yrs applies it, keeps it
#: pending, and from then on encodes states that no Yjs decoder can read.
POISON = bytes.fromhex(
    "01059ee18b8f93a40a0001010763416e74656e7402849ee1f48b8f93a40a01016c849ee1f48b8f93a40a0208"
    "6c6f20776f726c64c49ee1f48b8f93a40a029ee1f48b8f41a40a03035859625a2801046d657461016b0177"
    "0176019ee1f48b8f93a40a010002"
)
EMPTY = b"\x00\x00"
#: ASCII: pycrdt 0.14 counts Text indexes in UTF-8 bytes here, and yrs panics when a deletion
#: splits a character (non-ASCII text is in rich_update, edited at character boundaries)
ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


def rich_update() -> bytes:
    """Every kind of content this daemon's editors can make: text with formats, embeds and
    astral characters, maps, arrays, nested types, XML."""
    doc: Doc[Any] = Doc(client_id=3_141_592_653)
    text = doc.get(CONTENT, type=Text)
    text += "héllo 😀 wörld"
    text.insert(2, "E", attrs={"bold": True})
    text.insert_embed(3, {"img": "x"})
    del text[5:8]
    meta = doc.get("meta", type=Map)
    meta["k"] = {"a": [1, None, 2.5, True, "é", b"bin"], "big": 2**60}
    meta["nested"] = Map({"q": Array([1, 2])})
    items = doc.get("arr", type=Array)
    items.append("x")
    fragment = doc.get("xml", type=XmlFragment)
    element = fragment.children.append(XmlElement("p", {"class": "x"}))
    element.children.append(XmlText("hi"))
    return doc.get_update()


def decodes(state: bytes) -> str:
    doc: Doc[Any] = Doc()
    text = doc.get(CONTENT, type=Text)
    doc.apply_update(state)
    return str(text)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.text(ASCII, min_size=1, max_size=6), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    ),
    st.dictionaries(st.text(min_size=1, max_size=4), json_values, max_size=3),
)
def test_what_pycrdt_encodes_is_accepted(
    edits: list[tuple[int, str, int]], entries: dict[str, Any]
) -> None:
    doc: Doc[Any] = Doc()
    text = doc.get(CONTENT, type=Text)
    meta = doc.get("meta", type=Map)
    for index, value, deleted in edits:
        before = doc.get_state()
        text.insert(min(index, len(text)), value)
        if deleted and len(text) > deleted:
            del text[0:deleted]
        assert check_update(doc.get_update(before)) > 0  # each edit
    for key, value in entries.items():
        meta[key] = value
    assert check_update(doc.get_update()) > 0  # the whole state (adjacent edits merge)


def test_every_kind_of_content_is_accepted_and_the_empty_update_counts_nothing() -> None:
    assert check_update(rich_update()) > 0
    assert check_update(EMPTY) == 0
    assert check_update(Doc().get_update()) == 0  # what an empty doc encodes


def test_concatenated_updates_are_refused_with_what_to_do_instead() -> None:
    first, second = Doc(), Doc()
    first.get(CONTENT, type=Text).insert(0, "first part")
    second.get(CONTENT, type=Text).insert(0, "second part")
    one, two = first.get_update(), second.get_update()
    with pytest.raises(MalformedUpdate, match="after the end of the update.*mergeUpdates"):
        check_update(one + two)
    assert check_update(merge_updates(one, two)) == 2  # the right way is accepted


@pytest.mark.parametrize("framing", [b"\x00", b""])  # y-websocket's messageSync; y-protocols'
@pytest.mark.parametrize("kind", [1, 2])  # sync step 2, update: both carry an update
def test_y_protocols_messages_are_refused_as_such(kind: int, framing: bytes) -> None:
    doc: Doc[Any] = Doc()
    doc.get(CONTENT, type=Text).insert(0, "typed text")
    update = doc.get_update()
    message = framing + bytes([kind]) + write_var_uint(len(update)) + update
    if kind == 2 and framing:
        assert message == create_update_message(update)
    with pytest.raises(MalformedUpdate) as caught:
        check_update(message)
    assert str(caught.value) == SYNC_MESSAGE_HINT


#: Yjs 13.6 ``encodeStateAsUpdateV2``: text, a map and a deletion; a deletion alone; nothing
UPDATES_V2 = [
    "00000247000102000501008400281611636f6e74656e7470656420f09f98806d6b0706410001010002020101"
    "030075027d017701780107010001",
    "0000000000000100000000000109010000",
    "00000000000001000000000000",
]


@pytest.mark.parametrize("update", UPDATES_V2)
def test_yjs_updates_v2_are_refused_as_such(update: str) -> None:
    with pytest.raises(MalformedUpdate) as caught:
        check_update(bytes.fromhex(update))
    assert str(caught.value) == V2_HINT


def test_a_damaged_update_is_not_taken_for_another_format() -> None:
    doc: Doc[Any] = Doc()
    doc.get(CONTENT, type=Text).insert(0, "typed")
    with pytest.raises(MalformedUpdate, match="truncated"):
        check_update(doc.get_update()[:-3])


def test_the_poisoned_update_of_the_audit_is_refused() -> None:
    doc: Doc[Any] = Doc()
    doc.apply_update(POISON)  # yrs takes it (pending)...
    with pytest.raises(ValueError):  # ...and a state holding it cannot be decoded
        decodes(merge_updates(doc.get_update(), POISON))
    with pytest.raises(MalformedUpdate):
        check(POISON)


@given(st.data())
def test_every_strict_prefix_of_an_update_is_refused(data: st.DataObject) -> None:
    update = rich_update()
    cut = data.draw(st.integers(0, len(update) - 1))
    with pytest.raises(MalformedUpdate):
        check_update(update[:cut])


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00",
        b"\x01\x02garbage\xff\xff\xff",  # the row another app inserted (audit G1, t19)
        b"\x01\x01\x01\x00\x02\x01\x07content\x00\x00",  # a JSON item of no value
        b"\x01\x01\x01\x00\x04\x01\x07content\x02\xff\xfe\x00",  # a string that is not UTF-8
        b"\x01\x01\x01\x00\x06\x01\x07content\x01k\x03nu!\x00",  # a format that is not JSON
        b"\x01\x01\x01\x00\x07\x01\x07content\x05\x01p\x00",  # an XmlHook (yrs cannot read)
        b"\x01\x01\x01\x00\x04\x05\x07content\x01a\x00",  # parent info neither 0 nor 1
        b"\x01\x01\x01\x00\x1f\x01\x07content\x00",  # content ref 31
        b"\x01\x01\x01\x80\x80\x80\x80\x10\x04\x01\x07content\x01a\x00",  # clock past u32
    ],
)
def test_malformed_updates_are_refused(bad: bytes) -> None:
    with pytest.raises(MalformedUpdate):
        check(bad)


def mutations(valid: bytes, rng: random.Random) -> bytes:
    data = bytearray(valid)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(data))
        roll = rng.random()
        if roll < 0.5:
            data[pos] = rng.randrange(256)
        elif roll < 0.75:
            del data[pos]
        else:
            data.insert(pos, rng.randrange(256))
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_what_the_check_accepts_never_breaks_a_state(seed: int) -> None:
    """yrs keeps some malformed updates pending and then encodes states nobody can decode:
    whatever ``check`` lets through must replay, fold into a state that decodes, and merge."""
    update = mutations(rich_update(), random.Random(seed))
    try:
        check(update)
    except MalformedUpdate:
        return
    doc, _, waiting, skipped = replay(None, [update])
    assert skipped == []
    state = state_with(doc, waiting)
    decodes(state)
    decodes(merge_updates(state, update))
    decodes(replay(state, []).doc.get_update())
