"""Presence folding, idleness and track coalescing (daemon/realtime/presence.py)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.errors import InvalidInput
from daemon.realtime.presence import (
    IDLE_AFTER_S,
    Member,
    PresenceRoster,
    TrackCoalescer,
    format_time,
    member_of,
    track_payload,
)

NOW = 1_795_000_000.0  # Unix seconds


def meta(device: str, ref: str, *, active_at: float = NOW, **fields: Any) -> dict[str, Any]:
    base = track_payload(
        device_id=device,
        user_id=f"user-{device}",
        display_name=device.title(),
        since=NOW - 60,
        active_at=active_at,
    )
    return {**base, **fields, "phx_ref": ref}


def keys(roster: PresenceRoster) -> list[str]:
    return [m.key for m in roster.members(NOW)]


def test_track_payload_and_the_member_it_becomes() -> None:
    payload = track_payload(
        device_id="dev-a",
        user_id="u1",
        display_name="Ada",
        since=NOW - 60,
        active_at=NOW - 1.5,
        status="busy",
        active_file="src/app.py",
        cursor={"line": 3, "col": 7},
    )
    assert payload == {
        "user_id": "u1",
        "display_name": "Ada",
        "device_id": "dev-a",
        "status": "busy",
        "active_file": "src/app.py",
        "cursor": {"line": 3, "col": 7},
        "since": format_time(NOW - 60),
        "active_at": format_time(NOW - 1.5),
    }
    assert format_time(NOW - 1.5) == "2026-11-18T11:06:38.500Z"
    roster = PresenceRoster()
    roster.apply_state({"dev-a": ({**payload, "phx_ref": "r1"},)})
    assert roster.members(NOW) == [
        Member(
            key="dev-a",
            user_id="u1",
            display_name="Ada",
            device_id="dev-a",
            status="busy",
            active_file="src/app.py",
            cursor={"line": 3, "col": 7},
            since=format_time(NOW - 60),
            active_at=format_time(NOW - 1.5),
        )
    ]


def test_state_replaces_and_diffs_join_and_leave() -> None:
    roster = PresenceRoster()
    roster.apply_state({"a": (meta("a", "r1"),), "b": (meta("b", "r2"),)})
    assert keys(roster) == ["a", "b"]
    roster.apply_diff({"c": (meta("c", "r3"),)}, {"a": (meta("a", "r1"),)})
    assert keys(roster) == ["b", "c"]
    roster.apply_state({"d": (meta("d", "r4"),)})  # after a rejoin: the whole truth
    assert keys(roster) == ["d"]
    roster.apply_diff({}, {"d": ({"phx_ref": "r4"},)})
    assert keys(roster) == [] and len(roster) == 0


def test_update_is_a_join_of_the_new_meta_and_a_leave_of_the_old() -> None:
    roster = PresenceRoster()
    roster.apply_state({"a": (meta("a", "r1", active_file="x.py"),)})
    new = {**meta("a", "r2", active_file="y.py"), "phx_ref_prev": "r1"}
    roster.apply_diff({"a": (new,)}, {"a": (meta("a", "r1", active_file="x.py"),)})
    [member] = roster.members(NOW)
    assert member.active_file == "y.py"


def test_a_device_with_two_metas_stays_until_its_last_one_leaves() -> None:
    roster = PresenceRoster()
    roster.apply_diff({"a": (meta("a", "r1", active_file="one"),)}, {})
    roster.apply_diff({"a": (meta("a", "r2", active_file="two"),)}, {})
    assert [m.active_file for m in roster.members(NOW)] == ["two"]  # the latest describes it
    roster.apply_diff({}, {"a": ({"phx_ref": "r2"},)})
    assert [m.active_file for m in roster.members(NOW)] == ["one"]
    roster.apply_diff({}, {"a": ({"phx_ref": "r1"},)})
    assert roster.members(NOW) == []


def test_leave_of_an_unknown_ref_or_key_changes_nothing() -> None:
    roster = PresenceRoster()
    roster.apply_state({"a": (meta("a", "r1"),)})
    roster.apply_diff({}, {"a": ({"phx_ref": "zzz"},), "nobody": ({"phx_ref": "r1"},)})
    assert keys(roster) == ["a"]


@pytest.mark.parametrize(
    ("idle_for", "status", "shown"),
    [
        (0, "active", "active"),
        (IDLE_AFTER_S - 0.001, "active", "active"),
        (IDLE_AFTER_S, "active", "away"),
        (3600, "active", "away"),
        (3600, "busy", "busy"),
        (0, "away", "away"),
        (0, "weird", "active"),
    ],
)
def test_idle_members_become_away_after_five_minutes(
    idle_for: float, status: str, shown: str
) -> None:
    roster = PresenceRoster()
    roster.apply_state({"a": (meta("a", "r1", active_at=NOW - idle_for, status=status),)})
    assert [m.status for m in roster.members(NOW)] == [shown]


def test_next_change_is_when_the_first_active_member_turns_away() -> None:
    roster = PresenceRoster()
    assert roster.next_change(NOW) is None
    roster.apply_state(
        {
            "a": (meta("a", "r1", active_at=NOW - 100),),
            "b": (meta("b", "r2", active_at=NOW - 10),),
            "c": (meta("c", "r3", active_at=NOW - 290, status="busy"),),
            "d": (meta("d", "r4", active_at=NOW - 400),),  # already away
        }
    )
    assert roster.next_change(NOW) == NOW - 100 + IDLE_AFTER_S


def test_metas_from_other_clients_are_read_defensively() -> None:
    roster = PresenceRoster()
    roster.apply_state(
        {
            "js-client": ({"online_at": "2026-08-21T00:00:00Z"},),  # no phx_ref, foreign shape
            "odd": ({"phx_ref": "r9", "display_name": 7, "since": "yesterday", "cursor": [1]},),
        }
    )
    members = {m.key: m for m in roster.members(NOW)}
    assert members["js-client"].device_id == "js-client"
    assert members["js-client"].status == "active"
    assert members["odd"].display_name is None and members["odd"].since == "yesterday"
    assert members["odd"].status == "active"  # an unreadable time never makes anyone away
    assert members["odd"].cursor == [1]


@pytest.mark.parametrize(
    "fields",
    [
        {"device_id": ""},
        {"status": "gone"},
        {"since": float("nan")},
        {"active_at": -1},
        {"active_file": 3},
    ],
)
def test_bad_track_payloads_are_refused(fields: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "device_id": "d",
        "user_id": None,
        "display_name": None,
        "since": NOW,
        "active_at": NOW,
        **fields,
    }
    with pytest.raises(InvalidInput):
        track_payload(**args)


# TrackCoalescer -----------------------------------------------------------------------------------


def test_first_track_goes_out_at_once_and_later_ones_at_most_once_per_second() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    assert tracks.offer("dev", {"v": 1}, 10.0) == {"v": 1}
    assert tracks.offer("dev", {"v": 2}, 10.2) is None
    assert tracks.offer("dev", {"v": 3}, 10.5) is None  # latest wins
    assert tracks.next_due() == 11.0
    assert tracks.take_due(10.99) == []
    assert tracks.take_due(11.0) == [("dev", {"v": 3})]
    assert tracks.take_due(12.5) == [] and tracks.next_due() is None
    assert tracks.offer("dev", {"v": 4}, 12.5) == {"v": 4}  # a second passed: straight out


def test_each_key_has_its_own_budget() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    assert tracks.offer("a", {"v": 1}, 0.0) == {"v": 1}
    assert tracks.offer("b", {"v": 1}, 0.1) == {"v": 1}
    assert tracks.offer("a", {"v": 2}, 0.2) is None
    assert tracks.take_due(1.0) == [("a", {"v": 2})]


def test_unchanged_values_send_nothing() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer()
    assert tracks.offer("dev", {"v": 1}, 0.0) == {"v": 1}
    assert tracks.offer("dev", {"v": 1}, 5.0) is None
    assert tracks.offer("dev", {"v": 2}, 5.5) == {"v": 2}
    assert tracks.offer("dev", {"v": 3}, 5.6) is None
    assert tracks.offer("dev", {"v": 2}, 5.7) is None  # back to what was sent: nothing held
    assert tracks.next_due() is None


def realtime_refuses(sent_at: list[float], max_calls: int = 5, window_s: float = 30.0) -> bool:
    """Whether Supabase Realtime's per-join client presence limit (presence_handler.ex
    ``limit_client_presence_event``) refuses one of these tracks: the first track opens a
    window of ``window_s``, the calls in it are counted, the one after ``max_calls`` closes
    the channel; the first track after the window's end opens the next one."""
    reset_at: float | None = None
    counter = 0
    for at in sent_at:
        if reset_at is None or at > reset_at:
            reset_at, counter = at + window_s, 1
        elif counter >= max_calls:
            return True
        else:
            counter += 1
    return False


def test_rate_over_a_burst_is_one_per_interval_within_realtimes_budget() -> None:
    """An offer every 10 ms for 100 s (a UI sending its cursor): one track a second until 4
    have gone out in 30 s, then the next once the oldest of them is 30 s old; Realtime's
    limit (5 per window of 30 s, each join) is never reached, even with each track delayed
    by up to a second on the way."""
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    sent_at: list[float] = []
    for step in range(10_000):
        now = step * 0.01
        if tracks.offer("dev", {"v": step}, now) is not None:
            sent_at.append(now)
        sent_at.extend(now for _ in tracks.take_due(now))
    assert sent_at[:5] == [0.0, 1.0, 2.0, 3.0, 30.0]
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(sent_at, sent_at[1:], strict=False))
    assert all(sent_at[i + 4] - sent_at[i] >= 30.0 - 1e-9 for i in range(len(sent_at) - 4))
    assert not realtime_refuses(sent_at)
    delays = [0.0, 0.9, 0.0, 0.9, 0.5]  # arrival order stays send order (one socket)
    arrived = [at + delays[i % len(delays)] for i, at in enumerate(sent_at)]
    assert arrived == sorted(arrived) and not realtime_refuses(arrived)
    assert realtime_refuses([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # one a second, as before: refused
    assert tracks.next_due() is not None  # the latest value is held, and goes out
    [(_, last)] = tracks.take_due(sent_at[-4] + 30.0)
    assert last == {"v": 9999}


def test_a_rejoin_counts_the_budget_afresh() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    for n in range(4):
        assert tracks.offer("dev", {"v": n}, float(n)) == {"v": n}
    assert tracks.offer("dev", {"v": 4}, 4.0) is None and tracks.next_due() == 30.0
    tracks.resend("dev")  # a new join: Realtime counts its tracks from zero
    assert tracks.take_due(4.0) == [("dev", {"v": 4})]
    for n in range(5, 8):
        assert tracks.offer("dev", {"v": n}, float(n)) == {"v": n}
    assert tracks.offer("dev", {"v": 8}, 8.0) is None and tracks.next_due() == 34.0
    tracks.unsent("dev")  # {"v": 7} was refused (the channel was closed meanwhile)
    tracks.resend("dev")  # joined again
    assert tracks.take_due(8.0) == [("dev", {"v": 8})]


def test_the_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TrackCoalescer(budget=0)
    with pytest.raises(ValueError):
        TrackCoalescer(window_s=0)


def test_resend_after_a_rejoin_respects_the_interval() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    tracks.offer("dev", {"v": 1}, 0.0)
    tracks.resend("dev")
    assert tracks.take_due(0.5) == []
    assert tracks.take_due(1.0) == [("dev", {"v": 1})]
    tracks.offer("dev", {"v": 2}, 1.2)  # held
    tracks.resend("dev")  # the held value is the one to send
    assert tracks.take_due(2.0) == [("dev", {"v": 2})]
    tracks.resend("unknown")
    assert tracks.next_due() is None


def test_resend_makes_an_identical_offer_go_out_again() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    tracks.offer("dev", {"v": 1}, 0.0)
    tracks.take_due(5.0)
    tracks.resend("dev")
    assert tracks.take_due(5.0) == [("dev", {"v": 1})]


def test_discard_forgets_a_key() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    tracks.offer("dev", {"v": 1}, 0.0)
    tracks.offer("dev", {"v": 2}, 0.1)
    tracks.discard("dev")
    assert tracks.next_due() is None
    assert tracks.offer("dev", {"v": 2}, 0.2) == {"v": 2}


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TrackCoalescer(interval_s=0)


def test_a_track_refused_before_the_join_goes_out_at_once_with_the_join() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    assert tracks.offer("dev", {"v": 1}, 0.0) == {"v": 1}
    tracks.unsent("dev")  # the channel was still joining: the push was refused
    assert tracks.next_due() is None and tracks.take_due(5.0) == []  # held for the join
    assert tracks.offer("dev", {"v": 2}, 0.3) is None  # still not joined: latest wins
    tracks.resend("dev")  # joined
    assert tracks.take_due(0.4) == [("dev", {"v": 2})]  # the refused push used no interval
    assert tracks.offer("dev", {"v": 3}, 0.9) is None and tracks.next_due() == 1.4


def test_an_unsent_track_keeps_the_interval_of_the_one_before() -> None:
    tracks: TrackCoalescer[str] = TrackCoalescer(interval_s=1.0)
    tracks.offer("dev", {"v": 1}, 0.0)  # sent
    tracks.resend("dev")  # the socket dropped and rejoined: held until 1.0
    tracks.offer("dev", {"v": 2}, 0.2)
    assert tracks.take_due(1.0) == [("dev", {"v": 2})]
    tracks.unsent("dev")  # the channel closed again meanwhile
    tracks.resend("dev")
    assert tracks.take_due(1.5) == [("dev", {"v": 2})]  # 1 s after the last track that went out
    tracks.unsent("unknown")
    assert tracks.next_due() is None


def test_member_of_a_tracked_meta_turns_away_when_idle_as_in_a_roster() -> None:
    """This device's own entry while offline is built from the meta it last tracked."""
    meta = track_payload(
        device_id="dev-1", user_id="u1", display_name="ada", since=100.0, active_at=200.0,
        cursor={"line": 3},
    )  # fmt: skip
    roster = PresenceRoster()
    roster.apply_state({"dev-1": ({**meta, "phx_ref": "r1"},)})
    for now in (200.0, 200.0 + IDLE_AFTER_S):
        [listed] = roster.members(now)
        assert member_of("dev-1", meta, now) == listed
    assert member_of("dev-1", meta, 200.0).status == "active"
    assert member_of("dev-1", meta, 200.0 + IDLE_AFTER_S).status == "away"
    busy = {**meta, "status": "busy"}
    assert member_of("dev-1", busy, 200.0 + IDLE_AFTER_S).status == "busy"
