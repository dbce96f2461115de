"""Presence state: keys, metas with unique phx_ref, diffs on track/update/untrack."""

from __future__ import annotations

from devcloud.realtime.presence import Presences

T = "realtime:room1"


def test_track_gives_join_diff_and_state() -> None:
    presences = Presences("p")
    diff = presences.track(T, 1, "device-42", {"online_at": "x"})
    meta = {"online_at": "x", "phx_ref": "p1"}
    assert diff.to_payload() == {"joins": {"device-42": {"metas": [meta]}}, "leaves": {}}
    assert presences.state(T) == {"device-42": {"metas": [meta]}}
    assert presences.state("realtime:other") == {}


def test_identical_retrack_is_a_noop_and_update_is_join_plus_leave() -> None:
    presences = Presences("p")
    presences.track(T, 1, "k", {"s": 1})
    assert presences.track(T, 1, "k", {"s": 1}).is_empty()
    diff = presences.track(T, 1, "k", {"s": 2})
    assert diff.joins == {"k": [{"s": 2, "phx_ref": "p2", "phx_ref_prev": "p1"}]}
    assert diff.leaves == {"k": [{"s": 1, "phx_ref": "p1"}]}
    assert presences.state(T) == {"k": {"metas": [{"s": 2, "phx_ref": "p2", "phx_ref_prev": "p1"}]}}


def test_same_key_from_two_trackers_has_two_metas_with_unique_refs() -> None:
    presences = Presences()
    presences.track(T, 1, "user", {"tab": 1})
    presences.track(T, 2, "user", {"tab": 2})
    metas = presences.state(T)["user"]["metas"]
    assert [m["tab"] for m in metas] == [1, 2]
    assert len({m["phx_ref"] for m in metas}) == 2
    assert all(isinstance(m["phx_ref"], str) for m in metas)


def test_untrack_leaves_and_is_idempotent() -> None:
    presences = Presences("p")
    presences.track(T, 1, "a", {})
    presences.track(T, 2, "b", {})
    diff = presences.untrack(T, 1)
    assert diff.to_payload() == {"joins": {}, "leaves": {"a": {"metas": [{"phx_ref": "p1"}]}}}
    assert not presences.is_tracked(T, 1) and presences.is_tracked(T, 2)
    assert presences.untrack(T, 1).is_empty()
    assert presences.untrack("realtime:none", 9).is_empty()
    presences.untrack(T, 2)
    assert presences.state(T) == {}


def test_payload_is_copied_not_aliased() -> None:
    presences = Presences("p")
    payload = {"n": 1}
    presences.track(T, 1, "k", payload)
    payload["n"] = 2
    assert presences.state(T)["k"]["metas"][0]["n"] == 1
