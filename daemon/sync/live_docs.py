"""Document updates over realtime broadcast (part of ``LiveSync``, live.py).

Low latency for collaborative documents, next to the durable path (outbox, ``sync_push``,
``sync_pull``): after a local update of a joined workspace's document commits (the store's
commit listener sees its ``doc.updated`` changelog entry), ``DocRelay`` also broadcasts it on
the workspace's channel as ``doc.update {id, update_id, update, origin, more?}`` (skipped when
too large; best effort: never retried). Paced per document (live_pacer.py): the first update of
a burst goes at once, the ones typed within the next 100 ms go together when it ends, so a
typist stays within Realtime's message rate. Another device receiving it merges each update
at once with ``store.documents.apply_broadcast``: deduplicated by the update id (the later
pull of the same row changes nothing), ignored when the document is not there or belongs to
another workspace (the pull brings it), never shown to UIs as ``broadcast.received``. One
that claims this device's origin is ignored (another member's forgery: stored, it would be
broadcast again as this device's own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from daemon.errors import DaemonError, InvalidInput
from daemon.events import ChangeEvent
from daemon.realtime.connection import RealtimeConnection
from daemon.sync.live_map import DOC_UPDATE_EVENT, doc_broadcast, doc_updates_of
from daemon.sync.live_pacer import DocPacer, Outgoing

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
        self._pacer = DocPacer()
        self._timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        """Start watching commits (idempotent)."""
        if self._remove_listener is None:
            self._remove_listener = self._store.add_commit_listener(self._on_commit)

    def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pacer = DocPacer()  # what waits is pushed and pulled anyway

    def _on_commit(self, events: Sequence[ChangeEvent]) -> None:
        """Broadcast this device's committed document updates of joined workspaces (paced)."""
        if self._connection() is None:
            return
        device, joined = self._store.device_id, self._workspaces()
        now = asyncio.get_running_loop().time()
        for event in events:
            ws = event.data.get("workspace_id")
            if event.topic != "doc.updated" or ws not in joined:
                continue
            payload = doc_broadcast(event.data, device)
            if payload is not None:
                self._send_all(self._pacer.receive_update(str(ws), payload, now))
        self._plan()

    def _plan(self) -> None:
        due = self._pacer.next_due()
        if due is None or (self._timer is not None and self._timer.when() <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(due, self._due, due)

    def _due(self, due: float) -> None:
        self._timer = None
        # a timer may fire a little early (uvloop counts milliseconds): it is due all the same
        now = max(asyncio.get_running_loop().time(), due)
        self._send_all(self._pacer.payloads_due(now))
        self._plan()

    def _send_all(self, outgoing: list[Outgoing]) -> None:
        conn, joined = self._connection(), self._workspaces()
        for ws, payload in outgoing:
            if conn is not None and ws in joined:
                task = asyncio.get_running_loop().create_task(self._send(conn, ws, payload))
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
        found = doc_updates_of(payload)
        if not found:
            logger.info("live.doc_update_ignored ws=%s reason=malformed", workspace_id)
        elif found[0].origin == self._store.device_id:
            # never ours: the channel does not echo our broadcasts (self: false). Stored with our
            # origin, it would pass for this device's update and be broadcast again as ours.
            logger.info("live.doc_update_ignored ws=%s reason=own_origin", workspace_id)
            return
        for update in found:
            try:
                await self._store.documents.apply_broadcast(
                    update.doc_id,
                    update.update,
                    workspace_id=workspace_id,
                    update_id=update.update_id,
                    origin=update.origin,
                )
            except InvalidInput as exc:  # a bad update changes nothing; the pull is the truth
                level = logging.WARNING if exc.field == "update" else logging.INFO
                logger.log(level, "live.doc_update_refused ws=%s reason=%s", workspace_id, exc)
            except DaemonError as exc:
                logger.info("live.doc_update_refused ws=%s reason=%s", workspace_id, exc)
