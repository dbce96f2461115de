"""map_patch: what a whole-value edit of a merge map writes (R3), shared by the merge and the
store's local writes."""

from __future__ import annotations

from daemon.jsonmaps import map_patch, visible_map


def test_an_edit_writes_added_changed_and_removed_keys_only() -> None:
    old = {"same": 1, "changed": 1, "removed": 1, "tombstone": None}
    new = {"same": 1, "changed": 2, "added": [1]}
    assert map_patch(old, new) == {"added": [1], "changed": 2, "removed": None}
    assert list(map_patch(old, new)) == ["added", "changed", "removed"]  # key order


def test_a_null_or_a_missing_key_is_a_removal_and_values_differ_by_type() -> None:
    assert map_patch({"a": 1}, {"a": None}) == map_patch({"a": 1}, {}) == {"a": None}
    assert map_patch({"a": 1}, None) == {"a": None}
    assert map_patch({"a": 1}, {"a": True}) == {"a": True}  # 1 and true are other values
    assert map_patch({"a": 1, "b": None}, {"a": 1}) == {}
    assert visible_map({"a": None, "b": 0}) == {"b": 0} and visible_map([1]) == {}
