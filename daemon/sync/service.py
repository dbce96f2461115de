"""CloudService: the cloud as the daemon's methods see it (``cloud.*`` and ``sync.*``).

It owns the cloud adapter (``CloudHttp``, ``SecretStore``, ``CloudSession``, ``CloudApi``), the
``SyncDriver`` and the link files, and is built by app.py only when the cloud is configured;
otherwise ``DisabledCloud`` answers (``CloudNotConfigured`` -> -32003 for the cloud calls, the
local conflict/rejection lists still work). Nothing local ever waits for the cloud.

Lifecycle: ``start`` restores every link from the store, then logs in silently in the
background from the stored refresh token (``CloudSession.restore``). The session's status
listener starts the driver on every login (also after a restore) and stops it on logout or
when the cloud ends the session (auth_required). A restored session is logged in before the
cloud has confirmed it (the cloud may be out of reach at start): the syncs then retry as in
any outage, and the profile and organisation that could not be loaded are loaded at the
session's first grant (``_session_changed``). Until then ``cloud.status`` shows the account
last loaded for that user (kept in the store: ``store.account``), with ``account_as_of``
saying when it was loaded; a load replaces it (``account_as_of`` null: current), a logout
removes it.

Folders: a linked workspace without a local ``path`` gets its link's folder; a clone's row
comes with its first pull, so the commit listener places it then (``Linker.place``).

Realtime: restored links and clones join their workspace's channel at once; a published
workspace joins once its first push run is over (drained, or failed), so its history is not
echoed back to this device row by row (``_join_when_pushed``).

Status: ``cloud.status`` and ``sync.status`` snapshots are published as changelog events
(topics ``cloud.status`` and ``sync.status``, through ``publish``), one writer task coalescing
every change (sync progress at most once per ``STATUS_EVERY_S``, the latest state always
last; a change of the cloud session or links at once), and only when the snapshot is news
after the last one published (``EventView``, status.py): something other than the times and
the states changed (outbox, rejected, conflicts, errors, progress, the session, links,
realtime), or the states at rest differ from the last event's. The times (``last_pull_at``,
``last_push_at``, ``retry_at``) move with every periodic pull and every retry, and a pull that
brings nothing is pulling for a moment: as events they filled the changelog's replay
retention with nothing new (three idle links: ~8,600 a day; an outage: one per retry). They
are current in every event that is published and in the answer to ``sync.status``/
``cloud.status``, never events of their own; likewise a retry that fails again (its request
in flight counts as the failure it retries). Durable events
keep the one event path every UI and the Python client already follow (seq order, replay from
``since``, no gap). The first snapshots are published at start, so a UI that subscribes
without ``since`` gets the latest of each first (retained: ui_bridge/hub.py). No token or
password ever appears in either (I8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from daemon.config import CloudSettings
from daemon.errors import DaemonError, InvalidInput
from daemon.events import ChangeEvent
from daemon.hlc import clock_ahead
from daemon.realtime.presence import format_time
from daemon.store.sync_types import Link
from daemon.sync.cloud import (
    AccountSnapshot,
    AuthRequired,
    CloudApi,
    CloudError,
    CloudHttp,
    CloudRejected,
    CloudSession,
    Membership,
    Profile,
    SecretStore,
    SessionStatus,
)
from daemon.sync.cloud.http import Bounds
from daemon.sync.cloud.records import check_uuid
from daemon.sync.cloud.status import account_fields
from daemon.sync.driver import DriverSettings, SyncDriver
from daemon.sync.links import Linker, checked_folder
from daemon.sync.live import LiveSync
from daemon.sync.local import (
    CloudNotConfigured,
    DisabledCloud,
    Kind,
    LocalSync,
    Publisher,
    store_publisher,
)
from daemon.sync.status import EventView, SyncStatus, iso
from daemon.sync.workspace import Counts, WorkspaceSync

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = ["CloudNotConfigured", "CloudService", "DisabledCloud", "Publisher", "store_publisher"]

logger = logging.getLogger(__name__)

#: ``sync.push``/``sync.pull`` answer after this long even if the run is not over.
SYNC_NOW_TIMEOUT_S: Final = 300.0
#: Sync status snapshots are published at most this often (the last change always is;
#: a change of the cloud session or links is published at once): a push
#: changes the outbox depth with every batch, and each snapshot costs a count of the whole
#: linked outbox and a changelog write (py-spy of a 20k-row publish: the count alone was
#: 2.6 % of the daemon's samples at one snapshot per 500-row batch).
STATUS_EVERY_S: Final = 0.1


def _link_target(workspace_id: str | None, cloud_workspace_id: str | None, path: str | None) -> str:
    """The workspace ``cloud.link`` links (checked params; the canonical form of a cloud id)."""
    if (workspace_id is None) == (cloud_workspace_id is None):
        raise InvalidInput("workspace_id", "give either workspace_id or cloud_workspace_id")
    if workspace_id is not None:
        if not workspace_id:
            raise InvalidInput("workspace_id", "must not be empty")
        return workspace_id
    assert cloud_workspace_id is not None
    try:
        target = check_uuid(cloud_workspace_id)
    except ValueError:
        raise InvalidInput("cloud_workspace_id", "must be a UUID") from None
    if path is None:
        raise InvalidInput("path", "cloning a cloud workspace needs the folder to clone into")
    return target


class CloudService(LocalSync):
    """The configured cloud; ``await start()`` / ``await stop()`` (app.py)."""

    def __init__(
        self,
        settings: CloudSettings,
        *,
        store: Store,
        data_dir: Path,
        publish: Publisher,
        driver_settings: DriverSettings | None = None,
        http_client: httpx.AsyncClient | None = None,
        http_bounds: Mapping[str, Bounds] | None = None,
        use_keyring: bool = True,
    ) -> None:
        super().__init__(store)
        if settings.url is None or settings.anon_key is None:
            raise CloudNotConfigured()
        self._http = CloudHttp(
            settings.url, settings.anon_key, client=http_client, bounds=http_bounds
        )
        self._secrets = SecretStore(data_dir, settings.url, use_keyring=use_keyring)
        self.session = CloudSession(self._http, self._secrets)
        self.api = CloudApi(self.session)
        self.driver = SyncDriver(
            store=store,
            api=self.api,
            refresh_auth=self._refresh_auth,
            on_change=lambda: self._changed(sync=True),
            settings=driver_settings,
        )
        self._publish = publish
        self._profile: Profile | None = None
        self._membership: Membership | None = None
        #: the organisations the user is a member of (None: not known); the driver holds the
        #: links of any other (SyncDriver.activate)
        self._member_orgs: frozenset[str] | None = None
        #: the account last loaded (from the cloud, or kept in the store from an earlier run)
        self._account: AccountSnapshot | None = None
        self._account_loaded = False  # loaded from the cloud since the start or the login
        self.links = Linker(
            store=store, api=self.api, pull_interval_s=self.driver.settings.pull_interval_s
        )
        self.live = LiveSync(  # realtime: hints, presence and broadcast while logged in
            url=settings.url,
            apikey=settings.anon_key.reveal(),
            store=store,
            token_provider=self.session.access_token,
            token_life=self.session.token_life,
            catch_up=self._catch_up,
            identity=self._identity,
            require_login=self._require_login,
            on_status=lambda: self._changed(cloud=True),
        )
        self._logged_in = False
        self._logging_in = False
        self._loading_account = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty = asyncio.Event()
        self._dirty_cloud = self._dirty_sync = False
        self._cloud_changed = asyncio.Event()  # ends the pause between two progress snapshots
        self._published: dict[str, EventView] = {}  # topic: its last event, as compared
        self._remove_listener: Callable[[], None] | None = None
        self._remove_commit_listener: Callable[[], None] | None = None
        self._stopped = False
        self._clock_warned = False  # sync.clock_ahead logged (_clock_ahead)

    # Lifecycle

    async def start(self) -> None:
        await self.session.__aenter__()
        self.driver.open()
        links = await self._store.sync.links()
        self._account = await self._kept_account()
        self._remove_commit_listener = self._store.add_commit_listener(self._on_commit)
        for link in links:
            await self.driver.add(link)
            await self.live.add_workspace(link.workspace_id)
            self._place_folder(link)
        await self.links.restore_names(links)
        self._remove_listener = self.session.add_listener(self._session_changed)
        self._changed(cloud=True, sync=True)  # the first snapshots, whatever comes next:
        # a UI that subscribes later gets them first (retained, ui_bridge/hub.py)
        self._spawn(self._publish_loop(), "cloud-status-publisher")
        self._spawn(self.session.restore(), "cloud-restore")
        logger.info("cloud.started url=%s links=%d", self._http.url, len(self.driver.syncs))

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._remove_listener is not None:
            self._remove_listener()
        if self._remove_commit_listener is not None:
            self._remove_commit_listener()
        await self.live.deactivate()
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.driver.close()
        await self.session.__aexit__(None, None, None)
        await self._http.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("cloud.task_failed task=%s", task.get_name(), exc_info=task.exception())

    # The session

    def _session_changed(self, status: SessionStatus) -> None:
        if status.logged_in and not self._logged_in:
            self._logged_in = True
            if not self._logging_in:  # a silent restore: login() does this itself
                self._loading_account = True
                self._spawn(self._became_logged_in(), "cloud-logged-in")
        elif status.logged_in and self._account_pending(status):
            # granted at last (restored while the cloud was out of reach): the account now
            self._loading_account = True
            self._spawn(self._became_logged_in(), "cloud-account")
        elif not status.logged_in and self._logged_in:
            self._logged_in = False
            self._profile = self._membership = self._member_orgs = None
            self._account_loaded = False
            self.driver.deactivate()
            self._spawn(self.live.deactivate(), "cloud-realtime-stop")
        self._changed(cloud=True, sync=True)

    async def _became_logged_in(self) -> None:
        self._loading_account = True
        try:
            await self._load_account()
        except CloudError as exc:  # not fatal: loaded again when a call needs it
            logger.warning("cloud.account_unavailable reason=%s", exc.reason)
        finally:
            self._loading_account = False
        if not self.session.status.logged_in:  # refused or logged out meanwhile
            return
        await self.driver.activate(self._member_orgs)
        self.live.activate()
        self._changed(cloud=True, sync=True)

    def _account_pending(self, status: SessionStatus) -> bool:
        """A granted session whose account could not be loaded (and is not being loaded)."""
        granted = status.expires_at is not None and status.last_error is None
        busy = self._loading_account or self._logging_in
        return self._logged_in and granted and self._member_orgs is None and not busy

    async def _load_account(self) -> None:
        """Profile and first organisation; a ``CloudError`` leaves them unknown. A load that a
        logout (or a login as another user) overtook is dropped: it is not the session's."""
        user = self.session.status.user
        self._member_orgs = None
        profile = await self.api.profile()
        memberships = await self.api.memberships()
        now = self.session.status
        if not now.logged_in or now.user != user:
            return
        self._profile = profile
        self._membership = memberships[0] if memberships else None
        self._member_orgs = frozenset(m.org_id for m in memberships)
        await self._keep_account()

    async def _kept_account(self) -> AccountSnapshot | None:
        """The account an earlier run loaded last (None: none, or unreadable)."""
        try:
            return AccountSnapshot.from_json(await self._store.account.load())
        except ValueError:
            return None

    async def _keep_account(self) -> None:
        """Keep the account just loaded, for ``cloud.status`` after a restart."""
        user = self.session.status.user
        if user is None:
            return
        now = format_time(time.time())
        self._account = AccountSnapshot.loaded(
            self._http.url, user.id, self._profile, self._membership, now
        )
        self._account_loaded = True
        try:
            await self._store.account.save(self._account.to_json())
        except DaemonError as exc:  # shown all the same; kept at the next load
            logger.warning("cloud.account_not_kept error=%s", type(exc).__name__)

    async def _organisation(self) -> Membership | None:
        """The user's (first) organisation (None: the user has none); loaded again if it
        could not be at login. Raises the ``CloudError`` (e.g. the cloud is unavailable)
        when it cannot be loaded: a session restored while the cloud was out of reach does
        not know it yet, which is not "no organisation"."""
        if self._membership is None:
            try:
                await self._load_account()
            finally:
                self._changed(cloud=True)
        return self._membership

    def _catch_up(self, workspace_id: str) -> None:
        sync = self.driver.syncs.get(workspace_id)
        if sync is not None:
            sync.catch_up()

    def _identity(self) -> tuple[str | None, str | None]:
        user, profile = self.session.status.user, self._profile
        name = profile.display_name if profile is not None else None
        return (None if user is None else user.id), name or (None if user is None else user.email)

    async def _refresh_auth(self) -> None:
        await self.session.refresh_access_token(await self.session.access_token())

    def _require_login(self, operation: str) -> None:
        status = self.session.status
        if not status.logged_in:
            raise AuthRequired(operation, "auth_required" if status.auth_required else "logged_out")

    async def login(self, email: str, password: str) -> dict[str, Any]:
        self._logging_in = True
        try:
            await self.session.login(email, password)
        finally:
            self._logging_in = False
        await self._became_logged_in()
        return self.cloud_status()

    async def logout(self) -> dict[str, Any]:
        self.driver.deactivate()
        await self.live.deactivate()
        await self.session.logout()
        self._account, self._account_loaded = None, False
        try:
            await self._store.account.clear()
        except DaemonError as exc:  # never shown without its session; the next load replaces it
            logger.warning("cloud.account_not_cleared error=%s", type(exc).__name__)
        return self.cloud_status()

    # Status

    def cloud_status(self) -> dict[str, Any]:
        s = self.session.status
        sync = self._sync_status({})
        return {
            "configured": True,
            "logged_in": s.logged_in,
            "auth_required": s.auth_required,
            "user": None if s.user is None else s.user.to_json(),
            **self._account_json(),
            "linked_workspaces": [
                self.links.link_json(w.link, w) for w in self.driver.syncs.values()
            ],
            "sync_state": sync.state,
            "clock_ahead": None if sync.clock_ahead is None else dict(sync.clock_ahead),
            "realtime": self.live.status(),
            "secret_backend": s.secret_backend,
            "last_error": s.last_error,
        }

    def _account_json(self) -> dict[str, Any]:
        """The account as loaded since the start; while the session's is not loaded yet (the
        cloud is out of reach), the one last loaded for that user, at ``account_as_of``."""
        s, kept = self.session.status, self._account
        if not self._account_loaded and s.logged_in and kept and kept.shows(self._http.url, s.user):
            return kept.status_fields()
        return account_fields(self._profile, self._membership)

    def _sync_status(self, counts: dict[str, int]) -> SyncStatus:
        s = self.session.status
        return SyncStatus.build(
            (sync.status for sync in self.driver.syncs.values()),
            configured=True,
            active=s.logged_in and self.driver.active,
            auth_required=s.auth_required,
            counts=counts,
            session_error=s.last_error,
            clock_ahead=self._clock_ahead(),
        )

    def _clock_ahead(self) -> dict[str, Any] | None:
        """``SyncStatus.clock_ahead``; the first time it is seen, a WARNING (once, until the
        wall clock caught up)."""
        found = clock_ahead(self._store.clock_wall_ms, round(time.time() * 1000))
        if found is None:
            if self._clock_warned:
                logger.info("sync.clock_ahead_cleared")
                self._clock_warned = False
            return None
        ahead_ms, until_ms = found
        until = iso(until_ms / 1000)
        if not self._clock_warned:
            self._clock_warned = True
            logger.warning(
                "sync.clock_ahead ahead_ms=%d until=%s: the device's clock runs ahead of its "
                "wall clock (which was set back); the cloud refuses the changes made until then "
                "(clock_skew) and they are sent again once it takes them",
                ahead_ms,
                until,
            )
        return {"ahead_ms": ahead_ms, "until": until}

    async def sync_status(self) -> dict[str, Any]:
        return self._sync_status(await self._store.sync.counts()).to_json()

    def _changed(self, *, cloud: bool = False, sync: bool = False) -> None:
        self._dirty_cloud |= cloud
        if cloud:
            self._cloud_changed.set()
        self._dirty_sync |= sync
        self._dirty.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._cloud_changed.clear()
            cloud, sync = self._dirty_cloud, self._dirty_sync
            self._dirty_cloud = self._dirty_sync = False
            try:
                if sync:
                    if any(s.session.snapshot.connected for s in self.driver.syncs.values()):
                        self.live.cloud_reachable()  # sync works again: so may realtime
                    status = self._sync_status(await self._store.sync.counts())
                    await self._publish_new("sync.status", status.to_json(), status.event_view())
                    await self.links.touch(list(self.driver.syncs.values()))
                if cloud or sync:  # cloud.status shows the overall sync state
                    cloud_status = self.cloud_status()
                    view = self._cloud_event_view(cloud_status)
                    await self._publish_new("cloud.status", cloud_status, view)
            except DaemonError as exc:  # e.g. the store is shutting down
                logger.debug("cloud.status_not_published error=%s", type(exc).__name__)
            if not cloud:  # sync progress (e.g. a push batch): the next waits a little,
                # (asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                # that meets the event, and stop() would wait for this task for ever)
                with contextlib.suppress(TimeoutError):  # unless the cloud status changes
                    async with asyncio.timeout(STATUS_EVERY_S):
                        await self._cloud_changed.wait()

    async def _publish_new(self, topic: str, data: dict[str, Any], view: EventView) -> None:
        """Publish ``data`` if it is news after the last event of ``topic`` (``view``: as
        events compare it; module docstring)."""
        if not view.is_news_after(self._published.get(topic)):
            return
        await self._publish(topic, data)
        self._published[topic] = view

    def _cloud_event_view(self, status: dict[str, Any]) -> EventView:
        """``status`` (``cloud_status()``, just taken) as its event compares it: the sync
        states it shows are those of ``sync.status``."""
        sync = self._sync_status({}).event_view()
        ahead = status["clock_ahead"]
        content = {
            **status,
            "sync_state": None,
            # (ahead_ms moves with every snapshot: as in sync.status's, ``until`` is the news)
            "clock_ahead": None if ahead is None else ahead["until"],
            "linked_workspaces": [{**w, "state": None} for w in status["linked_workspaces"]],
        }
        return EventView(content, sync.states, exact=sync.exact)

    # Links

    async def workspaces(self) -> dict[str, Any]:
        """The organisation's cloud workspaces (``linked``: synced with this device)."""
        self._require_login("cloud.workspaces")
        member = await self._organisation()
        if member is None:
            return {"organization": None, "items": []}
        items = await self.api.workspaces(member.org_id)
        return {
            "organization": {"id": member.org_id, "name": member.org_name},
            "items": [
                {
                    "id": w.id,
                    "org_id": w.org_id,
                    "name": w.name,
                    "description": w.description,
                    "created_at": w.created_at,
                    "linked": w.id in self.driver.syncs,
                }
                for w in items
            ],
        }

    async def link(
        self,
        *,
        workspace_id: str | None = None,
        cloud_workspace_id: str | None = None,
        path: str | None = None,
    ) -> dict[str, Any]:
        """Publish a local workspace (``workspace_id``) or clone a cloud one into ``path``."""
        target = _link_target(workspace_id, cloud_workspace_id, path)
        self._require_login("cloud.link")
        folder = checked_folder(path, missing_ok=cloud_workspace_id is not None)  # a clone's:
        # created once the cloud workspace is found (Linker.clone)
        existing = self.driver.syncs.get(target)
        if existing is not None:  # linked already: the same link again is that link
            if folder is not None and existing.link.path not in (None, folder):
                raise InvalidInput(
                    "path", f"the workspace is already linked at {existing.link.path}"
                )  # (was: answered the old link as if this one were made)
            return self.links.link_json(existing.link, existing)
        await self.links.check_folder_free(folder)
        if workspace_id is not None:
            member = await self._organisation()
            if member is None:
                raise CloudRejected("cloud.link", "no_organization")
            link = await self.links.publish(workspace_id, folder, member.org_id)
        else:
            link = await self.links.clone(target, folder)
        publish = workspace_id is not None  # its history goes out first, before the join
        sync = await self.driver.add(link, publish=publish)
        self._place_folder(link)  # a clone's row (and so its path) comes with its first pull
        await self.live.add_workspace(link.workspace_id, join=not publish)
        if publish:
            self._spawn(self._join_when_pushed(sync), f"cloud-join-{link.workspace_id}")
        self._changed(cloud=True, sync=True)
        return self.links.link_json(link, sync)

    def _place_folder(self, link: Link) -> None:
        """The link's folder becomes its workspace's path once the row is here (``Linker``)."""
        if link.path is None:
            return
        self.links.watch(link)
        ws = link.workspace_id
        self._spawn(self.links.place(link, lambda: ws in self.driver.syncs), f"cloud-place-{ws}")

    def _on_commit(self, events: Sequence[ChangeEvent]) -> None:
        """A watched link's workspace row was written (a clone's first pull): place its folder.
        A linked workspace was renamed (here or on another device): so is its link."""
        for link in self.links.arrived(events):
            self._place_folder(link)
        renamed = self.links.renamed(events, self.driver.syncs)
        for link in renamed:
            self._spawn(self.links.write_name(link), f"cloud-link-name-{link.workspace_id}")
        if renamed:
            self._changed(cloud=True)

    async def _join_when_pushed(self, sync: WorkspaceSync) -> None:
        """Join a published workspace's channel once its history is pushed (or the push
        failed: a cloud that is down must not leave it unjoined). Joined while pushing, every
        pushed row would come back as a postgres_changes echo that changes nothing; nobody
        else can write in a workspace that was not in the cloud a moment ago, and the
        catch-up pull after SUBSCRIBED closes that window (realtime is a hint)."""
        await sync.push_settled()
        if self.driver.syncs.get(sync.workspace_id) is sync:  # not unlinked meanwhile
            await self.live.join_workspace(sync.workspace_id)

    async def unlink(self, workspace_id: str) -> dict[str, Any]:
        """Stop syncing a workspace; its local data stays."""
        await self.driver.remove(workspace_id)
        await self.live.remove_workspace(workspace_id)
        removed = await self.links.unlink(workspace_id)
        self._changed(cloud=True, sync=True)
        return {"workspace_id": workspace_id, "unlinked": True, "link_file_removed": removed}

    # Sync now

    async def sync_now(self, kind: Kind) -> dict[str, Any]:
        """Push (or pull) every linked workspace now and wait: the counts it moved."""
        self._require_login(f"sync.{kind}")
        try:
            result = await asyncio.wait_for(self.driver.sync_now(kind), SYNC_NOW_TIMEOUT_S)
        except TimeoutError:
            result = {**Counts().as_dict(), "error": "timeout"}
        status = await self.sync_status()
        await self.links.touch(list(self.driver.syncs.values()), now=True)
        self._changed(sync=True)
        retries = [w["retry_at"] for w in status["workspaces"] if w.get("retry_at")]
        return {
            **result,
            "state": status["state"],
            "outbox": status["outbox"],
            "rejected_total": status["rejected"],
            "retry_at": min(retries, default=None),  # the next retry of a failed sync
        }
