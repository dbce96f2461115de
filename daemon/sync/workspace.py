"""One linked workspace's sync: its ``SyncSession`` and the task that executes it.

Theory of operation
-------------------
The pure ``SyncSession`` (protocol.py) decides when to push, pull, retry and back off; the
``WorkspaceSync`` task executes what it asks for, one request at a time, feeding every result
back as the session's input:

    PullSince   sync_pull one page of the workspace from its cursor, map it to local rows
                (mapping.py), apply page + cursor in ONE store transaction (apply_pull, with
                ``merge_pulled`` built on merge.merge_row), hand the document updates it
                stored to the loaded documents (absorb), report PullPage(has_more).
                A page that is new plain messages (the bulk of a first sync), maybe with a
                few changes of other tables (a clone's workspace, a new conversation), is
                instead turned from the answer's text into stored rows in one pass
                (adapters.new_rows_as_is: no dict per cloud row) and stored by
                apply_new_rows, no merge per message (the other changes are merged); if
                the store finds one of them stored already (or a parent missing...) it
                writes nothing and the page takes the way above. A run's first page is
                ``pull_limit`` rows; if it says has_more, the pages after it are
                ``bulk_pull_limit`` rows, fetched ahead by a PageFetcher (pull_ahead.py):
                each request goes out as soon as the page before it arrived (its cursor is
                read off the answer's first bytes), while pages are applied (each page is
                decoded and mapped when it is taken, while the next request is in flight);
                once ``sync_pull_marks`` (asked after the first page, for the progress's
                total; a first sync's beside its first page) told where the pages end,
                PULL_IN_FLIGHT of them are asked for at once, each from its mark (a first
                sync's before its first page arrived); at most three pages held (flat
                memory), dropped on any failure or when the session asks for another cursor.
                A page whose answer is over its size cap (http.py ``BOUNDS``: rows other
                apps made big) is asked for again at once with half as many rows, the pages
                after it too (the session's ``page_cap``, protocol.py), so the pull gets
                past them; one row over the cap is a failure (``row_too_large``, its
                workspace named in ``last_error``), retried with backoff
    PushBatch   take_outbox (<= 500 rows, <= 1 MiB) of the workspace, map, sync_push once,
                settle every row with complete_push (rejected rows are filed; those
                refused as clock_skew are queued again, whole, once their ``retry_at`` has
                come: ``_retry_refused``, store/sync_skew.py), report PushDone.
                While the request is in flight the next batch (the entries
                after this one's: ``take_outbox(after=…)``) is taken, mapped (push_batch.py)
                and SENT: up to PUSH_IN_FLIGHT requests are in flight, answers are settled in
                send order, one per PushBatch (a batch is sent beside another only if that
                one holds leaf rows only, push_batch.py; else it waits, taken, for its
                answer; so a batch that begins with rows others may reference ends before
                the first leaf row: those rows go alone, and the leaves after them several
                at a time, not as one batch that holds up the next). A batch the cloud refuses
                as a whole for a value one of its changes carries (retry.BadData, e.g.
                22P05) is sent again in parts, one after the other, until that change is
                alone: it is rejected, the others settle as answered (push_batch.Bisection;
                the requests in flight beside it are dropped). Any other failure drops every
                request in flight (their entries stay: the retry takes the outbox from its
                start, and the cloud applies a change once however often it comes, I2)
    RefreshAuth refresh the cloud session, report auth_refreshed
    ScheduleRetry / PublishStatus   log / tell the service (sync.status event)

Between commands it sleeps until the session's ``deadline`` (debounce, the 30 s periodic pull
and retry backoff all live in that one timer, so no scheduler is needed) or until an input
wakes it: local changes committed, a login, or a ``request``. While the cloud cannot be
reached (``CloudReach``, shared by the driver's workspaces: protocol.py) it waits instead for
the outage's probe time, when one workspace probes (``_tick``), or for the outage's end
(``cloud_reached``); the outage is logged once (WARNING ``sync.cloud_unreachable``, then INFO
``sync.cloud_reachable``), each failed attempt at DEBUG. Failures become
``retry.Failure``s, so the session's pure ``retry.classify`` decides (Retry-After, full jitter,
re-auth, give up).

``request(kind)`` backs ``sync.push``/``sync.pull``: it ends a backoff and starts a run now
(unless a server's Retry-After runs: then it answers that failure's reason at once), waits for
a run whose last step (a push's final take, a pull's last request) BEGAN after the call to
finish, and answers the counts it moved, or the failure's reason (``_run_finished``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar

from daemon.aio import cancel_and_wait, discard
from daemon.errors import DaemonError
from daemon.store.sync import pull_scope
from daemon.store.sync_types import Link
from daemon.sync.adapters import (
    NEW_ROWS_AS_IS,
    failure_of,
    failure_reason,
    merge_pulled,
    new_rows_as_is,
)
from daemon.sync.cloud.errors import (
    AnswerTooLarge,
    CloudError,
    CloudProtocolError,
    CloudUnavailable,
)
from daemon.sync.cloud.records import PullMarks, later_cursor
from daemon.sync.mapping import local_change
from daemon.sync.protocol import (
    ROW_TOO_LARGE,
    UNREACHABLE,
    ApplyRemote,
    CloudReach,
    Command,
    PublishStatus,
    PullPage,
    PullSince,
    PullTooLarge,
    PullTooSlow,
    PushBatch,
    PushDone,
    RefreshAuth,
    ScheduleRetry,
    SyncSession,
    SyncState,
)
from daemon.sync.pull_ahead import PageFetcher
from daemon.sync.push_batch import LEAF_TABLES, Bisection, OutgoingBatch
from daemon.sync.retry import STATEMENT_TIMEOUT, Backoff, BadData
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
_T = TypeVar("_T")
#: The loop re-reads the (wall) clock at least this often.
MAX_WAIT_S: Final = 30.0
#: The least wait between two looks for rows refused as ``clock_skew`` (_retry_refused).
REFUSED_MIN_WAIT_S: Final = 1.0
#: Pages of a catch-up fetched and waiting for their apply, besides those in flight (a
#: request goes out while no more wait: at most AHEAD_PAGES + PULL_IN_FLIGHT pages held).
AHEAD_PAGES: Final = 1
#: ``sync_pull`` requests in flight per workspace once a catch-up's pages are marked: the
#: chain of requests (~65-100 ms per 4000-row page on bench/sync.py's first sync) was slower
#: than decoding and applying a page (~45-60 ms), so the daemon waited on every page; with
#: two in flight the cloud builds the next page while the one before is sent and applied.
PULL_IN_FLIGHT: Final = 2
#: ``sync_push`` requests in flight per workspace: batch N+1 is sent while N is in flight, so
#: the daemon's work per batch (take, map, encode, settle) overlaps the cloud's (PostgreSQL, on
#: another core) instead of alternating with it. With two, only one was left in the cloud
#: while the daemon settled an answer and took the next batch: the cloud's PostgreSQL used
#: ~1 core of 2 and the machine was ~75% busy during bench/sync.py's push (23-29k rows/s);
#: with three, ~84% busy and 28-31k rows/s in the same runs; four added ~5%, within the
#: noise. More would only add rows re-sent after a failure (a failure drops every request in
#: flight), concurrent transactions per device in the cloud, and memory (a batch <= 1 MiB).
PUSH_IN_FLIGHT: Final = 3


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
    #: Size of the pages after a run's first one (first sync, or a page said has_more),
    #: fetched ahead while the pages before them are applied: fewer requests
    #: in the chain (each waits for the one before). Measured on the 100k first sync
    #: (devcloud and PostgreSQL on the same 2 cores, 4 alternated pairs): 2000 rows
    #: 2.31-2.70 s, 4000 rows 1.85-2.36 s (less CPU per row in devcloud, PostgreSQL and the
    #: checkpointer), 8000 rows no better than 4000 (coarser overlap of fetch and apply).
    #: The daemon's memory grows with the page: ~10 MB more at 4000 than at 2000.
    bulk_pull_limit: int = 4000


class SyncApi(Protocol):
    """The cloud calls sync needs (``CloudApi`` implements them)."""

    async def push(self, changes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    async def pull_page(
        self, *, cursor: str | None, limit: int, workspace_id: str | None
    ) -> PullAnswer: ...

    async def pull_marks(
        self, *, cursor: str | None, step: int, workspace_id: str | None
    ) -> PullMarks: ...


class PullAnswer(Protocol):
    """One ``sync_pull`` answer (``cloud.rest.PulledPage``): ``head`` is its next cursor and
    has_more, ``body`` the page decoded, ``decoded_by`` what a decoder of its text makes of it
    (see there); each raises a ``CloudError`` for a bad answer."""

    @property
    def head(self) -> tuple[str | None, bool]: ...

    def decoded_by(
        self, decode: Callable[[bytes], tuple[_T, str | None, bool] | None]
    ) -> _T | None: ...

    @property
    def body(self) -> dict[str, Any]: ...


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
class _Page:
    """One ``sync_pull`` page (asked for after ``cursor``, the ``step``-th request of pulls
    begun), as the cloud answered it."""

    cursor: str | None
    answer: PullAnswer
    step: int

    def local_changes(self) -> list[dict[str, Any]]:
        """The page's changes mapped to local rows (mapping.local_change)."""
        return [c for c in map(local_change, self.answer.body["changes"]) if c is not None]

    def following(self) -> str | None:
        """The cursor of the page after this one, None if this is the last (known from the
        answer's first bytes: the next request goes out before this page is decoded)."""
        cursor, has_more = self.answer.head
        after = cursor or self.cursor
        return after if has_more and after != self.cursor else None


class _OversizedPage(CloudProtocolError):
    """A ``sync_pull`` page of ``limit`` rows whose answer was over ``max_bytes``
    (``AnswerTooLarge``); reason ``row_too_large`` for a page of one row."""

    def __init__(self, limit: int, max_bytes: int) -> None:
        super().__init__("rest.pull", "too_large" if limit > 1 else ROW_TOO_LARGE)
        self.limit = limit
        self.max_bytes = max_bytes


class _SlowPage(CloudUnavailable):
    """A ``sync_pull`` page of ``limit`` rows the cloud gave up on (its statement timeout,
    ``STATEMENT_TIMEOUT``): ``error``, with the size of the page that failed."""

    def __init__(self, limit: int, error: CloudError) -> None:
        super().__init__(
            error.operation,
            error.reason,
            status=error.status,
            failure=error.failure,
            decision=error.decision,
        )
        self.limit = limit


@dataclass(frozen=True)
class _Flight:
    """One batch sent, and its ``sync_push`` request (answered or still in flight)."""

    batch: OutgoingBatch
    request: asyncio.Task[list[dict[str, Any]]]


@dataclass
class _Waiter:
    kind: Kind
    mark: int  # steps of this kind begun before the call
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
        publishing: bool = False,
        pull_phase: float | None = None,
        reach: CloudReach | None = None,
        on_reached: Callable[[str], None] = lambda _: None,
    ) -> None:
        """``pull_phase``: the phase of the periodic pulls (protocol.next_periodic_pull), the
        same for every workspace of a driver (None: now). ``reach``: whether the cloud can be
        reached, shared by the driver's workspaces (None: this one's own); ``on_reached(ws)``:
        an outage ended with an answer to this workspace's request (the driver wakes the
        others: ``cloud_reached``)."""
        self.link = link
        #: why this workspace does not sync while logged in (``hold``), shown as its error
        self.held: str | None = None
        #: a publish's link, not started yet: its first start pushes its history first
        self.publishing = publishing
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
            bulk_pull_limit=settings.bulk_pull_limit,
            rand=rand,
            pull_phase=clock() if pull_phase is None else pull_phase,
        )
        self._store = store
        self._api = api
        self._settings = settings
        self._refresh_auth = refresh_auth
        self._on_change = on_change
        self._clock = clock
        self._reach = reach or CloudReach(settings.backoff, rand)
        self._on_reached = on_reached
        #: Steps begun, per kind: push batches taken, sync_pull requests sent (_begin).
        self._started: dict[Kind, int] = {"push": 0, "pull": 0}
        #: A pull run of several pages so far: rows and pages (its first page's rows as
        #: "first"); and the rows after its first page, once known (counted from that page's
        #: cursor with the marks of the pages after it, while the pages go on, or, for a first
        #: sync, from the start beside that page: _mark).
        self._progress: dict[str, int] | None = None
        self._remaining: int | None = None
        self._marking: asyncio.Task[None] | None = None
        #: The size of the pages after the first of the pull under way (``PullSince.bulk``).
        self._run_bulk = settings.bulk_pull_limit
        #: The size cap of a pull page's answer, once one row was over it (``status``).
        self._row_over: int | None = None
        #: The next pages, fetched while the current one is applied.
        self._ahead: PageFetcher[_Page] | None = None
        #: Push batches sent and not yet settled, oldest first (at most PUSH_IN_FLIGHT).
        self._flights: deque[_Flight] = deque()
        #: The next batch, taken while a batch it may depend on is in flight (not leaves_only):
        #: sent once that one is answered.
        self._prepared: OutgoingBatch | None = None
        #: Bumped when the sync goes offline: a push that began before sends nothing more.
        self._epoch = 0
        self._waiters: list[_Waiter] = []
        #: Set once a push run ended (outbox drained), a request failed, or sync stopped.
        self._push_settled = asyncio.Event()
        #: When (``clock``) to look for rows refused as ``clock_skew`` whose time has come
        #: (store/sync_skew.py); None: none waits. At once on start: a restart finds them.
        self._refused_at: float | None = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"WorkspaceSync({self.workspace_id!r}, state={self.session.state.value})"

    @property
    def status(self) -> WorkspaceStatus:
        s = self.session.snapshot
        counts = self.counts.as_dict()
        if self.held is not None:  # no requests until the driver starts it again
            return WorkspaceStatus(self.workspace_id, "error", s.pending, self.held, counts=counts)
        error = s.error
        if error == ROW_TOO_LARGE:
            error = (
                f"{ROW_TOO_LARGE}: one row of workspace {self.workspace_id} is over the size cap"
                f" of a pull page ({self._row_over} bytes): the pull cannot get past it and is"
                " retried with backoff"
            )
        state = s.state
        if state is SyncState.IDLE and self._reach.down:  # (its own requests wait for a probe)
            state = SyncState.OFFLINE
        return WorkspaceStatus(
            self.workspace_id,
            state.value,
            s.pending,
            error,
            s.retry_at,
            s.last_pull_at,
            self.last_push_at,
            self._progress_view(),
            counts=counts,
        )

    # Lifecycle and inputs

    def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sync-{self.workspace_id}")

    async def close(self) -> None:
        task, self._task = self._task, None
        self._reach.release(self._clock(), self.workspace_id)
        self._drop_ahead()
        self._end_progress()
        await cancel_and_wait(task)
        self._drop_flights()  # after the loop ended: nothing is settled from now on
        for waiter in self._waiters:
            waiter.future.cancel()
        self._waiters.clear()
        self._push_settled.set()

    async def push_settled(self) -> None:
        """Until the first push run drained the outbox, or a request failed (the cloud may be
        down: a retry follows), or the sync went offline or closed: e.g. a published
        workspace joins its realtime channel then, not while its history is pushed."""
        await self._push_settled.wait()

    def start(self, cursor: str | None) -> None:
        """Sync from ``cursor``: pull at once, then push whatever the outbox holds; the first
        start of a publish pushes first (``publishing``: protocol.py)."""
        self.held = None
        first, self.publishing = self.publishing, False
        self.session.start(self._clock(), cursor=cursor, pending=True, push_first=first)
        self._wake.set()

    def hold(self, reason: str) -> None:
        """Logged in, but this workspace must not sync (e.g. the user is not a member of its
        organisation): offline until ``start``, whatever realtime or a caller asks meanwhile;
        its status is an error saying ``reason`` (``"<code>: <what to do>"``)."""
        self.go_offline()
        self.held = reason

    def go_offline(self) -> None:
        """Logged out: no requests until ``start``."""
        self.held = None
        self.session.stopped(self._clock())
        self._reach.release(self._clock(), self.workspace_id)
        self._epoch += 1
        # The oldest request may be awaited by a push under way (it settles as before); the
        # ones sent after it are dropped (their entries stay for the next push).
        self._prepared = None
        while len(self._flights) > 1:
            discard(self._flights.pop().request)
        self._push_settled.set()
        self._wake.set()

    def local_changes(self) -> None:
        state = self.session.state
        self.session.local_changes_committed(self._clock())
        self._wake.set()
        if state in (SyncState.OFFLINE, SyncState.ERROR, SyncState.AUTH_REQUIRED):
            # no push is near to publish the status, so the grown outbox is news now (a
            # UI would otherwise show the old count until the next retry)
            self._on_change()

    def catch_up(self) -> None:
        """Realtime (re)subscribed: pull now, as after any reconnect (changes committed while
        the channel was not subscribed are never announced; the pull closes that gap)."""
        if self.held is not None:
            return
        self.session.connectivity_changed(self._clock(), online=True)
        self._wake.set()

    def cloud_reached(self) -> None:
        """The cloud answered another workspace's request after an outage: a retry this one
        waits for (its request could not reach the cloud) goes now, as on a reconnect; any
        request that fell due meanwhile starts too (the loop was waiting for the outage)."""
        s = self.session.snapshot
        if self.held is None and s.started and s.retry_at is not None and s.error in UNREACHABLE:
            self.session.connectivity_changed(self._clock(), online=True)
        self._wake.set()

    def request(self, kind: Kind) -> asyncio.Future[dict[str, Any]]:
        """A future for the counts of the next ``kind`` run that starts from now on.

        A backoff ends: the run starts now (``SyncSession.manual_request``), except while a
        server's Retry-After runs: then it answers at once with the failure's reason (honoured
        even when a user asks again and again), as it does when the sync cannot start.
        """
        future = asyncio.get_running_loop().create_future()
        if self.held is not None:
            future.set_result({**Counts().as_dict(), "error": self.held.partition(":")[0]})
            return future
        if self.session.state is SyncState.AUTH_REQUIRED:  # try the (new) session again
            cursor = self.session.snapshot.cursor
            self.session.start(self._clock(), cursor=cursor, pending=True)
        error = self._trigger(kind)
        if error is not None:
            future.set_result({**Counts().as_dict(), "error": error})
            return future
        self._waiters.append(_Waiter(kind, self._started[kind], replace(self.counts), future))
        return future

    def _trigger(self, kind: Kind) -> str | None:
        """Pull now (and push right after it when anything is pending): a pull always goes
        first, so a lost manual edit is recorded as a conflict before the push (I9). None, or
        why no run can start (``SyncSession.manual_request``)."""
        error = self.session.manual_request(self._clock(), kind)
        self._wake.set()
        return error

    # The loop

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while commands := self.session.commands_to_run():
                    for command in commands:
                        await self._execute(command)
                await self._retry_refused()
            except Exception:  # supervisor boundary: a bug must not end this workspace's sync
                logger.exception("sync.loop_failed ws=%s", self.workspace_id)
            now = self._clock()
            deadline = self._deadline()
            if self._refused_at is not None and (deadline is None or self._refused_at < deadline):
                deadline = self._refused_at
            if deadline is not None and deadline <= now:
                self._tick(now)
                continue
            wait = MAX_WAIT_S if deadline is None else min(deadline - now, MAX_WAIT_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._tick(self._clock())

    def _waits_for_outage(self) -> bool:
        """The cloud is out of reach and this workspace's own deadlines wait: it is not the
        one probing (``CloudReach``)."""
        return self._reach.down and self._reach.prober != self.workspace_id

    def _deadline(self) -> float | None:
        """The session's deadline; during an outage, the probe's time instead (if this one
        may probe: it can start a request and no probe is under way)."""
        if not self._waits_for_outage():
            return self.session.deadline
        return self._reach.next_probe() if self.session.snapshot.can_request else None

    def _tick(self, now: float) -> None:
        """Start what is due; during an outage, only the probe, if it is this one's turn
        (it pulls now, as on a reconnect: its own backoff ends)."""
        if not self._waits_for_outage():
            self.session.tick(now)
        elif self.session.snapshot.can_request and self._reach.claim(now, self.workspace_id):
            logger.debug("sync.cloud_probe ws=%s", self.workspace_id)
            self.session.connectivity_changed(now, online=True)

    def _met(self, exc: BaseException | None) -> None:
        """Tell ``CloudReach`` what a request met: an answer (``exc`` None, or an HTTP
        status), no way to the cloud, or neither (a timeout, a local error)."""
        now = self._clock()
        failure = exc.failure if isinstance(exc, CloudError) else None
        if exc is None or (failure is not None and failure.status is not None):
            lasted = self._reach.reached(now)
            if lasted is not None:
                logger.info("sync.cloud_reachable after=%.1fs", lasted)
                self._on_reached(self.workspace_id)
        elif failure is not None and failure.transport in UNREACHABLE:
            if self._reach.unreachable(now, self.workspace_id, failure.transport):
                logger.warning(
                    "sync.cloud_unreachable reason=%s: sync waits, one request at a time"
                    " tries the cloud again (backoff)",
                    failure.transport,
                )
        else:
            self._reach.release(now, self.workspace_id)

    async def _retry_refused(self) -> None:
        """Queue again the rows refused as ``clock_skew`` whose time has come, if it may have
        (the store's push listener then wakes the push); note when the next one is due."""
        now = self._clock()
        if self._refused_at is None or self._refused_at > now:
            return
        self._refused_at = now + REFUSED_MIN_WAIT_S  # (should the store fail: not at once)
        found = await self._store.sync.requeue_refused(self.workspace_id, round(now * 1000))
        if found.rows:
            logger.info("sync.refused_requeued ws=%s rows=%d", self.workspace_id, found.rows)
        if found.next_at_ms is None:
            self._refused_at = None
        else:  # (never sooner than that: a due row the store did not take must not spin)
            self._refused_at = max(found.next_at_ms / 1000, now + REFUSED_MIN_WAIT_S)

    async def _execute(self, command: Command) -> None:
        if isinstance(command, PullSince):
            await self._pull(command)
        elif isinstance(command, PushBatch):
            await self._push(command)
        elif isinstance(command, RefreshAuth):
            await self._refresh()
        elif isinstance(command, ScheduleRetry):
            logger.log(  # (the outage itself is said once: _met)
                logging.DEBUG if command.reason in UNREACHABLE else logging.INFO,
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
        bulk_limit = command.bulk or self._bulk_limit(command.limit)
        self._run_bulk = bulk_limit
        if command.cursor is None:
            # A first sync (nothing pulled yet): its marks are asked beside its first page, so
            # the pages after that page are asked for as soon as they come (_mark).
            self._ask_marks(None, command.limit, from_start=bulk_limit)
        try:
            fetched = await self._fetch(command.cursor, command.limit, bulk_limit)
            answer = fetched.answer
            after_cursor, has_more = answer.head  # (checked against the decoded page below)
            # (a page from a mark may end before the page before it did: never move back)
            cursor = later_cursor(command.cursor, after_cursor) if after_cursor else command.cursor
            if has_more and cursor != command.cursor:
                self._fetch_ahead(cursor, bulk_limit)  # overlaps the network with the apply
            # Decoded and mapped here, not by the fetcher: the next page's request is in flight
            # meanwhile (neither is part of the strictly sequential chain of requests). A page
            # of new rows (a first sync's bulk, maybe with their new parents) goes from the
            # answer's text to stored rows in one pass (the parents through the merge); any
            # other page is decoded (checked) and mapped change by change.
            new = answer.decoded_by(partial(new_rows_as_is, here=self._store.device_id))
            size = len(answer.body["changes"]) if new is None else new.size
            outcome = None
            if new is not None:
                outcome = await self._store.sync.apply_new_rows(
                    scope=self._scope,
                    new=new,
                    cursor=cursor,
                    merge=merge_pulled,
                    as_is=NEW_ROWS_AS_IS,
                )
            changes = fetched.local_changes() if outcome is None else []
            if changes or (outcome is None and cursor != command.cursor):
                outcome = await self._store.sync.apply_pull(
                    scope=self._scope,
                    changes=changes,
                    cursor=cursor,
                    merge=merge_pulled,
                    as_is=NEW_ROWS_AS_IS,
                )
        except Exception as exc:
            self._pull_failed(exc)
            return
        if outcome is not None:
            self.counts.pulled += outcome.applied
            self.counts.changed += outcome.changed
            self.counts.conflicts += outcome.conflicts
        self._note_progress(size, has_more)
        applied = 0 if outcome is None else outcome.applied
        self._met(None)
        self.session.pull_page_received(self._clock(), PullPage(cursor, has_more, applied))
        if not has_more:
            # (pages are asked for ahead, some at once: the run's last step is this page's
            # request, whatever was asked after it)
            self._run_finished("pull", fetched.step)

    def _pull_failed(self, exc: Exception) -> None:
        """A pull failed. A page over the answer's size cap is asked for again at once with
        fewer rows (the session halves them: ``PullTooLarge``), the run going on; a single
        row over it, as any other failure, ends the run (retried with backoff): a page the
        cloud gave up on is retried for fewer rows (``PullTooSlow``)."""
        if isinstance(exc, _OversizedPage):
            self._met(None)  # (the cloud answered)
            if exc.limit > 1:
                logger.info(
                    "sync.pull_page_too_large ws=%s rows=%d max_bytes=%d: asking for fewer",
                    self.workspace_id, exc.limit, exc.max_bytes,
                )  # fmt: skip
                self._drop_ahead()  # (its pages are of the size that was too large)
                if self._progress is None:  # no page yet: the marks are asked again, of
                    self._end_progress()  # the pages of the new size
            else:
                self._row_over = exc.max_bytes
                self._request_failed("pull", exc)
            self.session.pull_page_received(self._clock(), PullTooLarge(exc.limit))
            return
        self._request_failed("pull", exc)
        outcome = failure_of(exc)
        if isinstance(exc, _SlowPage):
            logger.info(
                "sync.pull_page_too_slow ws=%s rows=%d: asking for fewer", self.workspace_id,
                exc.limit,
            )  # fmt: skip
            self.session.pull_page_received(self._clock(), PullTooSlow(exc.limit, outcome))
            return
        self.session.pull_page_received(self._clock(), outcome)

    def _bulk_limit(self, limit: int) -> int:
        """The size of the pages after a run's first page of ``limit`` rows."""
        return max(limit, self._settings.bulk_pull_limit)

    async def _fetch(self, cursor: str | None, limit: int, bulk_limit: int) -> _Page:
        """The page after ``cursor``: the fetcher's next page (``bulk_limit`` rows) if it is
        that page, else a fresh request for ``limit`` rows (a failure of either is the pull's
        failure). A run's first page is thus the small one: a clone's first rows land (and
        its progress shows) sooner, while the fetcher asks for the bigger pages after it
        (measured on bench/sync.py's 21k-row clone: its first page answered after ~20 ms
        instead of ~80 ms; the whole pull no faster or slower within the host's noise)."""
        if self._ahead is not None and self._ahead.serves(cursor, bulk_limit):
            return await self._ahead.next()
        self._drop_ahead()
        return await self._page(cursor, limit)

    async def _page(self, cursor: str | None, limit: int) -> _Page:
        step = self._begin("pull")  # (a page fetched ahead too: see _run_finished)
        try:
            answer = await self._api.pull_page(
                cursor=cursor, limit=limit, workspace_id=self.workspace_id
            )
        except AnswerTooLarge as exc:
            raise _OversizedPage(limit, exc.max_bytes) from exc
        except CloudError as exc:
            if exc.failure is not None and exc.failure.error_code == STATEMENT_TIMEOUT:
                raise _SlowPage(limit, exc) from exc
            raise
        return _Page(cursor, answer, step)

    def _fetch_ahead(self, cursor: str | None, limit: int) -> None:
        """Fetch the pages from ``cursor`` on while this one is applied, each
        request sent as soon as the page before it arrived (pull_ahead.py)."""
        if self._ahead is not None and self._ahead.serves(cursor, limit):
            return  # already fetching them
        self._start_fetcher(cursor, limit)
        self._ask_marks(cursor, limit)  # as soon as the run has pages to fetch ahead

    def _start_fetcher(self, cursor: str | None, limit: int) -> None:
        self._drop_ahead()
        self._ahead = PageFetcher(
            self._page,
            _Page.following,
            cursor,
            limit,
            depth=AHEAD_PAGES,
            parallel=PULL_IN_FLIGHT,
            name=f"sync-pull-ahead-{self.workspace_id}",
        )

    def _drop_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.close()

    async def _push(self, command: PushBatch) -> None:
        self._begin("push")
        try:
            batch, results = await self._send(command.limit)
            if batch.changes:
                outcome = await self._store.sync.complete_push(batch.changes, results)
        except Exception as exc:
            self._drop_flights()  # the retry takes the outbox again from its start
            self._request_failed("push", exc)
            self.session.push_result_received(self._clock(), failure_of(exc))
            return
        moved = len(batch.changes)
        if moved:
            self.counts.applied += outcome.applied
            self.counts.superseded += outcome.superseded
            self.counts.rejected += outcome.rejected
            if outcome.rejected:  # maybe for clock_skew: learn when to send it again
                self._refused_at = self._clock()
            self.last_push_at = self._clock()
            logger.debug("sync.pushed ws=%s rows=%d", self.workspace_id, moved)
        # A batch that moved rows is followed by another: the outbox may hold more (a batch
        # can stop at the byte limit); the run ends with an empty take.
        self._met(None)
        self.session.push_result_received(self._clock(), PushDone(bool(moved), moved))
        if not moved:
            self._run_finished("push", self._started["push"])
        self._on_change()

    async def _take(
        self, limit: int, *, after: int, within: tuple[int, str] | None = None
    ) -> OutgoingBatch:
        changes = await self._store.sync.take_outbox(
            workspace_ids=[self.workspace_id],
            limit=limit,
            max_bytes=self._settings.push_max_bytes,
            after=after,
            leaves=LEAF_TABLES,
            within=within,
        )
        return OutgoingBatch.of(changes, self.link.org_id)

    async def _send(self, limit: int) -> tuple[OutgoingBatch, list[dict[str, Any]]]:
        """The oldest batch sent (taken from the outbox's start and sent now if none is in
        flight) and its results once answered; meanwhile the batches after it (the entries
        after the last one sent: ``take_outbox(after=…)``) are taken and sent, up to
        PUSH_IN_FLIGHT in flight; one taken while a batch that is not ``leaves_only`` is in
        flight waits (``_prepared``) until that one was answered. Only an answer settles
        entries (complete_push, in send order), so a crash or a failure re-sends them: the
        cloud applies a change once however often it comes (I2). An empty batch (outbox
        drained) has no results."""
        epoch = self._epoch
        if not self._flights:
            batch = self._prepared or await self._take(limit, after=0)
            self._prepared = None
            if not batch.changes:
                return batch, []
            self._fly(batch)
        while (
            len(self._flights) < PUSH_IN_FLIGHT and self._prepared is None and epoch == self._epoch
        ):
            after, within = self._flights[-1].batch.resume
            ahead = await self._take(limit, after=after, within=within)
            if not ahead.changes or epoch != self._epoch or not self._flights:
                break
            if not all(f.batch.leaves_only for f in self._flights):
                self._prepared = ahead  # it may reference a row of one in flight: wait
                break
            self._fly(ahead)
        flight = self._flights[0]
        try:
            answers = await flight.request
        except CloudError as exc:
            if not isinstance(exc.decision, BadData):
                raise
            # refused as a whole for a value one change carries: it alone must not pass,
            # and the rest must (the batches sent beside it are sent again after it)
            self._drop_flights()
            return flight.batch, await self._bisect(flight.batch, exc, epoch)
        self._flights.popleft()
        return flight.batch, flight.batch.results(answers)

    async def _bisect(
        self, batch: OutgoingBatch, refusal: CloudError, epoch: int
    ) -> list[dict[str, Any]]:
        """The results of ``batch``, which the cloud refused as a whole for a value one of
        its changes carries (``refusal``): sent again in parts, one after the other, until
        that change is alone and rejected (push_batch.Bisection). Any other failure of a part
        is the push's (nothing is settled: the retry sends the batch again, I2)."""
        bisection = Bisection(batch)
        self._refused(bisection, batch, refusal)
        while (part := bisection.next_part()) is not None:
            if epoch != self._epoch:  # went offline: send nothing more
                raise CloudUnavailable("rest.push", "offline")
            try:
                answers = await self._api.push(part.payload)
            except CloudError as exc:
                if not isinstance(exc.decision, BadData):
                    raise
                self._refused(bisection, part, exc)
            else:
                bisection.answered(answers)
        return bisection.results()

    def _refused(self, bisection: Bisection, part: OutgoingBatch, refusal: CloudError) -> None:
        logger.info(
            "sync.push_refused ws=%s reason=%s rows=%d",
            self.workspace_id,
            refusal.reason,
            len(part.payload),
        )
        detail = None if refusal.failure is None else refusal.failure.error_message
        bisection.refused(refusal.reason, detail)

    def _fly(self, batch: OutgoingBatch) -> None:
        request = asyncio.create_task(
            self._api.push(batch.payload), name=f"sync-push-{self.workspace_id}"
        )
        self._flights.append(_Flight(batch, request))

    def _drop_flights(self) -> None:
        self._prepared = None
        while self._flights:
            discard(self._flights.popleft().request)

    async def _refresh(self) -> None:
        try:
            await self._refresh_auth()
        except CloudError as exc:
            self._met(exc)
            self.session.auth_refreshed(self._clock(), failure_of(exc))
        else:
            self._met(None)
            self.session.auth_refreshed(self._clock())

    # Bookkeeping of runs (for sync_now) and progress

    def _begin(self, kind: Kind) -> int:
        """A step of a run begins: a push batch is taken, a sync_pull request is sent (counted
        before it goes out, so a call made meanwhile is never counted before it); its number."""
        self._started[kind] += 1
        return self._started[kind]

    def _run_finished(self, kind: Kind, last: int) -> None:
        """A run ended, its last step the ``last``-th begun: it serves the calls made before
        that step began. That step saw everything committed before them: a push's last take
        found the outbox drained (every entry written before the call settled); a pull's last
        page, has_more false, holds every row committed before its request (sync_pull's
        horizon), as a new run's would. So a call during a catch-up or a long push needs no
        run of its own after it."""
        if kind == "push":
            self._push_settled.set()
        for waiter in [w for w in self._waiters if w.kind == kind]:
            if waiter.mark < last:
                self._resolve(waiter, None)
        if any(w.kind == kind for w in self._waiters):
            error = self._trigger(kind)  # called during the run's last step: one more run
            if error is not None:  # which cannot start: say why
                for waiter in [w for w in self._waiters if w.kind == kind]:
                    self._resolve(waiter, error)

    def _request_failed(self, kind: Kind, exc: Exception) -> None:
        self._push_settled.set()
        if kind == "pull":
            self._drop_ahead()  # the retry starts again from the stored cursor
            self._end_progress()
        reason = failure_reason(exc)
        self._met(exc)
        if isinstance(exc, CloudError | DaemonError):
            logger.log(  # (a cloud out of reach is said once per outage: _met)
                logging.DEBUG if reason in UNREACHABLE else logging.WARNING,
                "sync.%s_failed ws=%s reason=%s", kind, self.workspace_id, reason,
            )  # fmt: skip
        else:
            logger.error("sync.%s_failed ws=%s", kind, self.workspace_id, exc_info=exc)
        # A run pulls first (I9): a failed pull is also the failure of the push asked for
        # (it cannot start before the retry), so a push's waiter is answered too.
        for waiter in [w for w in self._waiters if w.kind == kind or kind == "pull"]:
            self._resolve(waiter, reason)

    def _resolve(self, waiter: _Waiter, error: str | None) -> None:
        self._waiters.remove(waiter)
        if not waiter.future.done():
            waiter.future.set_result({**self.counts.minus(waiter.before), "error": error})

    def _note_progress(self, rows: int, has_more: bool) -> None:
        """A page of ``rows`` applied. The first page of a run that has more starts its
        progress (what is left after it is asked for with the pages' marks: ``_mark``); the
        last page ends it (a one-page run shows none) and drops its marks if still asked."""
        if not has_more:
            shown = self._progress is not None
            self._end_progress()
            if shown:
                self._on_change()
            return
        if self._progress is None:
            self._progress = {"rows": 0, "pages": 0, "first": rows}
        self._progress["rows"] += rows
        self._progress["pages"] += 1
        self._on_change()

    def _ask_marks(self, cursor: str | None, step: int, *, from_start: int = 0) -> None:
        """Ask ``sync_pull_marks`` (``_mark``), once a run."""
        if self._marking is None:
            self._marking = asyncio.create_task(
                self._mark(cursor, step, from_start=from_start),
                name=f"sync-pull-marks-{self.workspace_id}",
            )

    async def _mark(self, cursor: str | None, step: int, *, from_start: int = 0) -> None:
        """The rows after a run's first page (which ended at ``cursor``), for its total; and
        where the pages of ``step`` rows after it end, for the fetcher to ask for them at
        once (``sync_pull_marks``, answered while the pages go on). Without an answer (an
        older cloud schema has no such function, an answer that is no count, a failure) the
        progress has no total and the pages come one after another: the pull itself goes on
        as ever. (The task is dropped at the run's end, which would consume an error unseen:
        each is logged here.)

        ``from_start``: asked beside a first sync's first page, of ``step`` rows from
        ``cursor`` (None), the pages after it being of ``from_start`` rows. The marks are then
        read from the row that page ends at: the fetcher starts there (before that page
        arrived, if it has not; not if the pages have shrunk since: ``_pull_failed``) with the
        pages from the marks after it. If the page ends elsewhere (rows changed between the
        two answers) the pull goes on from where it did end, one page after another
        (``_fetch_ahead``)."""
        try:
            marks = await self._api.pull_marks(
                cursor=cursor, step=step, workspace_id=self.workspace_id
            )
        except (CloudError, DaemonError) as exc:
            reason = failure_reason(exc)
            logger.debug("sync.marks_failed ws=%s reason=%s", self.workspace_id, reason)
            return
        except Exception:
            logger.exception("sync.marks_failed ws=%s", self.workspace_id)
            return
        if from_start:
            bulk = from_start
            seen = marks.seen_from(step, step, bulk)
            if seen is None:  # (no row after the first page, or pages that do not line up)
                self._remaining = max(0, marks.count - step)
                self._on_change()
                return
            (cursor, marks), step = seen, bulk
            if self._ahead is None and marks.count and bulk == self._run_bulk:
                self._start_fetcher(cursor, step)
        self._remaining = marks.count
        if self._ahead is not None:
            self._ahead.add_marks(cursor, step, marks.page_starts(step))
        self._on_change()

    def _end_progress(self) -> None:
        """The run ended (or failed): no progress, and its marks, if still asked, are dropped."""
        marking, self._marking = self._marking, None
        if marking is not None:
            discard(marking)
        self._progress, self._remaining = None, None

    def _progress_view(self) -> dict[str, int | None] | None:
        """``{rows, pages, total}`` of the run under way (``total`` None until counted; never
        below ``rows``: a row updated during the run is pulled again)."""
        if self._progress is None:
            return None
        rows = self._progress["rows"]
        remaining = self._remaining
        total = None if remaining is None else max(self._progress["first"] + remaining, rows)
        return {"rows": rows, "pages": self._progress["pages"], "total": total}
