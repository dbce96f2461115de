"""Events: facts in the past tense, published after the fact.

``ChangeEvent`` is one changelog entry (a committed change a UI can see). The store hands each
committed transaction's entries to its commit listeners; the local API forwards them to UIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Every topic a ChangeEvent can carry (cancelling a task is ``task.updated``).
CHANGE_TOPICS: tuple[str, ...] = (
    "workspace.created",
    "workspace.updated",
    "workspace.deleted",
    "conversation.created",
    "conversation.updated",
    "conversation.deleted",
    "message.created",
    "message.updated",
    "message.deleted",
    "task.created",
    "task.updated",
    "task.deleted",
)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One changelog entry: ``seq`` increases by one per entry and is never reused."""

    seq: int
    topic: str
    data: dict[str, Any]
