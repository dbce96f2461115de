"""The cloud methods' local side: what works without a cloud, and the stub for "no cloud".

``LocalSync`` serves the conflict and rejection lists straight from the store (they are local
data); ``DisabledCloud`` answers every cloud call with ``CloudNotConfigured`` (-32003) when no
cloud URL/anon key is set. ``store_publisher`` publishes status snapshots as changelog events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from daemon.errors import DaemonError, InvalidInput
from daemon.sync.status import SyncStatus

if TYPE_CHECKING:
    from daemon.store import Store
    from daemon.store.base import Page

__all__ = ["CloudNotConfigured", "DisabledCloud", "LocalSync", "Publisher", "store_publisher"]

logger = logging.getLogger(__name__)

Publisher = Callable[[str, dict[str, Any]], Awaitable[None]]
Kind = Literal["push", "pull"]


class CloudNotConfigured(DaemonError):
    """The cloud is off: no URL or anon key (-32003)."""

    def __init__(self) -> None:
        super().__init__(
            "the cloud is not configured: set SYNCD_CLOUD_URL and SYNCD_CLOUD_ANON_KEY "
            "(or [cloud] url and anon_key in config.toml)"
        )


def store_publisher(store: Store) -> Publisher:
    """Publish a status snapshot as a changelog-only entry; its data is the snapshot plus ``id``
    (the topic)."""

    async def publish(topic: str, data: dict[str, Any]) -> None:
        await store.sync.publish(topic, {"id": topic, **data})

    return publish


class LocalSync:
    """The sync methods that only read or write the local store (work with or without cloud)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def conflicts(
        self, *, include_resolved: bool = False, limit: int = 100, cursor: str | None = None
    ) -> Page:
        return await self._store.sync.conflicts(
            include_resolved=include_resolved, limit=limit, cursor=cursor
        )

    async def rejected(self, *, limit: int = 100, cursor: str | None = None) -> Page:
        return await self._store.sync.rejected(limit=limit, cursor=cursor)

    async def resolve(
        self, conflict_id: str, *, choice: str | None, value: Any, has_value: bool
    ) -> dict[str, Any]:
        """Settle a conflict with the local or remote value, or with ``value``."""
        if (choice is None) == (not has_value):
            raise InvalidInput("choice", "give either choice (local|remote) or value")
        if choice is not None:
            return await self._store.sync.settle_conflict(conflict_id, choice)
        return await self._store.sync.resolve_conflict(conflict_id, value)


class DisabledCloud(LocalSync):
    """What answers the cloud methods when the cloud is not configured.

    ``start`` publishes its two status snapshots once (``configured: false``), as the cloud
    service publishes its first ones: a UI that subscribes to ``cloud.status`` or
    ``sync.status`` without ``since`` gets them first (retained, ui_bridge/hub.py), whether or
    not a cloud is configured. They never change after: nothing here syncs."""

    def __init__(self, store: Store, publish: Publisher | None = None) -> None:
        super().__init__(store)
        self._publish = publish
        self._first: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._publish is not None:  # in a task, as CloudService's publisher: it runs once
            # the bridge listens (app.py starts it right after), so its hub retains them
            self._first = asyncio.create_task(self._publish_first(self._publish), name="status")

    async def _publish_first(self, publish: Publisher) -> None:
        try:
            await publish("sync.status", await self.sync_status())
            await publish("cloud.status", self.cloud_status())
        except DaemonError as exc:  # e.g. the store is shutting down
            logger.debug("cloud.status_not_published error=%s", type(exc).__name__)

    async def stop(self) -> None:
        if self._first is not None:
            self._first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._first

    def cloud_status(self) -> dict[str, Any]:
        return {
            "configured": False,
            "logged_in": False,
            "auth_required": False,
            "user": None,
            "profile": None,
            "organization": None,
            "role": None,
            "account_as_of": None,
            "linked_workspaces": [],
            "sync_state": "offline",
            "clock_ahead": None,
            "secret_backend": None,
            "last_error": None,
            "realtime": {"connected": False, "subscribed": []},
        }

    async def sync_status(self) -> dict[str, Any]:
        counts = await self._store.sync.counts()
        status = SyncStatus.build(
            (), configured=False, active=False, auth_required=False, counts=counts
        )
        return status.to_json()

    async def login(self, email: str, password: str) -> dict[str, Any]:
        raise CloudNotConfigured()

    async def logout(self) -> dict[str, Any]:
        raise CloudNotConfigured()

    async def workspaces(self) -> dict[str, Any]:
        raise CloudNotConfigured()

    async def link(
        self,
        *,
        workspace_id: str | None = None,
        cloud_workspace_id: str | None = None,
        path: str | None = None,
    ) -> dict[str, Any]:
        raise CloudNotConfigured()

    async def unlink(self, workspace_id: str) -> dict[str, Any]:
        raise CloudNotConfigured()

    async def sync_now(self, kind: Kind) -> dict[str, Any]:
        raise CloudNotConfigured()
