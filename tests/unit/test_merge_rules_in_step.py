"""The store's knowledge of merge maps matches the pure merge's rules."""

from __future__ import annotations

from daemon.store.schema import MAP_COLUMNS
from daemon.sync.merge import RULES


def test_the_store_writes_key_by_key_exactly_the_maps_the_merge_merges_key_by_key() -> None:
    merged = {table: rules.merge_fields for table, rules in RULES.items() if rules.merge_fields}
    assert MAP_COLUMNS == merged
