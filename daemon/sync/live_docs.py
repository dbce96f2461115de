"""Document updates over realtime broadcast (part of ``LiveSync``, live.py).

Low latency for collaborative documents, next to the durable path (outbox, ``sync_push``,
``sync_pull``): after a local update of a joined workspace's document commits (the store's
commit listener sees its ``doc.updated`` changelog entry), ``DocRelay`` also broadcasts it on
the workspace's channel as ``doc.update {id, update_id, update, origin}`` (skipped when too
large; best effort: never queued, never retried). Another device receiving it merges it at
once with ``store.documents.apply_broadcast``: deduplicated by the update id (the later pull of
the same row changes nothing), ignored when the document is not there or belongs to another
workspace (the pull brings it), never shown to UIs as ``broadcast.received``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from daemon.errors import DaemonError, InvalidInput
from daemon.events import ChangeEvent
from daemon.realtime.connection import RealtimeConnection
from daemon.sync.live_map import DOC_UPDATE_EVENT, doc_broadcast, doc_update_of

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = ["DOC_UPDATE_EVENT", "DocRelay"]

logger = logging.getLogger(__name__)


class DocRelay:
    """Broadcasts this device's document updates and merges the other devices' ones."""

    def __init__(
        self,
        store: Store,
        connection: Callable[[], RealtimeConnection | None],
        workspaces: Callable[[], Collection[str]],
    ) -> None:
        self._store = store
        self._connection = connection
        self._workspaces = workspaces
        self._remove_listener: Callable[[], None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        """Start watching commits (idempotent)."""
        if self._remove_listener is None:
            self._remove_listener = self._store.add_commit_listener(self._on_commit)

    def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    def _on_commit(self, events: Sequence[ChangeEvent]) -> None:
        """Broadcast this device's committed document updates of joined workspaces."""
        conn = self._connection()
        if conn is None:
            return
        device, joined = self._store.device_id, self._workspaces()
        for event in events:
            ws = event.data.get("workspace_id")
            if event.topic != "doc.updated" or ws not in joined:
                continue
            payload = doc_broadcast(event.data, device)
            if payload is not None:
                task = asyncio.get_running_loop().create_task(self._send(conn, str(ws), payload))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(
        self, conn: RealtimeConnection, workspace_id: str, payload: dict[str, Any]
    ) -> None:
        try:
            await conn.broadcast(workspace_id, DOC_UPDATE_EVENT, payload)
        except Exception:  # best effort: the outbox and the pull deliver it anyway
            logger.warning("live.doc_broadcast_failed ws=%s", workspace_id, exc_info=True)

    async def received(self, workspace_id: str, payload: Any) -> None:
        """A ``doc.update`` broadcast on the channel of ``workspace_id``."""
        found = doc_update_of(payload)
        if found is None:
            logger.info("live.doc_update_ignored ws=%s reason=malformed", workspace_id)
            return
        try:
            await self._store.documents.apply_broadcast(
                found.doc_id,
                found.update,
                workspace_id=workspace_id,
                update_id=found.update_id,
                origin=found.origin,
            )
        except InvalidInput as exc:  # a bad update changes nothing; the pull is the truth
            level = logging.WARNING if exc.field == "update" else logging.INFO
            logger.log(level, "live.doc_update_refused ws=%s reason=%s", workspace_id, exc)
        except DaemonError as exc:
            logger.info("live.doc_update_refused ws=%s reason=%s", workspace_id, exc)
