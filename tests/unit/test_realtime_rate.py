"""devcloud's Realtime message rate (devcloud/realtime/rate.py, pure): Supabase's
``max_events_per_second`` counter, 5 s buckets, the last 12 averaged."""

from __future__ import annotations

from devcloud.realtime.rate import MessageRate


def test_the_limit_holds_from_the_bucket_whose_average_reaches_it() -> None:
    rate = MessageRate(100)
    rate.add(0.0, 499)
    assert not rate.is_triggered(4.9)  # decided when a bucket closes only
    rate.add(4.9)  # 500 in the first 5 s: 100 a second
    assert rate.is_triggered(5.0)
    assert rate.average == 100.0


def test_the_average_is_over_the_buckets_since_the_start_then_a_minute() -> None:
    rate = MessageRate(100)
    rate.add(0.0, 400)  # 80 a second in the first bucket: below
    assert not rate.is_triggered(5.0)
    rate.add(5.0, 1100)  # (400 + 1100) / 10 s = 150 a second
    assert rate.is_triggered(10.0)
    assert not rate.is_triggered(25.0)  # (1500 + 0 + 0 + 0) / 25 s = 60: below
    assert rate.average == 60.0


def test_only_the_last_twelve_buckets_count() -> None:
    rate = MessageRate(100)
    rate.add(0.0, 6000)
    assert rate.is_triggered(5.0)  # 1200 a second
    assert rate.is_triggered(60.0)  # 6000 over 12 buckets, 60 s: 100 a second
    assert not rate.is_triggered(65.0)  # that bucket is out: 0
    assert rate.average == 0.0


def test_after_an_idle_spell_the_counter_starts_afresh() -> None:
    rate = MessageRate(100)
    rate.add(0.0, 10)
    assert not rate.is_triggered(1e9)  # a bounded number of buckets closed, all empty
    assert rate.average == 0.0
    rate.add(1e9, 600)
    assert rate.is_triggered(1e9 + 5.0)  # 600 in its first 5 s
