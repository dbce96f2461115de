"""When a change the cloud refused for ``clock_skew`` is sent again, and when the device's
clock counts as ahead (hlc.py; pure)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from daemon.hlc import (
    MAX_AHEAD_MS,
    SKEW_MARGIN_MS,
    SKEW_RETRY_CAP_MS,
    SKEW_RETRY_FLOOR_MS,
    clock_ahead,
    encode,
    skew_attempt,
    skew_backoff_ms,
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
    assert skew_retry_at("not a clock", NOW, attempt=2) == NOW + 4 * SKEW_RETRY_FLOOR_MS


def test_a_refusal_the_clocks_do_not_explain_backs_off_doubling_up_to_the_cap() -> None:
    """This device's wall clock runs fast and the answers carry no Date: by its own clock the
    cloud should take the change (written just now), yet it refuses it. Each refusal again
    waits twice as long as the one before (was: every 5 s, for ever)."""
    now, waits = NOW, []
    hlc = encode(NOW, 0, "dev")  # the device's wall time when it was written
    attempt = 0
    for _ in range(10):
        at = skew_retry_at(hlc, now, attempt=attempt)
        waits.append(at - now)
        attempt = skew_attempt(at - now)  # what the requeued entry carries (sync_skew.py)
        now = at + 20  # (sent again, refused again a little later)
    assert waits == [5_000, 10_000, 20_000, 40_000, 80_000, 160_000] + [SKEW_RETRY_CAP_MS] * 4


def test_a_wait_the_clocks_explain_is_kept_and_a_refusal_after_it_backs_off() -> None:
    hlc = encode(NOW + MAX_AHEAD_MS + 7_200_000, 0, "dev")  # 2 h past the cloud's limit
    assert skew_retry_at(hlc, NOW, NOW) == NOW + 7_200_000 + SKEW_MARGIN_MS
    # refused again after that wait (the cloud's Date was off): no sooner than the cap
    attempt = skew_attempt(7_200_000 + SKEW_MARGIN_MS)
    later = NOW + 7_200_000 + SKEW_MARGIN_MS
    assert skew_retry_at(hlc, later, later, attempt=attempt) == later + SKEW_RETRY_CAP_MS
    # a first refusal with a short lead waits it out, then the floor doubled
    assert skew_attempt(SKEW_RETRY_FLOOR_MS) == 1
    assert skew_attempt(SKEW_RETRY_FLOOR_MS + 2_000) == 2  # (20 s: at least twice 7 s)
    assert skew_backoff_ms(1) == 2 * SKEW_RETRY_FLOOR_MS
    assert skew_backoff_ms(-1) == SKEW_RETRY_FLOOR_MS and skew_backoff_ms(99) == SKEW_RETRY_CAP_MS


@given(
    lead=st.integers(min_value=-10 * MAX_AHEAD_MS, max_value=10 * MAX_AHEAD_MS),
    cloud=st.none() | st.integers(min_value=NOW - 10**8, max_value=NOW + 10**8),
    attempt=st.integers(min_value=0, max_value=40),
)
@example(lead=MAX_AHEAD_MS + 6_000, cloud=None, attempt=0)  # waits 7 s: then at least 14 s
def test_a_retry_never_comes_sooner_than_its_backoff_nor_before_the_cloud_takes_it(
    lead: int, cloud: int | None, attempt: int
) -> None:
    hlc = encode(NOW + lead, 0, "dev")
    at = skew_retry_at(hlc, NOW, cloud, attempt=attempt)
    assert at >= NOW + SKEW_RETRY_FLOOR_MS  # never a hot loop
    assert at >= NOW + skew_backoff_ms(attempt) >= NOW + min(SKEW_RETRY_CAP_MS, 5_000 * 2**attempt)
    # the attempt after it waits at least twice as long (until the cap)
    following = skew_backoff_ms(skew_attempt(at - NOW))
    assert following >= min(SKEW_RETRY_CAP_MS, 2 * (at - NOW))
    cloud_then = (NOW if cloud is None else cloud) + (at - NOW)
    assert NOW + lead <= cloud_then + MAX_AHEAD_MS  # the cloud's rule holds by then


def test_a_clock_counts_as_ahead_only_past_the_cloud_s_allowed_lead() -> None:
    assert clock_ahead(NOW, NOW) is None
    assert clock_ahead(NOW + MAX_AHEAD_MS, NOW) is None
    assert clock_ahead(NOW + MAX_AHEAD_MS + 1, NOW) == (MAX_AHEAD_MS + 1, NOW + 1)
    assert clock_ahead(NOW + 3 * MAX_AHEAD_MS, NOW) == (3 * MAX_AHEAD_MS, NOW + 2 * MAX_AHEAD_MS)
