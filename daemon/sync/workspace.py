"""One linked workspace's sync: its ``SyncSession`` and the task that executes it.

Theory of operation
-------------------
The pure ``SyncSession`` (protocol.py) decides when to push, pull, retry and back off; the
``WorkspaceSync`` task executes what it asks for, one request at a time, feeding every result
back as the session's input:

    PullSince   sync_pull one page of the workspace from its cursor, map it to local rows
                (mapping.py), apply page + cursor in ONE store transaction (apply_pull, with
                ``merge_pulled`` built on merge.merge_row), report PullPage(has_more).
                While catching up (first sync, or the last page said has_more) pages are
                ``bulk_pull_limit`` rows, and the next page is fetched while this one is
                applied: one page ahead at most (flat memory), dropped on any failure or
                when the session asks for another cursor
    PushBatch   take_outbox (<= 500 rows, <= 1 MiB) of the workspace, map, sync_push once,
                settle every row with complete_push (rejected rows are filed, never retried),
                report PushDone
    RefreshAuth refresh the cloud session, report auth_refreshed
    ScheduleRetry / PublishStatus   log / tell the service (sync.status event)

Between commands it sleeps until the session's ``deadline`` (debounce, the 30 s periodic pull
and retry backoff all live in that one timer, so no scheduler is needed) or until an input
wakes it: local changes committed, a login, or a ``request``. Failures become
``retry.Failure``s, so the session's pure ``retry.classify`` decides (Retry-After, full jitter,
re-auth, give up).

``request(kind)`` backs ``sync.push``/``sync.pull``: it waits for a run that STARTED after the
call to finish and answers the counts it moved, or the failure's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from daemon.errors import DaemonError
from daemon.store.sync import pull_scope
from daemon.store.sync_types import Link, OutboxChange
from daemon.sync.adapters import failure_of, failure_reason, merge_pulled
from daemon.sync.cloud.errors import CloudError
from daemon.sync.mapping import cloud_change, local_change
from daemon.sync.protocol import (
    ApplyRemote,
    Command,
    PublishStatus,
    PullPage,
    PullSince,
    PushBatch,
    PushDone,
    RefreshAuth,
    ScheduleRetry,
    SyncSession,
    SyncState,
)
from daemon.sync.retry import Backoff
from daemon.sync.status import WorkspaceStatus

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = [
    "Counts",
    "DriverSettings",
    "Kind",
    "SyncApi",
    "WorkspaceSync",
]

logger = logging.getLogger(__name__)

Kind = Literal["push", "pull"]
#: The loop re-reads the (wall) clock at least this often.
MAX_WAIT_S: Final = 30.0


@dataclass(frozen=True)
class DriverSettings:
    # Timeouts
    push_delay_s: float = 0.25
    pull_interval_s: float = 30.0
    backoff: Backoff = field(default_factory=Backoff)
    # Limits
    push_limit: int = 500
    push_max_bytes: int = 1 << 20
    pull_limit: int = 1000
    #: Page size while catching up (first sync, or a page said has_more): fewer requests
    #: (measured: sync_pull rows/s is flat from 1000 to 5000; memory grows with the page).
    bulk_pull_limit: int = 2000


class SyncApi(Protocol):
    """The two cloud calls sync needs (``CloudApi`` implements them)."""

    async def push(self, changes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    async def pull(
        self, *, cursor: str | None, limit: int, workspace_id: str | None
    ) -> dict[str, Any]: ...


@dataclass
class Counts:
    """What a workspace's sync moved so far (cumulative)."""

    applied: int = 0
    superseded: int = 0
    rejected: int = 0
    pulled: int = 0
    changed: int = 0
    conflicts: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def minus(self, before: Counts) -> dict[str, int]:
        return {f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self)}


@dataclass(frozen=True)
class _Prefetch:
    """A ``sync_pull`` of the page after ``cursor`` already under way."""

    cursor: str | None
    limit: int
    task: asyncio.Task[dict[str, Any]]

    def discard(self) -> None:
        """Cancel it; a failure it already had is consumed (it was never needed)."""
        self.task.cancel()
        self.task.add_done_callback(_consume)


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass
class _Waiter:
    kind: Kind
    mark: int  # requests of this kind started before the call
    before: Counts
    future: asyncio.Future[dict[str, Any]]


class WorkspaceSync:
    """The sync of one linked workspace: its session and the task executing it."""

    def __init__(
        self,
        link: Link,
        *,
        store: Store,
        api: SyncApi,
        settings: DriverSettings,
        refresh_auth: Callable[[], Awaitable[None]],
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.link = link
        self.workspace_id = link.workspace_id
        self._scope = pull_scope(link.workspace_id)
        self.counts = Counts()
        self.last_push_at: float | None = None
        self.session = SyncSession(
            backoff=settings.backoff,
            push_delay_s=settings.push_delay_s,
            pull_interval_s=settings.pull_interval_s,
            push_limit=settings.push_limit,
            pull_limit=settings.pull_limit,
            rand=rand,
        )
        self._store = store
        self._api = api
        self._settings = settings
        self._refresh_auth = refresh_auth
        self._on_change = on_change
        self._clock = clock
        self._started: dict[Kind, int] = {"push": 0, "pull": 0}
        self._chain_first: dict[Kind, int | None] = {"push": None, "pull": None}
        self._progress: dict[str, int] | None = None
        #: The next page, fetched while the current one is applied (at most one page ahead).
        self._ahead: _Prefetch | None = None
        #: A first sync, or a pull whose last page said has_more (kept across a retry).
        self._catching_up = False
        self._waiters: list[_Waiter] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"WorkspaceSync({self.workspace_id!r}, state={self.session.state.value})"

    @property
    def status(self) -> WorkspaceStatus:
        s = self.session.snapshot
        return WorkspaceStatus(
            self.workspace_id,
            s.state.value,
            s.pending,
            s.error,
            s.retry_at,
            s.last_pull_at,
            self.last_push_at,
            None if self._progress is None else dict(self._progress),
        )

    # Lifecycle and inputs

    def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sync-{self.workspace_id}")

    async def close(self) -> None:
        task, self._task = self._task, None
        self._drop_ahead()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._waiters:
            waiter.future.cancel()
        self._waiters.clear()

    def start(self, cursor: str | None) -> None:
        """Sync from ``cursor``: pull at once, then push whatever the outbox holds."""
        self.session.start(self._clock(), cursor=cursor, pending=True)
        self._wake.set()

    def go_offline(self) -> None:
        """Logged out: no requests until ``start``."""
        self.session.connectivity_changed(self._clock(), online=False)
        self._wake.set()

    def local_changes(self) -> None:
        self.session.local_changes_committed(self._clock())
        self._wake.set()

    def catch_up(self) -> None:
        """Realtime (re)subscribed: pull now, as after any reconnect (changes committed while
        the channel was not subscribed are never announced; the pull closes that gap)."""
        self.session.connectivity_changed(self._clock(), online=True)
        self._wake.set()

    def request(self, kind: Kind) -> asyncio.Future[dict[str, Any]]:
        """A future for the counts of the next ``kind`` run that starts from now on.

        During a backoff it answers at once with the failure's reason: a server's Retry-After
        is honoured even when a user asks again and again.
        """
        future = asyncio.get_running_loop().create_future()
        snapshot = self.session.snapshot
        if self.session.state is SyncState.ERROR or not snapshot.started:
            error = snapshot.error if snapshot.started else "offline"
            future.set_result({**Counts().as_dict(), "error": error})
            return future
        if self.session.state is SyncState.AUTH_REQUIRED:  # try the (new) session again
            self.session.start(self._clock(), cursor=snapshot.cursor, pending=True)
        self._waiters.append(_Waiter(kind, self._started[kind], replace(self.counts), future))
        self._trigger(kind)
        return future

    def _trigger(self, kind: Kind) -> None:
        """Pull now (and push right after it when anything is pending): a pull always goes
        first, so a lost manual edit is recorded as a conflict before the push (I9)."""
        now = self._clock()
        if kind == "push":
            self.session.local_changes_committed(now)
        self.session.connectivity_changed(now, online=True)
        self._wake.set()

    # The loop

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while commands := self.session.commands_to_run():
                    for command in commands:
                        await self._execute(command)
            except Exception:  # supervisor boundary: a bug must not end this workspace's sync
                logger.exception("sync.loop_failed ws=%s", self.workspace_id)
            now = self._clock()
            deadline = self.session.deadline
            if deadline is not None and deadline <= now:
                self.session.tick(now)
                continue
            wait = MAX_WAIT_S if deadline is None else min(deadline - now, MAX_WAIT_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self.session.tick(self._clock())

    async def _execute(self, command: Command) -> None:
        if isinstance(command, PullSince):
            await self._pull(command)
        elif isinstance(command, PushBatch):
            await self._push(command)
        elif isinstance(command, RefreshAuth):
            await self._refresh()
        elif isinstance(command, ScheduleRetry):
            logger.info(
                "sync.retry ws=%s attempt=%d in=%.2fs reason=%s",
                self.workspace_id,
                command.attempt,
                max(0.0, command.at - self._clock()),
                command.reason,
            )
        elif isinstance(command, PublishStatus):
            self._on_change()
        elif isinstance(command, ApplyRemote):  # realtime is not wired to the driver yet
            logger.debug("sync.realtime_ignored ws=%s", self.workspace_id)

    async def _pull(self, command: PullSince) -> None:
        self._begin("pull")
        bulk_limit = max(command.limit, self._settings.bulk_pull_limit)
        self._catching_up = self._catching_up or command.cursor is None
        try:
            limit = bulk_limit if self._catching_up else command.limit
            page = await self._fetch(command.cursor, limit)
            cursor = page.get("cursor") or command.cursor
            if page["has_more"] and cursor != command.cursor:
                self._fetch_ahead(cursor, bulk_limit)  # overlaps the network with the apply
            changes = [c for c in map(local_change, page["changes"]) if c is not None]
            outcome = None
            if changes or cursor != command.cursor:
                outcome = await self._store.sync.apply_pull(
                    scope=self._scope, changes=changes, cursor=cursor, merge=merge_pulled
                )
        except Exception as exc:
            self._request_failed("pull", exc)
            self.session.pull_page_received(self._clock(), failure_of(exc))
            return
        has_more = bool(page["has_more"])
        self._catching_up = has_more
        if outcome is not None:
            self.counts.pulled += outcome.applied
            self.counts.changed += outcome.changed
            self.counts.conflicts += outcome.conflicts
        self._note_progress(len(page["changes"]), has_more)
        applied = 0 if outcome is None else outcome.applied
        self.session.pull_page_received(self._clock(), PullPage(cursor, has_more, applied))
        if not has_more:
            self._run_finished("pull")

    async def _fetch(self, cursor: str | None, limit: int) -> dict[str, Any]:
        """The page after ``cursor``: the one fetched ahead if it is that page, else a fresh
        request (a failure of either is the pull's failure)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and (ahead.cursor, ahead.limit) == (cursor, limit):
            return await ahead.task
        if ahead is not None:
            ahead.discard()
        return await self._api.pull(cursor=cursor, limit=limit, workspace_id=self.workspace_id)

    def _fetch_ahead(self, cursor: str | None, limit: int) -> None:
        self._drop_ahead()
        task = asyncio.create_task(
            self._api.pull(cursor=cursor, limit=limit, workspace_id=self.workspace_id),
            name=f"sync-pull-ahead-{self.workspace_id}",
        )
        self._ahead = _Prefetch(cursor, limit, task)

    def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.discard()

    async def _push(self, command: PushBatch) -> None:
        self._begin("push")
        try:
            changes = await self._store.sync.take_outbox(
                workspace_ids=[self.workspace_id],
                limit=command.limit,
                max_bytes=self._settings.push_max_bytes,
            )
            if changes:
                results = await self._push_changes(changes)
                outcome = await self._store.sync.complete_push(changes, results)
        except Exception as exc:
            self._request_failed("push", exc)
            self.session.push_result_received(self._clock(), failure_of(exc))
            return
        if changes:
            self.counts.applied += outcome.applied
            self.counts.superseded += outcome.superseded
            self.counts.rejected += outcome.rejected
            self.last_push_at = self._clock()
            logger.debug("sync.pushed ws=%s rows=%d", self.workspace_id, len(changes))
        # A batch that moved rows is followed by another: the outbox may hold more (a batch
        # can stop at the byte limit); the run ends with an empty take.
        self.session.push_result_received(self._clock(), PushDone(bool(changes), len(changes)))
        if not changes:
            self._run_finished("push")
        self._on_change()

    async def _push_changes(self, changes: Sequence[OutboxChange]) -> list[dict[str, Any]]:
        """One ``sync_push`` for the batch; rows with nothing to send settle as applied."""
        mapped = [
            cloud_change(
                c.table,
                c.row_id,
                c.workspace_id,
                c.fields,
                c.field_hlc,
                hlc=c.hlc,
                origin=c.origin,
                org_id=self.link.org_id,
            )
            for c in changes
        ]
        answers = iter(await self._api.push([m for m in mapped if m is not None]))
        return [
            next(answers)
            if m is not None
            else {"id": c.row_id, "table": c.table, "status": "applied", "reason": "local_only"}
            for c, m in zip(changes, mapped, strict=True)
        ]

    async def _refresh(self) -> None:
        try:
            await self._refresh_auth()
        except CloudError as exc:
            self.session.auth_refreshed(self._clock(), failure_of(exc))
        else:
            self.session.auth_refreshed(self._clock())

    # Bookkeeping of runs (for sync_now) and progress

    def _begin(self, kind: Kind) -> None:
        self._started[kind] += 1
        if self._chain_first[kind] is None:
            self._chain_first[kind] = self._started[kind]

    def _run_finished(self, kind: Kind) -> None:
        first = self._chain_first[kind]
        self._chain_first[kind] = None
        for waiter in [w for w in self._waiters if w.kind == kind]:
            if first is not None and waiter.mark < first:
                self._resolve(waiter, None)
        if any(w.kind == kind for w in self._waiters):
            self._trigger(kind)  # the run that ended began before the call: one more

    def _request_failed(self, kind: Kind, exc: Exception) -> None:
        self._chain_first[kind] = None
        if kind == "pull":
            self._drop_ahead()  # the retry starts again from the stored cursor
        self._progress = None
        reason = failure_reason(exc)
        if isinstance(exc, CloudError | DaemonError):
            logger.warning("sync.%s_failed ws=%s reason=%s", kind, self.workspace_id, reason)
        else:
            logger.error("sync.%s_failed ws=%s", kind, self.workspace_id, exc_info=exc)
        for waiter in [w for w in self._waiters if w.kind == kind]:
            self._resolve(waiter, reason)

    def _resolve(self, waiter: _Waiter, error: str | None) -> None:
        self._waiters.remove(waiter)
        if not waiter.future.done():
            waiter.future.set_result({**self.counts.minus(waiter.before), "error": error})

    def _note_progress(self, rows: int, has_more: bool) -> None:
        if not has_more and self._progress is None:
            return  # a one-page pull: nothing to show
        progress = self._progress or {"rows": 0, "pages": 0}
        progress = {"rows": progress["rows"] + rows, "pages": progress["pages"] + 1}
        self._progress = progress if has_more else None
        self._on_change()
