"""JSON maps that merge key by key (rule R3 of daemon/sync/merge.py): what a reader sees of one,
and which keys an edit writes. Pure, standard library only; shared by the merge and by the
store's local writes (which sit below sync and so cannot import the merge). Also ``text_at``:
where in a JSON value text fails a check (the local API's refusals name it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["map_patch", "same", "text_at", "visible_map"]


def same(a: Any, b: Any) -> bool:
    """The same JSON value: equal and of one type (``1``, ``1.0`` and ``true`` differ)."""
    return a is b or (type(a) is type(b) and a == b)


def visible_map(value: Any) -> dict[str, Any]:
    """The map a reader sees: tombstoned (null) keys left out; anything but a map reads {}."""
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if v is not None}


def map_patch(old: Any, new: Any) -> dict[str, Any]:
    """The keys an edit of a map from ``old`` to ``new`` (whole values) writes, in key order:
    the added and changed ones with their new value, the removed ones as null (a tombstone)."""
    before, after = visible_map(old), visible_map(new)
    patch: dict[str, Any] = {}
    for key in sorted({*before, *after}):
        if key not in after:
            patch[key] = None
        elif key not in before or not same(before[key], after[key]):
            patch[key] = after[key]
    return patch


def text_at(value: Any, bad: Callable[[str], bool]) -> str | None:
    """Where in ``value`` a text (a string or an object's key) is ``bad``: "at a.b[0]",
    "in a key of a" ("in a key" at the top), "" for ``value`` itself; None if nowhere."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            if any(bad(key) for key in item):
                return f"in a key of {path}" if path else "in a key"
            stack.extend((child, f"{path}.{key}" if path else key) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str) and bad(item):
            return f"at {path}" if path else ""
    return None
