"""Hybrid logical clock: pure properties (no event loop)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.hlc import MAX_COUNTER, Clock, ClockError, Timestamp, decode, encode

DEVICE = "dev-a"
walls = st.integers(min_value=0, max_value=4_000_000_000_000)
devices = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12)


def test_encoding_is_fixed_width_and_round_trips() -> None:
    value = encode(1_700_000_000_123, 42, "01a1-dev")
    assert value == "1700000000123-000042-01a1-dev"
    assert decode(value) == Timestamp(1_700_000_000_123, 42, "01a1-dev")


@pytest.mark.parametrize("bad", ["", "1-2-3", "170000000012-000042-x", "1700000000123-42-x"])
def test_decode_refuses_malformed_clocks(bad: str) -> None:
    with pytest.raises(ClockError):
        decode(bad)


def test_device_id_that_breaks_the_order_is_refused() -> None:
    with pytest.raises(ClockError):
        Clock("has space")


@given(st.lists(walls, min_size=1, max_size=200))
def test_local_clock_is_strictly_monotonic_whatever_the_wall_clock_does(nows: list[int]) -> None:
    clock = Clock(DEVICE)
    values = [clock.now(now) for now in nows]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


@given(walls, st.integers(min_value=1, max_value=10_000_000), st.integers(1, 50))
def test_survives_a_wall_clock_going_backwards(start: int, back: int, steps: int) -> None:
    clock = Clock(DEVICE)
    before = clock.now(start)
    later = [clock.now(max(0, start - back)) for _ in range(steps)]
    assert all(v > before for v in later)
    # it keeps the last wall time and counts on it until the wall clock catches up
    assert decode(later[-1]).wall_ms == start
    assert decode(clock.now(start + 1)) == Timestamp(start + 1, 0, DEVICE)


@given(walls, walls, st.integers(0, 1000), devices)
def test_receive_moves_past_the_remote_clock(
    local_now: int, remote_wall: int, c: int, dev: str
) -> None:
    clock = Clock(DEVICE)
    first = clock.now(local_now)
    remote = encode(remote_wall, c, dev)
    merged = clock.receive(remote, local_now)
    m, r = decode(merged), decode(remote)
    assert (m.wall_ms, m.counter) > (r.wall_ms, r.counter)
    assert merged > first
    assert clock.now(0) > merged


@given(st.lists(st.tuples(walls, st.integers(0, MAX_COUNTER), devices), min_size=2, max_size=50))
def test_string_order_equals_tuple_order_with_device_tie_break(
    stamps: list[tuple[int, int, str]],
) -> None:
    encoded = sorted(encode(*s) for s in stamps)
    assert [decode(e) for e in encoded] == sorted(Timestamp(*s) for s in stamps)


@given(walls, devices, devices)
def test_equal_wall_and_counter_are_ordered_by_device(wall: int, a: str, b: str) -> None:
    assert (encode(wall, 7, a) < encode(wall, 7, b)) == (a < b)


def test_counter_overflow_moves_the_wall_part_instead_of_breaking_the_format() -> None:
    clock = Clock(DEVICE, last=encode(1000, MAX_COUNTER - 1, DEVICE))
    assert clock.now(5) == encode(1000, MAX_COUNTER, DEVICE)
    assert clock.now(5) == encode(1001, 0, DEVICE)


def test_restored_clock_continues_after_the_last_value() -> None:
    last = encode(9_000_000_000_000, 3, DEVICE)
    assert Clock(DEVICE, last=last).now(1) == encode(9_000_000_000_000, 4, DEVICE)
