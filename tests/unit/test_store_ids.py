"""UUIDv7 ids and opaque cursors (pure)."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.errors import InvalidInput
from daemon.store.codec import decode_cursor, encode_cursor, iso_ms, list_scope
from daemon.store.ids import Uuid7Generator, is_uuid, uuid7, uuid7_time_ms


def test_uuid7_layout() -> None:
    value = uuid.UUID(Uuid7Generator().mint(1_700_000_000_123))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert uuid7_time_ms(str(value)) == 1_700_000_000_123


def test_uuid7_strictly_increasing_within_one_millisecond_and_across_clock_steps() -> None:
    gen = Uuid7Generator()
    ids = [gen.mint(5_000_000_000_000) for _ in range(5000)]  # overflows the 12-bit counter
    ids += [gen.mint(4_000_000_000_000) for _ in range(10)]  # wall clock went back
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_uuid7_embeds_any_48_bit_time(ms: int) -> None:
    value = Uuid7Generator().mint(ms)
    assert is_uuid(value) and uuid7_time_ms(value) == ms


def test_process_wide_ids_increase() -> None:
    ids = [uuid7() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("01a1fcf2-f4c4-7510-9ec6-6f9ae6d3ff36", True),
        ("01A1FCF2-F4C4-7510-9EC6-6F9AE6D3FF36", False),
        ("01a1fcf2f4c475109ec66f9ae6d3ff36", False),
        ("", False),
        (None, False),
        ("x" * 36, False),
    ],
)
def test_is_uuid(value: object, ok: bool) -> None:
    assert is_uuid(value) is ok


def test_cursor_round_trip_and_opaque() -> None:
    key = uuid7()
    cursor = encode_cursor(key)
    assert key not in cursor
    assert decode_cursor(cursor) == key


def test_a_cursor_names_its_list() -> None:
    key = uuid7()
    scope = list_scope("SELECT 1", {"workspace_id": key})
    assert scope != list_scope("SELECT 1", {"workspace_id": uuid7()})
    assert scope != list_scope("SELECT 2", {"workspace_id": key})
    cursor = encode_cursor(key, scope)
    assert decode_cursor(cursor, scope=scope) == key
    for other in ("", list_scope("SELECT 2", {})):
        with pytest.raises(InvalidInput) as info:
            decode_cursor(cursor, "after", scope=other)
        assert info.value.field == "after" and "another list" in info.value.message
    with pytest.raises(InvalidInput):
        decode_cursor(encode_cursor(key), scope=scope)  # a cursor of no list


@given(st.text(max_size=60))
def test_any_foreign_text_is_refused_as_a_cursor(text: str) -> None:
    try:
        key = decode_cursor(text, "after")
    except InvalidInput as exc:
        assert exc.field == "after"
    else:
        body = text[3:].rstrip("=")
        scope = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()[: -len(key) - 1]
        assert is_uuid(key) and encode_cursor(key, scope) == text.rstrip("=")


def test_iso_ms() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_a_forked_child_does_not_reuse_the_parents_random_bits() -> None:
    uuid7()  # the parent has unread random bytes buffered
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then exit at once
        os.write(write, uuid7().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = uuid7()
    assert child[-12:] != parent[-12:]  # the random tail differs (same buffer would repeat it)
