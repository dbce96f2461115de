"""The sync driver: every linked workspace's ``WorkspaceSync`` (workspace.py), started on login,
stopped on logout, woken by the store's commit listener.

Only changes made on this device wake a push: their changelog entries carry this device's
``origin`` (a pulled change carries its writer's, and an echo of our own writes none at all).
Outbox entries no such entry announces (a new document's row, a document adopted by a pull:
sync_docs.py) wake it through the store's push listener.
``sync_now`` runs a push (or pull) of every linked workspace and sums what they moved.
All workspaces share one phase of their periodic pulls (protocol.next_periodic_pull: they fall
due together) and one ``CloudReach`` (protocol.py: while the cloud cannot be reached, one
backoff and one probe at a time for all of them; the first answer wakes the others).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from daemon.events import CHANGE_TOPICS, ChangeEvent
from daemon.store.sync import pull_scope
from daemon.store.sync_types import Link
from daemon.sync.adapters import merge_pulled
from daemon.sync.protocol import CloudReach
from daemon.sync.workspace import Counts, DriverSettings, Kind, SyncApi, WorkspaceSync
from daemon.types import LOCAL_ONLY_ROLES

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = ["DriverSettings", "SyncApi", "SyncDriver", "WorkspaceSync", "merge_pulled"]

logger = logging.getLogger(__name__)

#: A held workspace's error (``activate``): a reason code, then what to do.
NOT_A_MEMBER: Final = (
    "not_a_member: the logged-in user is not a member of this workspace's organisation;"
    " log in as a member, or unlink it"
)

#: ``doc.updated``: a local document update (its outbox entry waits for a push too).
_LOCAL_TOPICS: Final = frozenset(CHANGE_TOPICS) | {"doc.updated"}


class SyncDriver:
    """Every linked workspace's sync; the store's commit listener wakes the right one."""

    def __init__(
        self,
        *,
        store: Store,
        api: SyncApi,
        refresh_auth: Callable[[], Awaitable[None]],
        on_change: Callable[[], None],
        settings: DriverSettings | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings or DriverSettings()
        self._store = store
        self._api = api
        self._refresh_auth = refresh_auth
        self._on_change = on_change
        self._clock = clock
        self._rand = rand
        #: the one phase of every workspace's periodic pull: they fall due together, one
        #: wakeup for all (protocol.next_periodic_pull)
        self._pull_phase = clock()
        #: whether the cloud can be reached: one backoff and one probe at a time for all
        #: workspaces while it cannot (protocol.CloudReach)
        self._reach = CloudReach(self.settings.backoff, rand)
        self._syncs: dict[str, WorkspaceSync] = {}
        self._active = False
        self._member_orgs: frozenset[str] | None = None  # (``activate``)
        self._remove_listener: Callable[[], None] | None = None
        self._remove_push_listener: Callable[[], None] | None = None

    # Lifecycle

    def open(self) -> None:
        self._remove_listener = self._store.add_commit_listener(self._on_commit)
        self._remove_push_listener = self._store.add_push_listener(self._on_pushes)

    async def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._remove_push_listener is not None:
            self._remove_push_listener()
            self._remove_push_listener = None
        syncs, self._syncs = list(self._syncs.values()), {}
        await asyncio.gather(*(s.close() for s in syncs))

    @property
    def active(self) -> bool:
        return self._active

    async def activate(self, member_orgs: Collection[str] | None = None) -> None:
        """Logged in: every linked workspace syncs (pull at once, then push), except those
        of organisations the user is not a member of (``member_orgs``; None: not known, all
        sync). Those are held: pushing them would only get their changes rejected (forbidden)
        and pulling them returns nothing; they sync again once a member logs in."""
        self._active = True
        self._member_orgs = None if member_orgs is None else frozenset(member_orgs)
        for sync in list(self._syncs.values()):
            await self._start(sync)

    def deactivate(self) -> None:
        """Logged out: every workspace goes offline."""
        self._active = False
        self._member_orgs = None
        for sync in self._syncs.values():
            sync.go_offline()

    # Links

    @property
    def reach(self) -> CloudReach:
        """Whether the cloud can be reached, shared by every workspace."""
        return self._reach

    @property
    def syncs(self) -> Mapping[str, WorkspaceSync]:
        return self._syncs

    async def add(self, link: Link, *, publish: bool = False) -> WorkspaceSync:
        """Sync a linked workspace (``publish``: just published, its history pushed first)."""
        sync = self._syncs.get(link.workspace_id)
        if sync is not None:
            return sync
        sync = WorkspaceSync(
            link,
            store=self._store,
            api=self._api,
            settings=self.settings,
            refresh_auth=self._refresh_auth,
            on_change=self._on_change,
            clock=self._clock,
            rand=self._rand,
            publishing=publish,
            pull_phase=self._pull_phase,
            reach=self._reach,
            on_reached=self._cloud_reached,
        )
        self._syncs[link.workspace_id] = sync
        sync.open()
        if self._active:
            await self._start(sync)
        self._on_change()
        return sync

    def _cloud_reached(self, by: str) -> None:
        """An outage ended (the cloud answered ``by``'s request): the others go on now."""
        for sync in self._syncs.values():
            if sync.workspace_id != by:
                sync.cloud_reached()

    async def remove(self, workspace_id: str) -> None:
        sync = self._syncs.pop(workspace_id, None)
        if sync is not None:
            await sync.close()
            self._on_change()

    async def _start(self, sync: WorkspaceSync) -> None:
        members = self._member_orgs
        if members is not None and sync.link.org_id not in members:
            if sync.held is None:
                logger.warning(
                    "sync.held ws=%s org=%s reason=not_a_member", sync.workspace_id,
                    sync.link.org_id,
                )  # fmt: skip
            sync.hold(NOT_A_MEMBER)
            self._on_change()
            return
        sync.start(await self._store.sync.cursor(pull_scope(sync.workspace_id)))

    # Sync now

    async def sync_now(self, kind: Kind) -> dict[str, Any]:
        """Run a push (or pull) of every linked workspace now; the summed counts, and the
        first failure's reason as ``error`` (None when every run succeeded)."""
        if not self._active:  # logged out: nothing may go out
            return {**Counts().as_dict(), "error": "offline", "workspaces": len(self._syncs)}
        futures = [sync.request(kind) for sync in self._syncs.values()]
        results = await asyncio.gather(*futures)
        total: dict[str, Any] = {**Counts().as_dict(), "error": None}
        for result in results:
            for name, value in result.items():
                if name == "error":
                    total["error"] = total["error"] or value
                else:
                    total[name] += value
        total["workspaces"] = len(results)
        return total

    def _on_commit(self, events: Sequence[ChangeEvent]) -> None:
        """Local writes reached the outbox: wake the sync of their workspace."""
        device = self._store.device_id
        woken: set[str] = set()
        for event in events:
            data = event.data
            if event.topic not in _LOCAL_TOPICS or data.get("origin") != device:
                continue
            if event.topic.startswith("message.") and data.get("role") in LOCAL_ONLY_ROLES:
                continue  # local-only (I6): it wrote no outbox entry, there is nothing to push
            ws = (
                data.get("id") if event.topic.startswith("workspace.") else data.get("workspace_id")
            )
            if isinstance(ws, str) and ws not in woken:
                sync = self._syncs.get(ws)
                if sync is not None:
                    woken.add(ws)
                    sync.local_changes()

    def _on_pushes(self, workspaces: frozenset[str]) -> None:
        """A commit queued outbox entries of ``workspaces`` that no event announced: wake them."""
        for ws in workspaces:
            sync = self._syncs.get(ws)
            if sync is not None:
                sync.local_changes()
