"""Presence state (sans-I/O), shaped like Phoenix.Presence.

Per topic, presences are grouped by *presence key* (the client's ``config.presence.key``); each
key holds one meta per tracker (a joined channel instance), so one user with two tabs appears as
one key with two metas. Every meta carries a unique string ``phx_ref`` (the Python client pops
it and dies on a KeyError when it is missing). An update is a join of the new meta (with
``phx_ref_prev``) plus a leave of the old one, as Phoenix sends it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

Meta = dict[str, Any]


@dataclass
class PresenceDiff:
    """``presence_diff`` payload: ``{"joins": {key: {"metas": [...]}}, "leaves": {...}}``."""

    joins: dict[str, list[Meta]] = field(default_factory=dict)
    leaves: dict[str, list[Meta]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.joins and not self.leaves

    def to_payload(self) -> dict[str, Any]:
        return {
            "joins": {key: {"metas": metas} for key, metas in self.joins.items()},
            "leaves": {key: {"metas": metas} for key, metas in self.leaves.items()},
        }


@dataclass
class _Tracked:
    key: str
    payload: dict[str, Any]
    meta: Meta


class Presences:
    """Every topic's presences; ``ref_prefix`` makes ``phx_ref`` unique across server runs."""

    def __init__(self, ref_prefix: str = "") -> None:
        self._ref_prefix = ref_prefix
        self._counter = 0
        # topic -> tracker -> what it tracks; insertion order is join order.
        self._topics: dict[str, dict[Hashable, _Tracked]] = {}

    def _new_ref(self) -> str:
        self._counter += 1
        return f"{self._ref_prefix}{self._counter:x}"

    def track(
        self, topic: str, tracker: Hashable, key: str, payload: dict[str, Any]
    ) -> PresenceDiff:
        """Track or update ``tracker``'s presence; an identical re-track gives an empty diff."""
        trackers = self._topics.setdefault(topic, {})
        old = trackers.get(tracker)
        if old is not None and old.key == key and old.payload == payload:
            return PresenceDiff()
        meta: Meta = {**payload, "phx_ref": self._new_ref()}
        diff = PresenceDiff()
        if old is not None:
            meta["phx_ref_prev"] = old.meta["phx_ref"]
            diff.leaves[old.key] = [old.meta]
        trackers[tracker] = _Tracked(key, dict(payload), meta)
        diff.joins[key] = [meta]
        return diff

    def untrack(self, topic: str, tracker: Hashable) -> PresenceDiff:
        """Remove ``tracker``'s presence (a leave, an untrack or a closed socket)."""
        trackers = self._topics.get(topic)
        if not trackers or tracker not in trackers:
            return PresenceDiff()
        old = trackers.pop(tracker)
        if not trackers:
            del self._topics[topic]
        return PresenceDiff(leaves={old.key: [old.meta]})

    def is_tracked(self, topic: str, tracker: Hashable) -> bool:
        return tracker in self._topics.get(topic, {})

    def state(self, topic: str) -> dict[str, Any]:
        """``presence_state`` payload: ``{key: {"metas": [meta, ...]}}``."""
        grouped: dict[str, list[Meta]] = {}
        for tracked in self._topics.get(topic, {}).values():
            grouped.setdefault(tracked.key, []).append(tracked.meta)
        return {key: {"metas": metas} for key, metas in grouped.items()}
