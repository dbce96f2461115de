"""Realtime inside the daemon: one Phoenix connection per cloud while logged in.

``LiveSync`` (owned by ``CloudService``) runs a ``RealtimeConnection`` from ``activate()`` (a
login) to ``deactivate()`` (a logout, or shutdown), joined to the channel of every linked
workspace (``add_workspace`` on link and at start, ``remove_workspace`` on unlink; a published
workspace is added with ``join=False`` and joined by ``join_workspace`` once its history is
pushed, so the history is not echoed back row by row). The
connection asks ``token_provider`` (the cloud session's access token) for a fresh token before
the current one expires (judged by ``token_life``, the session's count of its life on this
device's clock, not the JWT's ``exp``: the cloud's clock), and pushes it to every joined
channel itself.

What each event does (the connection delivers them in order; a handler failure is logged with
its traceback and never stops the next event):

- ``PostgresChange``: a hint. A complete row of a synced table of that workspace is mapped to
  the local shape and merged with ``store.sync.apply_pull(cursor=None)`` (idempotent per-field
  merge; the cursor stays where the last pull left it). A pure echo of our own push (every
  clock of the row is this device's) is not merged at all: it holds nothing new. A row whose
  ``origin`` is this device may still hold another device's older fields (an edit pushed
  late), so the origin alone never drops a hint. A hint that cannot be used as it is (too
  large, a hard delete) asks for a pull instead (live_map.remote_change).
  Hints are coalesced (live_hints.py): the handler only queues the mapped change; one task
  applies every hint waiting, grouped by workspace in arrival order, with ONE ``apply_pull``
  per group, so a burst (another device's big push) costs a few transactions, not one per row.
- ``ChannelJoined`` and ``PostgresSubscribed``: ``catch_up(workspace_id)`` asks that workspace's
  sync for a pull now: realtime is at-most-once, the pull closes whatever gap the
  (re)subscribe left (changes committed while not subscribed are never replayed).
- ``PresenceState``/``PresenceDiff`` (and a lost socket or a left channel): ``presence.changed
  {workspace_id, members, truncated}`` when the members changed; the same when an idle member
  turns ``away`` (a timer, no traffic needed). The members are those the channel shows while
  connected, and this device always (``self`` true) as it last tracked itself, never the
  channel's echo of it: shown also when the channel does not show it (the cloud unreachable,
  the channel not joined yet), so a UI never loses "you" during an outage, and shown at once
  after ``set_presence`` (the echo comes a round trip, or a coalesced second, later).
  Others are only shown as the live channel knows them, and only as many as fit in one
  frame of the local API (``max_frame_bytes``, set by app.py from
  ``bridge.max_frame_bytes``, less ``FRAME_ENVELOPE``): ``truncated`` counts those left out
  (live_map.fit_members). ``presence.list`` answers the same.
- ``BroadcastReceived``: ``broadcast.received {workspace_id, event, payload}``, except the
  ``doc.update`` event: a document update of another device, merged by ``DocRelay``
  (live_docs.py, which also broadcasts this device's updates) and never shown as a broadcast.
  That name is reserved (live_map.RESERVED_EVENTS): ``broadcast`` refuses it, so a UI's
  message can never pass for a document update on another device.

Document updates a postgres_changes hint stores reach the loaded documents
(``store.documents.absorb``), as after a pull.

Presence and broadcast events are ephemeral: they go out through ``publisher`` (the bridge
hub's live-only path, set by app.py) and are never stored. This device tracks its presence in
every joined workspace (status ``active`` from the join on); ``set_presence`` updates it
(coalesced by the connection to at most one track a second and 4 in 30 s per workspace,
within Supabase Realtime's presence limit; latest wins).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from daemon.aio import cancel_and_wait
from daemon.errors import InvalidInput, RateLimited
from daemon.realtime import channels
from daemon.realtime.connection import RealtimeConnection, TokenLife, TokenProvider
from daemon.realtime.frames import (
    BroadcastReceived,
    ChannelClosed,
    ChannelError,
    ChannelJoined,
    ConnectionLost,
    ConnectionOpened,
    Event,
    PostgresChange,
    PostgresSubscribed,
    PresenceDiff,
    PresenceState,
    json_size,
)
from daemon.realtime.presence import Member, member_of, track_payload
from daemon.sync.live_docs import DOC_UPDATE_EVENT, DocRelay
from daemon.sync.live_hints import HintQueue
from daemon.sync.live_map import (
    RESERVED_EVENTS,
    fit_members,
    member_json,
    next_away_at,
    remote_change,
)
from daemon.sync.live_pacer import SendWindow
from daemon.sync.local import CloudNotConfigured

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = ["DisabledLive", "Identity", "LivePublisher", "LiveSync"]

logger = logging.getLogger(__name__)

#: ``publisher(topic, data)``: deliver an ephemeral event to the local clients (never stored).
LivePublisher = Callable[[str, dict[str, Any]], object]
#: ``identity()`` -> (user id, display name) of the logged-in user, as far as known.
Identity = Callable[[], tuple[str | None, str | None]]

# Limits: bytes of the value's UTF-8 JSON, as the frame carries it (frames.json_size)
MAX_BROADCAST_BYTES: Final = 256 * 1024
MAX_PRESENCE_BYTES: Final = 16 * 1024
#: What ``set_presence`` may change.
PRESENCE_FIELDS: Final = ("status", "active_file", "cursor")
#: The local API's frame limit by default (daemon.config BridgeSettings.max_frame_bytes), and
#: the bytes of a frame kept for what wraps the members (JSON-RPC envelope, ids, topic).
FRAME_BYTES: Final = 1 << 20
FRAME_ENVELOPE: Final = 4096


class LiveSync:
    """The realtime side of one cloud (see the module docstring)."""

    def __init__(
        self,
        *,
        url: str,
        apikey: str,
        store: Store,
        token_provider: TokenProvider,
        catch_up: Callable[[str], None],
        token_life: TokenLife | None = None,
        identity: Identity,
        require_login: Callable[[str], None],
        on_status: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        connection_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = url
        self._apikey = apikey
        self._store = store
        self._token_provider = token_provider
        self._token_life = token_life
        self._sends = SendWindow()  # broadcast.send's own rate (UIs' broadcasts)
        self._catch_up = catch_up
        self._identity = identity
        self._require_login = require_login
        self._on_status = on_status
        self._clock = clock
        self._options = dict(connection_options or {})
        self.publisher: LivePublisher | None = None
        #: the largest frame a UI takes (the bridge's max_frame_bytes; app.py sets it)
        self.max_frame_bytes = FRAME_BYTES
        self._workspaces: set[str] = set()
        self._unjoined: set[str] = set()  # linked, channel not joined yet (join_workspace)
        self._presence: dict[str, dict[str, Any]] = {}  # workspace -> status/file/cursor/since
        self._tracked: dict[str, dict[str, Any]] = {}  # workspace -> the meta last tracked
        self._published: dict[str, dict[str, Any]] = {}  # workspace -> what UIs were shown
        self._subscribed: set[str] = set()  # receiving postgres_changes right now
        self._connected = False
        self._conn: RealtimeConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._away: asyncio.TimerHandle | None = None
        self._hints = HintQueue(store, catch_up, lambda ws: ws in self._workspaces)
        self._docs = DocRelay(store, lambda: self._conn, lambda: self._workspaces)

    # Lifecycle -------------------------------------------------------------------------------

    @property
    def connection(self) -> RealtimeConnection | None:
        """The running connection (None while logged out)."""
        return self._conn

    def status(self) -> dict[str, Any]:
        """For ``cloud.status``: the socket is open; the workspaces whose changes arrive now."""
        return {"connected": self._connected, "subscribed": sorted(self._subscribed)}

    def activate(self) -> None:
        """Logged in: connect and join every linked workspace (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="cloud-realtime")
        self._docs.open()

    async def deactivate(self) -> None:
        """Logged out (or stopping): close the connection; presence shown is cleared."""
        self._docs.close()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._hints.close()  # no event comes any more: drop what waits
        self._presence.clear()
        self._tracked.clear()
        self._clear_presence()
        self._set_state(connected=False, subscribed=set())

    async def _run(self) -> None:
        try:
            async with RealtimeConnection(
                self._url,
                self._apikey,
                token_provider=self._token_provider,
                token_life=self._token_life,
                on_event=self._on_event,
                device_id=self._store.device_id,
                **self._options,
            ) as conn:
                self._conn = conn
                for workspace_id in sorted(self._workspaces - self._unjoined):
                    await self._join(conn, workspace_id)
                await asyncio.Future()  # until deactivate() cancels
        except Exception:  # supervisor boundary: realtime is optional, sync goes on without it
            logger.exception("live.failed")
        finally:
            self._conn = None

    def cloud_reachable(self) -> None:
        """A sync request reached the cloud: a realtime reconnect in backoff goes now."""
        if self._conn is not None:
            self._conn.cloud_reachable()

    # Workspaces ------------------------------------------------------------------------------

    async def add_workspace(self, workspace_id: str, *, join: bool = True) -> None:
        """A linked workspace: join its channel now (if connected) and on every connect.
        ``join=False``: linked (presence and broadcast accept it) but its channel is joined
        only by ``join_workspace`` (a published workspace, once its history is pushed)."""
        try:
            workspace_id = channels.check_workspace_id(workspace_id)
        except InvalidInput:  # channels name workspaces by UUID; sync still works without
            logger.warning("live.workspace_skipped ws=%s reason=not_a_uuid", workspace_id)
            return
        if workspace_id in self._workspaces:
            return
        self._workspaces.add(workspace_id)
        if not join:
            self._unjoined.add(workspace_id)
        elif self._conn is not None:
            await self._join(self._conn, workspace_id)

    async def join_workspace(self, workspace_id: str) -> None:
        """Join the channel of a workspace added with ``join=False`` (else nothing to do)."""
        if workspace_id not in self._unjoined:
            return
        self._unjoined.discard(workspace_id)
        if self._conn is not None:
            await self._join(self._conn, workspace_id)

    async def remove_workspace(self, workspace_id: str) -> None:
        """Unlinked: leave its channel."""
        if workspace_id not in self._workspaces:
            return
        self._workspaces.discard(workspace_id)
        self._unjoined.discard(workspace_id)
        self._presence.pop(workspace_id, None)
        self._tracked.pop(workspace_id, None)
        self._hints.drop(workspace_id)
        self._set_state(subscribed=self._subscribed - {workspace_id})
        if self._conn is not None:
            await self._conn.leave_workspace(workspace_id)
        self._show_members(workspace_id, [])

    async def _join(self, conn: RealtimeConnection, workspace_id: str) -> None:
        await conn.join_workspace(workspace_id)
        # Tracked now, sent once the channel is joined (and again after every rejoin).
        payload = self._tracked[workspace_id] = self._track_payload(workspace_id)
        await conn.track(workspace_id, payload)

    # Presence and broadcast (the local API) ---------------------------------------------------

    async def set_presence(self, workspace_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Update this device's presence in a linked workspace: ``changes`` holds any of
        ``status``, ``active_file``, ``cursor`` (the others keep their value); the meta tracked."""
        workspace_id = self._linked(workspace_id, "presence.set")
        unknown = set(changes) - set(PRESENCE_FIELDS)
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "is not a presence field")
        if json_size("cursor", changes.get("cursor")) > MAX_PRESENCE_BYTES:
            raise InvalidInput("cursor", f"must encode to at most {MAX_PRESENCE_BYTES} bytes")
        current = self._presence.setdefault(workspace_id, {"since": self._clock()})
        previous = dict(current)
        current.update(changes)
        try:
            payload = self._track_payload(workspace_id)
        except InvalidInput:
            self._presence[workspace_id] = previous  # bad input changes nothing
            raise
        self._tracked[workspace_id] = payload
        if self._conn is not None:
            await self._conn.track(workspace_id, payload)
        # Offline (or not joined yet) the channel echoes nothing: show this device's change.
        self._show_members(workspace_id, self._members(workspace_id))
        return {"workspace_id": workspace_id, "presence": payload}

    def presence(self, workspace_id: str) -> dict[str, Any]:
        """Who is online in a linked workspace (this device included, ``self`` true)."""
        workspace_id = self._linked(workspace_id, "presence.list")
        return self._shown(workspace_id, self._members(workspace_id))

    async def broadcast(
        self, workspace_id: str, event: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Send an ephemeral message to the workspace's other devices (never stored).
        ``sent`` is false when the channel is not joined right now (it is not queued). The
        daemon's own event names (``RESERVED_EVENTS``) are refused, and so is a send over
        ``SENDS_PER_S`` in a second (RateLimited; live_pacer.py)."""
        workspace_id = self._linked(workspace_id, "broadcast.send")
        if not isinstance(event, str) or not event.strip():
            raise InvalidInput("event", "must be a non-empty string")
        if event in RESERVED_EVENTS:
            raise InvalidInput("event", f"{event!r} is reserved (the daemon's own event)")
        if json_size("payload", payload) > MAX_BROADCAST_BYTES:
            raise InvalidInput("payload", f"must encode to at most {MAX_BROADCAST_BYTES} bytes")
        if (wait := self._sends.take(time.monotonic())) > 0:
            raise RateLimited("broadcast.send", wait)
        sent = False
        if self._conn is not None:
            sent = await self._conn.broadcast(workspace_id, event, payload)
        return {"workspace_id": workspace_id, "event": event, "sent": sent}

    def _linked(self, workspace_id: str, operation: str) -> str:
        self._require_login(operation)
        checked = channels.check_workspace_id(workspace_id)
        if checked not in self._workspaces:
            raise InvalidInput("workspace_id", "is not linked to the cloud (cloud.link first)")
        return checked

    def _track_payload(self, workspace_id: str) -> dict[str, Any]:
        now = self._clock()
        current = self._presence.setdefault(workspace_id, {"since": now})
        user_id, display_name = self._identity()
        return track_payload(
            device_id=self._store.device_id,
            user_id=user_id,
            display_name=display_name,
            since=current["since"],
            active_at=now,
            status=current.get("status", "active"),
            active_file=current.get("active_file"),
            cursor=current.get("cursor"),
        )

    # Events ----------------------------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        match event:
            case PostgresChange(topic=topic):
                await self._remote_change(event, topic)
            case ChannelJoined(topic=topic) | PostgresSubscribed(topic=topic):
                self._subscription_changed(topic, isinstance(event, PostgresSubscribed))
                self._request_catch_up(topic)
            case PresenceState(topic=topic) | PresenceDiff(topic=topic):
                self._presence_changed(topic)
            case ChannelClosed(topic=topic, rejoining=rejoining):
                self._subscription_changed(topic, False)
                if not rejoining:
                    self._presence_changed(topic)
            case ChannelError(topic=topic):
                self._subscription_changed(topic, False)
            case ConnectionOpened():
                self._set_state(connected=True)
            case ConnectionLost():
                self._connection_lost()
            case BroadcastReceived(topic=topic, event=name, payload=payload):
                workspace_id = self._linked_of(topic)
                if workspace_id is not None and name == DOC_UPDATE_EVENT:
                    await self._docs.received(workspace_id, payload)
                elif workspace_id is not None:
                    data = {"workspace_id": workspace_id, "event": name, "payload": payload}
                    self._publish("broadcast.received", data)

    def _connection_lost(self) -> None:
        """No other member is known now: every linked workspace shows this device alone."""
        for workspace_id in sorted(self._workspaces):
            self._show_members(workspace_id, self._members(workspace_id))
        self._plan_away()
        self._set_state(connected=False, subscribed=set())

    def _request_catch_up(self, topic: str) -> None:
        """A (re)join or "Subscribed to PostgreSQL" asks for a catch-up pull of the workspace:
        what was committed before it was not (and will never be) announced."""
        workspace_id = self._linked_of(topic)
        if workspace_id is not None:
            self._catch_up(workspace_id)

    def _linked_of(self, topic: str) -> str | None:
        """The linked workspace whose channel ``topic`` is; None for any other topic."""
        workspace_id = channels.workspace_id_of(topic)  # memoised: asked per frame
        return workspace_id if workspace_id in self._workspaces else None

    def _subscription_changed(self, topic: str, subscribed: bool) -> None:
        """Track which workspaces receive their changes right now (a join is not enough)."""
        workspace_id = self._linked_of(topic)
        if workspace_id is None:
            return
        if subscribed:
            self._set_state(subscribed=self._subscribed | {workspace_id})
        else:
            self._set_state(subscribed=self._subscribed - {workspace_id})

    def _set_state(
        self, *, connected: bool | None = None, subscribed: set[str] | None = None
    ) -> None:
        before = (self._connected, self._subscribed)
        if connected is not None:
            self._connected = connected
        if subscribed is not None:
            self._subscribed = subscribed
        if (self._connected, self._subscribed) != before:
            self._on_status()

    async def _remote_change(self, event: PostgresChange, topic: str) -> None:
        workspace_id = self._linked_of(topic)
        if workspace_id is None:
            return
        found = remote_change(event, workspace_id, self._store.device_id)
        if found.verdict == "pull":
            logger.info("live.change_pulled ws=%s reason=%s", workspace_id, found.reason)
            self._catch_up(workspace_id)
        elif found.verdict == "apply" and found.change is not None:
            self._hints.add(workspace_id, found.change)
        else:
            logger.debug("live.change_ignored ws=%s reason=%s", workspace_id, found.reason)

    def _members(self, workspace_id: str) -> list[dict[str, Any]]:
        own = self._store.device_id
        return [member_json(m, own) for m in self._roster(workspace_id, self._clock())]

    def _roster(self, workspace_id: str, now: float) -> list[Member]:
        """Who is in a linked workspace at ``now``: the other devices its channel shows, and
        this device as it last tracked itself, whatever the channel shows: offline, not joined,
        or an older meta (the echo of a track comes a round trip later, and a track is held up
        to a second by the coalescing), so ``presence.list`` right after ``presence.set``
        answers what was set."""
        own, conn = self._store.device_id, self._conn
        others = [] if conn is None else conn.members(workspace_id, now)
        meta = self._tracked.get(workspace_id) or self._track_payload(workspace_id)
        me = member_of(own, meta, now)
        return sorted([*(m for m in others if m.device_id != own), me], key=lambda m: m.key)

    def _presence_changed(self, topic: str) -> None:
        workspace_id = channels.workspace_id_of(topic)
        if workspace_id is None:
            return
        members = self._members(workspace_id) if workspace_id in self._workspaces else []
        self._show_members(workspace_id, members)
        self._plan_away()

    def _shown(self, workspace_id: str, members: list[dict[str, Any]]) -> dict[str, Any]:
        """``presence.list``'s answer (and ``presence.changed``'s data): as many ``members`` as
        fit in one frame of the local API; ``truncated``: how many were left out."""
        budget = max(self.max_frame_bytes - FRAME_ENVELOPE, self.max_frame_bytes // 2)
        kept, truncated = fit_members(members, budget)
        return {"workspace_id": workspace_id, "members": kept, "truncated": truncated}

    def _show_members(self, workspace_id: str, members: list[dict[str, Any]]) -> None:
        """Publish ``presence.changed`` when what the UIs were last shown differs."""
        shown = self._shown(workspace_id, members)
        if self._published.get(workspace_id, self._shown(workspace_id, [])) == shown:
            return
        if members:
            self._published[workspace_id] = shown
        else:
            self._published.pop(workspace_id, None)
        self._publish("presence.changed", shown)

    def _clear_presence(self) -> None:
        for workspace_id in list(self._published):
            self._show_members(workspace_id, [])
        self._cancel_away()

    def _plan_away(self) -> None:
        """Wake when the next active member turns away, to announce it."""
        self._cancel_away()
        now = self._clock()
        members = [m for ws in self._workspaces for m in self._roster(ws, now)]
        due = next_away_at(members, now)
        if due is not None:
            loop = asyncio.get_running_loop()
            self._away = loop.call_later(due - now + 0.001, self._away_due)

    def _cancel_away(self) -> None:
        if self._away is not None:
            self._away.cancel()
            self._away = None

    def _away_due(self) -> None:
        self._away = None
        for workspace_id in sorted(self._workspaces):
            self._show_members(workspace_id, self._members(workspace_id))
        self._plan_away()

    def _publish(self, topic: str, data: dict[str, Any]) -> None:
        publisher = self.publisher
        if publisher is None:
            return
        try:
            publisher(topic, data)
        except TypeError as exc:  # (publish_live's word for data it cannot write as JSON)
            logger.info("live.publish_refused topic=%s reason=%s", topic, exc)
        except Exception:  # an undeliverable event must not stop the realtime handler
            logger.exception("live.publish_failed topic=%s", topic)


class DisabledLive:
    """What answers the presence and broadcast methods when the cloud is not configured."""

    async def set_presence(self, workspace_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        raise CloudNotConfigured()

    def presence(self, workspace_id: str) -> dict[str, Any]:
        raise CloudNotConfigured()

    async def broadcast(
        self, workspace_id: str, event: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        raise CloudNotConfigured()
