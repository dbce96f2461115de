"""Realtime hints, coalesced: the postgres_changes rows LiveSync receives, merged in batches.

A hint is one complete row of a synced table, already mapped to the local shape
(live_map.remote_change said ``apply``). Merging each in its own store transaction costs a
transaction per row: during another device's big push every subscribed daemon would commit
thousands of one-row transactions. So ``add`` only queues the change, and one task applies
every hint waiting, grouped by workspace in arrival order, with ONE
``store.sync.apply_pull(cursor=None)`` per group of at most ``MAX_HINT_BATCH`` rows (the merge
is idempotent and per field; a group may hold the same row twice, the later version merging
over the earlier one; the pull cursor never moves). Whatever arrives while a group is applied
waits for the next round: the busier the stream, the bigger the groups.

Hints are only hints (sync-design.md: realtime is at-most-once; the pull is the truth):
- more than ``MAX_HINTS_WAITING`` waiting for one workspace are dropped and a catch-up pull
  is asked for instead (flat memory whatever the rate);
- hints of a workspace unlinked meanwhile (``is_linked`` false, or ``drop``) are dropped;
- ``close`` (logout, stop) drops what waits: the catch-up pull after the next subscribe
  brings those rows;
- a group that fails is logged with its traceback and never stops the next one.
Document updates a group stored reach the loaded documents (``store.documents.absorb``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from daemon.aio import cancel_and_wait
from daemon.store.sync import pull_scope
from daemon.sync.adapters import NEW_ROWS_AS_IS, merge_pulled

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = ["MAX_HINT_BATCH", "MAX_HINTS_WAITING", "HintQueue"]

logger = logging.getLogger(__name__)

#: Hints merged in one store transaction at most.
MAX_HINT_BATCH: Final = 2000
#: Hints waiting for one workspace beyond which they are dropped for a catch-up pull.
MAX_HINTS_WAITING: Final = 20_000


class HintQueue:
    """Queues realtime hints and applies them in batches (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        catch_up: Callable[[str], None],
        is_linked: Callable[[str], bool],
        *,
        max_waiting: int = MAX_HINTS_WAITING,
    ) -> None:
        self._store = store
        self._catch_up = catch_up
        self._is_linked = is_linked
        self._max_waiting = max_waiting
        self._waiting: dict[str, list[dict[str, Any]]] = {}  # workspace -> changes, in order
        self._task: asyncio.Task[None] | None = None
        #: Store transactions the hints took so far (for the logs and tests).
        self.transactions = 0

    def add(self, workspace_id: str, change: dict[str, Any]) -> None:
        """Queue one mapped change of ``workspace_id``; applied soon, with the others waiting."""
        waiting = self._waiting.setdefault(workspace_id, [])
        if len(waiting) >= self._max_waiting:
            logger.info("live.hints_dropped ws=%s rows=%d", workspace_id, len(waiting))
            del self._waiting[workspace_id]
            self._catch_up(workspace_id)
            return
        waiting.append(change)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="cloud-realtime-hints")

    def drop(self, workspace_id: str) -> None:
        """Forget the hints waiting for ``workspace_id`` (it was unlinked)."""
        self._waiting.pop(workspace_id, None)

    async def close(self) -> None:
        """Drop what waits and stop applying (a group being committed still commits)."""
        self._waiting.clear()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting, {}
            for workspace_id, changes in waiting.items():
                for start in range(0, len(changes), MAX_HINT_BATCH):
                    await self._apply(workspace_id, changes[start : start + MAX_HINT_BATCH])

    async def _apply(self, workspace_id: str, changes: list[dict[str, Any]]) -> None:
        if not self._is_linked(workspace_id):
            return
        try:
            self.transactions += 1
            await self._store.sync.apply_pull(
                scope=pull_scope(workspace_id),
                changes=changes,
                cursor=None,
                merge=merge_pulled,
                as_is=NEW_ROWS_AS_IS,
            )
        except Exception:  # one failed group must not stop the next; the pull catches up
            logger.exception("live.hints_failed ws=%s rows=%d", workspace_id, len(changes))
        else:
            logger.debug("live.hints_applied ws=%s rows=%d", workspace_id, len(changes))
