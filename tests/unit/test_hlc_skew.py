"""When a change the cloud refused for ``clock_skew`` is sent again, and when the device's
clock counts as ahead (hlc.py; pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.hlc import (
    MAX_AHEAD_MS,
    SKEW_MARGIN_MS,
    SKEW_RETRY_FLOOR_MS,
    clock_ahead,
    encode,
    skew_retry_at,
)

NOW = 1_800_000_000_000


def test_a_refused_change_is_retried_once_the_cloud_s_clock_has_caught_up() -> None:
    hlc = encode(NOW + MAX_AHEAD_MS + 60_000, 3, "dev")  # a minute past the cloud's limit
    assert skew_retry_at(hlc, NOW) == NOW + 60_000 + SKEW_MARGIN_MS


def test_the_cloud_s_time_decides_when_it_is_known() -> None:
    hlc = encode(NOW + MAX_AHEAD_MS + 60_000, 0, "dev")
    # this device's wall clock runs 2 h fast: the cloud is 2 h behind it
    behind = NOW - 7_200_000
    assert skew_retry_at(hlc, NOW, behind) == NOW + 7_260_000 + SKEW_MARGIN_MS
    # the cloud's clock is ahead of ours: sooner, but never sooner than the floor
    assert skew_retry_at(hlc, NOW, NOW + 50_000) == NOW + 10_000 + SKEW_MARGIN_MS
    assert skew_retry_at(hlc, NOW, NOW + 3_600_000) == NOW + SKEW_RETRY_FLOOR_MS


def test_a_malformed_clock_is_retried_after_the_floor() -> None:
    assert skew_retry_at("not a clock", NOW) == NOW + SKEW_RETRY_FLOOR_MS


@given(
    lead=st.integers(min_value=-10 * MAX_AHEAD_MS, max_value=10 * MAX_AHEAD_MS),
    cloud=st.none() | st.integers(min_value=NOW - 10**8, max_value=NOW + 10**8),
)
def test_a_retry_never_comes_sooner_than_the_floor_nor_before_the_cloud_takes_it(
    lead: int, cloud: int | None
) -> None:
    hlc = encode(NOW + lead, 0, "dev")
    at = skew_retry_at(hlc, NOW, cloud)
    assert at >= NOW + SKEW_RETRY_FLOOR_MS  # never a hot loop
    cloud_then = (NOW if cloud is None else cloud) + (at - NOW)
    assert NOW + lead <= cloud_then + MAX_AHEAD_MS  # the cloud's rule holds by then


def test_a_clock_counts_as_ahead_only_past_the_cloud_s_allowed_lead() -> None:
    assert clock_ahead(NOW, NOW) is None
    assert clock_ahead(NOW + MAX_AHEAD_MS, NOW) is None
    assert clock_ahead(NOW + MAX_AHEAD_MS + 1, NOW) == (MAX_AHEAD_MS + 1, NOW + 1)
    assert clock_ahead(NOW + 3 * MAX_AHEAD_MS, NOW) == (3 * MAX_AHEAD_MS, NOW + 2 * MAX_AHEAD_MS)
