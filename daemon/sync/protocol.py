"""The sync session state machine (sans-I/O: no asyncio, no clock; ``now`` comes in).

Theory of operation
-------------------
One ``SyncSession`` per linked workspace decides WHEN to push and pull; the driver does the I/O.
The driver feeds inputs and then runs what ``commands_to_run()`` returns, in order:

    inputs  start, local_changes_committed, pull_page_received, push_result_received,
            remote_change_received, connectivity_changed, stopped, auth_refreshed, manual_request,
            tick(now)
    output  PullSince, PushBatch, ApplyRemote, RefreshAuth, ScheduleRetry, PublishStatus

and calls ``tick(now)`` when ``deadline`` passes (the one timer: debounce, periodic pull and
retry backoff all live in it). Executing ``PullSince`` means: fetch one page after the cursor,
apply it and its new cursor in one SQLite transaction, then report ``PullPage`` (or
``PullTooLarge``: its answer was over the size cap, nothing applied). Executing
``PushBatch`` means: push up to ``limit`` outbox entries, settle them (applied / superseded /
rejected) and report ``PushDone(more)``. Failures are reported as ``retry.Failure``.

Rules:
- One request at a time. A due pull goes before a due push: the catch-up pull after a
  (re)connect must merge remote changes while our unpushed edits are still pending, so a lost
  ``manual`` edit is recorded as a conflict (I9) before the push drains it. The exception is
  a publish's first run (``start(push_first=True)``): its cloud workspace was just made from
  this device, so its history is pushed first and the pull follows once the push run ends (a
  manual request meanwhile adds no pull before it). Should the cloud already hold newer values
  of its rows (published before, unlinked, published again), the pushes they beat come back
  ``superseded`` and are kept as lost entries, which the pull's merge counts as unpushed edits
  (store/sync_outbox.py ``_keep_lost``): a lost ``manual`` edit still becomes a conflict.
- Push a local write at once when no push started in the last ``push_delay_s`` (250 ms), else
  when that much time has passed since the last one started: a lone edit reaches the cloud (and
  other devices) without waiting, and edits between pushes ride in one batch (leading-edge
  throttle, not a debounce: no write waits more than ``push_delay_s``). At once (right after
  the catch-up pull) on start and reconnect. A batch that moved rows is followed by the next
  at once, until a take finds the outbox empty: a run also takes the writes made while it
  lasts, so a steady stream of edits is pushed back to back (the driver keeps up to
  PUSH_IN_FLIGHT requests in flight), not four times a second.
- Pull at once on start and on every reconnect (the driver reports every realtime
  (re)subscribe as ``connectivity_changed(online=True)``: realtime is at-most-once, the pull
  closes the gap), page after page while ``has_more``, then every ``pull_interval_s`` (30 s)
  as a fallback, on a phase every workspace shares (``next_periodic_pull``: the first
  ``pull_phase + k * pull_interval_s`` after the pull; the driver gives all its sessions one
  ``pull_phase``): the periodic pulls of all linked workspaces fall due at the same instant, so
  an idle daemon wakes once per interval for all of them, not once per workspace at its own
  phase (10 workspaces made ~6 wakeups/s). A pull that ended off the phase (the first, a
  catch-up, a retry) is followed sooner, at the next phase: never later than the interval.
- A page whose answer is over its size cap (``PullTooLarge``: other apps may write big rows)
  is asked for again at once with half as many rows (the pages after it too: ``page_cap``),
  down to one row; after GROW_AFTER_PAGES pages in a row succeed the cap doubles, back to
  the usual sizes. A single row over the cap is a failure (``row_too_large``), retried with
  backoff like any other: the pull cannot get past it. A page the cloud gave up on
  (``PullTooSlow``: PostgreSQL's statement timeout, 8 s on Supabase, hit by a big workspace on
  a busy project) is a failure retried with backoff, but for half as many rows (the same
  ``page_cap``): asked again as it was, it would time out for ever. A push batch the cloud
  gave up on the same way is retried with half as many rows (``push_cap``; the batches after
  it too), growing back as batches succeed, as a page does.
- Realtime changes are applied as they come (``ApplyRemote``); they never move the cursor.
- Failures go through ``retry.classify``: ``Retry`` waits ``Backoff.delay`` (full jitter,
  honouring Retry-After) and holds every request until then (ERROR; OFFLINE while the cloud
  cannot be reached at all: ``connect``, ``reset``), and the retry begins with a catch-up pull, as a
  reconnect does: remote changes made while the cloud was out of reach are merged while our
  unpushed edits are still pending (a push failing with the network used to go first once the
  network was back, so a lost ``manual`` edit was superseded without a conflict). The delay
  grows with every failure until each kind of request that failed has succeeded since: the
  catch-up pull that succeeds before a push that keeps failing does not shorten the push's
  backoff. ``ReAuth``
  refreshes the session and repeats the request (refused again right after the refresh, it is
  retried with backoff as ``token_rejected``: the session stands); ``Fatal("auth_required")``
  (GoTrue refused the refresh token) stops everything
  until ``start`` is called again after a login (AUTH_REQUIRED); any other ``Fatal`` retries
  slowly, every ``backoff.cap_s``, so a fixed server recovers without a restart. A request
  that fails while offline is simply repeated on reconnect.
- While the cloud cannot be reached at all, the workspaces share one backoff (``CloudReach``,
  one per driver): the first request that fails so (``UNREACHABLE``) begins an outage, said
  once (WARNING); from then on no workspace starts a request on its own deadline (a retry, a
  periodic pull): one at a time probes the cloud, at the outage's backoff (``claim``: it pulls
  now, as on a reconnect), the others wait for it. A probe that fails again waits longer; the
  first answer from the cloud (any HTTP status, whichever request got it) ends the outage, and
  the workspaces whose requests failed in it retry at once (a reconnect). A user's manual sync,
  a realtime (re)join and local writes still start a request as ever: each is a chance that the
  cloud is back. 10 linked workspaces made ~40 failed connections and 85 log lines a minute.
- A manual sync (``manual_request``: ``sync.push``/``sync.pull``) ends a backoff and tries now,
  a pull first, as PowerSync's and Supabase's clients do: the backoff only spaces the daemon's
  own retries, and the user asking is the sign the cloud may be back (else ``syncd push`` could
  fail for up to 30 s after it was, never asking it). A server's ``Retry-After`` is the
  exception: until it passes, a manual request is answered with the failure's reason, and a
  reconnect (a realtime re-subscribe included) ends the backoff but not that hold: its
  catch-up pull waits for it.
- Results that arrive for a request the session no longer waits for (e.g. after ``start``) are
  stale: a pull page still moves the cursor (the store applied it), nothing else changes.

States (derived from the snapshot, first match wins):

    AUTH_REQUIRED  the session is gone; waiting for start() after a login
    OFFLINE        not started, or no connectivity (the last request could not reach the cloud)
    ERROR          a failure is waiting out its backoff (no request in flight)
    CONNECTING     no request has succeeded since the (re)connect, or the session is refreshing
    PULLING        a pull is in flight
    PUSHING        a push is in flight
    IDLE           nothing in flight; waiting for a deadline or an input
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final, Literal

from daemon.sync.retry import (
    STATEMENT_TIMEOUT,
    TOKEN_REJECTED,
    Backoff,
    Failure,
    Fatal,
    ReAuth,
    Retry,
    classify,
)

__all__ = [
    "GROW_AFTER_PAGES",
    "ROW_TOO_LARGE",
    "ApplyRemote",
    "Command",
    "PublishStatus",
    "PullPage",
    "PullSince",
    "PullTooLarge",
    "PullTooSlow",
    "PushBatch",
    "PushDone",
    "RefreshAuth",
    "ScheduleRetry",
    "Snapshot",
    "SyncSession",
    "CloudReach",
    "SyncState",
    "next_periodic_pull",
]

Op = Literal["push", "pull", "auth"]
#: The failure reasons of a request that could not reach the cloud: no connection (``connect``),
#: or one the other end broke before any answer (``reset``: a port that accepts connections
#: then resets them, a proxy whose upstream is down); README: offline while it is unreachable.
UNREACHABLE: Final = frozenset({"connect", "reset"})
Request = Literal["push", "pull"]
#: The failure of a pull whose page of one row is over the answer's size cap.
ROW_TOO_LARGE: Final = "row_too_large"
#: Pages in a row that succeed at a ``page_cap`` before it doubles.
GROW_AFTER_PAGES: Final = 4


def next_periodic_pull(now: float, interval_s: float, phase: float) -> float:
    """When the periodic pull after one that ended at ``now`` falls due: the first
    ``phase + k * interval_s`` after ``now`` (so at most ``interval_s`` later). Sessions that
    share ``phase`` fall due together, whenever their last pulls ended."""
    if not (interval_s > 0 and math.isfinite(interval_s)):
        raise ValueError(f"the pull interval must be a positive number of seconds: {interval_s!r}")
    due = phase + (math.floor((now - phase) / interval_s) + 1) * interval_s
    while due <= now:  # (float rounding at a phase boundary)
        due += interval_s
    return due


@dataclass(slots=True)
class _Outage:
    since: float
    reason: str
    attempt: int  # probes failed so far
    probe_at: float  # when the next probe may go
    prober: str | None = None  # whose probe is under way


class CloudReach:
    """Whether the cloud can be reached, shared by every workspace of a driver: one backoff
    and one probe at a time while it cannot (see the module docstring). Pure: ``now`` comes
    in; the workspace (``who``) reports what its requests met and asks before a request it
    would start on its own."""

    def __init__(
        self, backoff: Backoff | None = None, rand: Callable[[], float] = random.random
    ) -> None:
        self.backoff = backoff or Backoff()
        self._rand = rand
        self._outage: _Outage | None = None

    @property
    def down(self) -> bool:
        """An outage is under way: requests wait for a probe."""
        return self._outage is not None

    @property
    def prober(self) -> str | None:
        """Whose probe is under way, if any."""
        return None if self._outage is None else self._outage.prober

    def next_probe(self) -> float | None:
        """When a waiting workspace may probe; None if no outage, or a probe is under way."""
        o = self._outage
        return None if o is None or o.prober is not None else o.probe_at

    def unreachable(self, now: float, who: str, reason: str) -> bool:
        """A request of ``who`` could not reach the cloud (``reason``: one of UNREACHABLE).
        True when this begins an outage (say so, once); a failed probe makes the next wait
        longer; any other request failing meanwhile (sent before the outage was known, or
        by a user) changes nothing."""
        if reason not in UNREACHABLE:
            raise ValueError(f"not a reason of a cloud out of reach: {reason!r}")
        o = self._outage
        if o is None:
            self._outage = _Outage(now, reason, 0, now + self._delay(0))
            return True
        if o.prober == who:
            o.attempt += 1
            o.prober, o.probe_at = None, now + self._delay(o.attempt)
        return False

    def reached(self, now: float) -> float | None:
        """A request got an answer from the cloud: the outage, if any, ends; how long it
        lasted (None: there was none)."""
        o, self._outage = self._outage, None
        return None if o is None else max(0.0, now - o.since)

    def claim(self, now: float, who: str) -> bool:
        """``who`` would start a request: whether it may, as the probe (the outage's probe
        time has come and no other probe is under way). Without an outage: always."""
        o = self._outage
        if o is None or o.prober == who:
            return True
        if o.prober is not None or now < o.probe_at:
            return False
        o.prober = who
        return True

    def release(self, now: float, who: str) -> None:
        """``who`` probed but got no word either way (a timeout, a local error) or stopped (a
        logout, a close): the next probe waits its backoff, by another workspace if so."""
        o = self._outage
        if o is not None and o.prober == who:
            o.attempt += 1
            o.prober, o.probe_at = None, now + self._delay(o.attempt)

    def _delay(self, attempt: int) -> float:
        return self.backoff.delay(attempt, self._rand())


class SyncState(StrEnum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    IDLE = "idle"
    PUSHING = "pushing"
    PULLING = "pulling"
    ERROR = "error"
    AUTH_REQUIRED = "auth_required"


# Results the driver reports --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullPage:
    """A page was applied with its cursor; ``has_more``: the cloud holds more after it."""

    cursor: str | None
    has_more: bool
    applied: int = 0


@dataclass(frozen=True, slots=True)
class PullTooLarge:
    """The answer to a page of ``limit`` rows was over its size cap: nothing was applied."""

    limit: int


@dataclass(frozen=True, slots=True)
class PullTooSlow:
    """The cloud gave up on a page of ``limit`` rows (``failure``: the statement timeout,
    retry.STATEMENT_TIMEOUT): nothing was applied."""

    limit: int
    failure: Failure


@dataclass(frozen=True, slots=True)
class PushDone:
    """A batch was pushed and settled; ``more``: the outbox still holds entries."""

    more: bool
    pushed: int = 0


# Commands the driver runs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullSince:
    """Pull one page of ``limit`` rows after ``cursor``; ``bulk``: the size of the pages after
    it that a run fetches ahead (None: the driver's own, ``bulk_pull_limit``)."""

    cursor: str | None
    limit: int
    bulk: int | None = None


@dataclass(frozen=True, slots=True)
class PushBatch:
    limit: int


@dataclass(frozen=True, slots=True)
class ApplyRemote:
    """Merge one realtime change (it does not move the pull cursor)."""

    change: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RefreshAuth:
    """Refresh the cloud session, then report ``auth_refreshed``."""


@dataclass(frozen=True, slots=True)
class ScheduleRetry:
    """A failed request will be repeated at ``at`` (already part of ``deadline``; log it)."""

    at: float
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class PublishStatus:
    """The status snapshot changed; publish it (sync.status event, ``syncd status``)."""

    state: SyncState
    pending: bool
    error: str | None
    retry_at: float | None
    last_pull_at: float | None


Command = PullSince | PushBatch | ApplyRemote | RefreshAuth | ScheduleRetry | PublishStatus


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole state of a session; transitions replace it, never mutate it."""

    started: bool = False
    online: bool = False
    connected: bool = False  # a request succeeded since the last (re)connect
    busy: Op | None = None
    resume: Request | None = None  # the request to repeat after a session refresh
    refreshed: bool = False  # the session was refreshed since the last success
    cursor: str | None = None
    pending: bool = False  # local changes not yet pushed
    push_due: float | None = None
    pull_due: float | None = None
    attempt: int = 0  # consecutive failures (until every kind in ``failing`` succeeded)
    failing: frozenset[Request] = frozenset()  # the kinds of request failed since their success
    retry_at: float | None = None
    not_before: float | None = None  # the server's Retry-After, as a time (part of retry_at)
    error: str | None = None
    auth_required: bool = False
    last_pull_at: float | None = None
    push_started_at: float | None = None  # when the last push request started
    pull_after_push: bool = False  # a publish's first run: the pull waits for the push run
    page_cap: int | None = None  # the most rows a page asks for, since one was too large
    page_ok: int = 0  # pages that succeeded in a row at that cap (it grows after a few)
    push_cap: int | None = None  # the most rows a push batch takes, since one timed out
    push_ok: int = 0  # batches that succeeded in a row at that cap (it grows after a few)

    @property
    def state(self) -> SyncState:
        if self.auth_required:
            return SyncState.AUTH_REQUIRED
        if not (self.started and self.online):
            return SyncState.OFFLINE
        if self.retry_at is not None and self.busy is None:
            return SyncState.OFFLINE if self.error in UNREACHABLE else SyncState.ERROR
        if self.busy == "auth" or not self.connected:
            return SyncState.CONNECTING
        if self.busy == "pull":
            return SyncState.PULLING
        if self.busy == "push":
            return SyncState.PUSHING
        return SyncState.IDLE

    @property
    def can_request(self) -> bool:
        return self.started and self.online and not self.auth_required and self.busy is None

    def next_request_at(self) -> float | None:
        """When the next request may start: the earliest due time, but never during backoff."""
        if not self.can_request:
            return None
        due = min((t for t in (self.pull_due, self.push_due) if t is not None), default=None)
        if due is None or self.retry_at is None:
            return due
        return max(due, self.retry_at)

    def is_held_by_server(self, now: float) -> bool:
        """Waiting out a backoff whose end the server set (``Retry-After``) and that has not
        passed: no request may go, whoever asks."""
        return (
            self.retry_at is not None
            and self.busy is None
            and self.not_before is not None
            and now < self.not_before
        )

    def offline(self) -> Snapshot:
        """No connection: nothing goes out until it is back (or ``start``)."""
        return replace(self, online=False, connected=False, pull_after_push=False)

    def reset(self) -> Snapshot:
        """The backoff ends: the next failure waits the shortest delay again."""
        return replace(self, attempt=0, failing=frozenset())

    def with_due(self, op: Request, at: float) -> Snapshot:
        return replace(self, pull_due=at) if op == "pull" else replace(self, push_due=at)


class SyncSession:
    """The sync state machine of one workspace link (see the module docstring)."""

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        push_delay_s: float = 0.25,
        pull_interval_s: float = 30.0,
        push_limit: int = 500,
        pull_limit: int = 1000,
        bulk_pull_limit: int | None = None,
        rand: Callable[[], float] = random.random,
        pull_phase: float | None = None,
    ) -> None:
        next_periodic_pull(0.0, pull_interval_s, 0.0)  # (checks the interval)
        self.backoff = backoff or Backoff()
        self.push_delay_s = push_delay_s
        self.pull_interval_s = pull_interval_s
        #: the periodic pulls fall due at ``pull_phase + k * pull_interval_s`` (module doc);
        #: None: ``pull_interval_s`` after each pull ended (a phase of its own)
        self.pull_phase = pull_phase
        self.push_limit = push_limit
        self.pull_limit = pull_limit
        #: the largest page a pull asks for (the pages after a run's first): a ``page_cap``
        #: that grew back to it is none
        self.full_page = max(pull_limit, bulk_pull_limit or pull_limit)
        self._rand = rand
        self.snapshot = Snapshot()
        self._commands: list[Command] = []
        self._published: PublishStatus | None = None

    # Outputs -----------------------------------------------------------------------------------

    @property
    def state(self) -> SyncState:
        return self.snapshot.state

    @property
    def deadline(self) -> float | None:
        """When the driver must call ``tick`` next; None: only an input can change anything."""
        return self.snapshot.next_request_at()

    def commands_to_run(self) -> list[Command]:
        """Drain the commands produced by the inputs so far, oldest first."""
        commands, self._commands = self._commands, []
        return commands

    # Inputs ------------------------------------------------------------------------------------

    def start(
        self,
        now: float,
        *,
        cursor: str | None = None,
        pending: bool = False,
        online: bool = True,
        push_first: bool = False,
    ) -> None:
        """(Re)start syncing, e.g. at daemon start or after a login; pulls at once, or, with
        ``push_first`` (a publish: see the module docstring), once the push run ended."""
        push_first = push_first and pending
        self.snapshot = Snapshot(
            started=True,
            online=online,
            busy=self.snapshot.busy,  # a request still in flight will report; wait for it
            cursor=cursor,
            pending=pending,
            push_due=now if pending else None,
            pull_due=None if push_first else now,
            last_pull_at=self.snapshot.last_pull_at,
            push_started_at=self.snapshot.push_started_at,
            pull_after_push=push_first,
            page_cap=self.snapshot.page_cap,  # (the rows that were too large are still there)
            push_cap=self.snapshot.push_cap,
        )
        self._advance(now)

    def local_changes_committed(self, now: float) -> None:
        """Local writes reached the outbox: push at once, or ``push_delay_s`` after the last
        push started if that is later (see the module docstring)."""
        s = self.snapshot
        due = s.push_due
        if due is None:
            last = s.push_started_at
            due = now if last is None else max(now, last + self.push_delay_s)
        self.snapshot = replace(s, pending=True, push_due=due)
        self._advance(now)

    def pull_page_received(
        self, now: float, outcome: PullPage | PullTooLarge | PullTooSlow | Failure
    ) -> None:
        s = self.snapshot
        if s.busy != "pull":
            if isinstance(outcome, PullPage) and outcome.cursor is not None:
                self.snapshot = replace(s, cursor=outcome.cursor)  # stale, but applied
            return
        if isinstance(outcome, PullTooLarge):
            self._too_large(now, outcome.limit)
        elif isinstance(outcome, PullTooSlow):
            self.snapshot = self._halved(s, outcome.limit)
            self._fail(now, "pull", outcome.failure)
        elif isinstance(outcome, Failure):
            self._fail(now, "pull", outcome)
        else:
            due = (
                now
                if outcome.has_more
                else next_periodic_pull(
                    now, self.pull_interval_s, now if self.pull_phase is None else self.pull_phase
                )
            )
            cursor = outcome.cursor if outcome.cursor is not None else s.cursor
            self.snapshot = replace(
                self._grown(self._succeeded(s, "pull")),
                cursor=cursor,
                pull_due=due,
                last_pull_at=s.last_pull_at if outcome.has_more else now,
            )
        self._advance(now)

    def push_result_received(self, now: float, outcome: PushDone | Failure) -> None:
        s = self.snapshot
        if s.busy != "push":
            return
        if isinstance(outcome, Failure):
            if outcome.error_code == STATEMENT_TIMEOUT:  # the same batch would time out again
                cap = _half(s.push_cap, self.push_limit)
                self.snapshot = replace(s, push_cap=cap, push_ok=0)
            self._fail(now, "push", outcome)
        elif outcome.more:
            self.snapshot = replace(self._push_grown(self._succeeded(s, "push")), push_due=now)
        else:
            done = self._push_grown(self._succeeded(s, "push"))
            self.snapshot = replace(done, pending=s.push_due is not None)
            if s.pull_after_push:
                self.snapshot = replace(self.snapshot, pull_due=now, pull_after_push=False)
        self._advance(now)

    def remote_change_received(self, now: float, change: Mapping[str, Any]) -> None:
        """A realtime change: apply it (idempotent merge) whatever the state."""
        self._commands.append(ApplyRemote(change))
        self._advance(now)

    def connectivity_changed(self, now: float, *, online: bool) -> None:
        """The network or the realtime channel went down, or came (back) up."""
        s = self.snapshot
        if not online:
            self.snapshot = s.offline()
        else:
            back = replace(
                s,
                pull_after_push=False,
                online=True,
                connected=False,
                pull_due=now,
                push_due=now if s.pending else s.push_due,
            )
            if s.is_held_by_server(now):  # a server's Retry-After holds whatever happens
                self.snapshot = replace(back, retry_at=s.not_before)
            else:  # the backoff ends
                self.snapshot = replace(back, retry_at=None, not_before=None, error=None).reset()
        self._advance(now)

    def stopped(self, now: float) -> None:
        """No requests until ``start`` (logged out, or the workspace held): as going offline,
        and a failure from before is no news any more: its error and backoff end, as ``start``
        would end them (a status after a logout said the last error until the next login)."""
        s = self.snapshot.offline()
        self.snapshot = replace(s, error=None, retry_at=None, not_before=None).reset()
        self._advance(now)

    def auth_refreshed(self, now: float, failure: Failure | None = None) -> None:
        """The session refresh asked for by ``RefreshAuth`` finished."""
        s = self.snapshot
        if s.busy != "auth":
            return
        resume: Request = s.resume or "pull"
        s = replace(s, busy=None, resume=None)
        if failure is None:
            self.snapshot = replace(s, refreshed=True).with_due(resume, now)
        elif isinstance(classify(failure, now=now), Retry):
            self.snapshot = s
            self._fail(now, resume, failure)
        else:  # refused, or rejected again: only a new login helps
            self.snapshot = replace(s, auth_required=True, error="auth_required")
        self._advance(now)

    def manual_request(self, now: float, kind: Request) -> str | None:
        """A user asked to sync now (``sync.push``/``sync.pull``): pull now, then push if
        ``kind`` is push or changes are pending; a backoff ends (see the module docstring).
        None when that is under way (or a request in flight goes first); else why nothing
        can start, the state unchanged: not started or offline (``"offline"``), waiting for
        a login (``"auth_required"``), or a server's ``Retry-After`` that has not passed
        (the failure's reason)."""
        s = self.snapshot
        if not (s.started and s.online):
            return "offline"
        if s.auth_required:
            return s.error or "auth_required"
        if s.is_held_by_server(now):
            return s.error
        pending = s.pending or kind == "push"
        self.snapshot = replace(
            s,
            pending=pending,
            pull_due=s.pull_due if s.pull_after_push else now,  # (then: after the push run)
            push_due=now if pending else s.push_due,
            retry_at=None,
            not_before=None,
            error=None if s.retry_at is not None else s.error,
        ).reset()
        self._advance(now)
        return None

    def tick(self, now: float) -> None:
        """Time passed; start whatever is due."""
        self._advance(now)

    # Transitions -------------------------------------------------------------------------------

    @staticmethod
    def _succeeded(s: Snapshot, op: Request) -> Snapshot:
        """``op`` succeeded. The backoff goes on while another kind of request still fails:
        each retry begins with a catch-up pull, whose success must not reset the backoff of
        a push that keeps failing (else the push is repeated every few hundred ms)."""
        failing = s.failing - {op}
        return replace(
            s,
            busy=None,
            connected=True,
            failing=failing,
            attempt=s.attempt if failing else 0,
            retry_at=None,
            not_before=None,
            error=None,
            refreshed=False,
        )

    def _too_large(self, now: float, limit: int) -> None:
        """A page of ``limit`` rows was over its size cap: ask again at once for half as many
        (the pages after it too), or, a single row over the cap, fail (``ROW_TOO_LARGE``)."""
        s = self.snapshot
        if limit <= 1:  # (as the driver reports a failure that is no cloud's HTTP answer)
            self._fail(now, "pull", Failure.http(502, body={"code": ROW_TOO_LARGE}))
            return
        self.snapshot = replace(self._halved(s, limit), busy=None, pull_due=now)

    @staticmethod
    def _halved(s: Snapshot, limit: int) -> Snapshot:
        """The pages from now on ask for half as many rows as a page of ``limit`` did (at
        least one)."""
        return replace(s, page_cap=_half(s.page_cap, limit), page_ok=0)

    def _grown(self, s: Snapshot) -> Snapshot:
        """A page succeeded: after GROW_AFTER_PAGES in a row, a ``page_cap`` doubles."""
        if s.page_cap is None:
            return s
        cap, ok = _grow(s.page_cap, s.page_ok, self.full_page)
        return replace(s, page_cap=cap, page_ok=ok)

    def _push_grown(self, s: Snapshot) -> Snapshot:
        """A batch succeeded: after GROW_AFTER_PAGES in a row, a ``push_cap`` doubles."""
        if s.push_cap is None:
            return s
        cap, ok = _grow(s.push_cap, s.push_ok, self.push_limit)
        return replace(s, push_cap=cap, push_ok=ok)

    def _fail(self, now: float, op: Request, failure: Failure) -> None:
        s = replace(self.snapshot, busy=None)
        if not s.online:  # the request died with the network; reconnect repeats it
            self.snapshot = s
            return
        decision = classify(failure, now=now)
        if isinstance(decision, ReAuth) and s.refreshed:  # rejected again right after a refresh
            decision = Retry(reason=TOKEN_REJECTED)  # (the session stands: GoTrue granted it)
        if isinstance(decision, ReAuth):  # (the request is repeated: a publish's pull waits)
            self.snapshot = replace(s, busy="auth", resume=op)
            self._commands.append(RefreshAuth())
            return
        if isinstance(decision, Fatal) and decision.reason == "auth_required":
            self.snapshot = replace(s, auth_required=True, error=decision.reason)
            return
        not_before = None
        if isinstance(decision, Retry):
            delay = self.backoff.delay_for(decision, s.attempt, self._rand())
            if decision.after_s is not None:
                not_before = now + decision.after_s
        else:
            delay = self.backoff.cap_s
        at = now + delay
        s = replace(
            s,
            attempt=s.attempt + 1,
            failing=s.failing | {op},
            retry_at=at,
            not_before=not_before,
            error=decision.reason,
        )
        # the retry pulls first (see the module docstring), and is a reconnect
        pull_at = at if s.pull_due is None else min(s.pull_due, at)
        self.snapshot = replace(
            s.with_due(op, at), pull_due=pull_at, connected=False, pull_after_push=False
        )
        self._commands.append(ScheduleRetry(at, s.attempt, decision.reason))

    def _advance(self, now: float) -> None:
        """Start the due request, if any, and publish the status when it changed."""
        s = self.snapshot
        if s.retry_at is not None and s.retry_at <= now:
            s = replace(s, retry_at=None)
        start_at = s.next_request_at()
        if start_at is not None and start_at <= now:
            if s.pull_due is not None and s.pull_due <= now:
                s = replace(s, busy="pull", pull_due=None)
                cap = s.page_cap
                if cap is None:
                    self._commands.append(PullSince(s.cursor, self.pull_limit))
                else:
                    self._commands.append(PullSince(s.cursor, min(cap, self.pull_limit), cap))
            else:
                s = replace(s, busy="push", push_due=None, push_started_at=now)
                self._commands.append(PushBatch(s.push_cap or self.push_limit))
        self.snapshot = s
        self._publish()

    def _publish(self) -> None:
        s = self.snapshot
        status = PublishStatus(s.state, s.pending, s.error, s.retry_at, s.last_pull_at)
        if status != self._published:
            self._published = status
            self._commands.append(status)


def _half(cap: int | None, limit: int) -> int:
    """The cap after a request of ``limit`` rows (under ``cap``, if any) was too large or too
    slow: half of it, at least one row. (A cap is always below the usual size: ``_grow``.)"""
    return max(1, min(limit, cap or limit) // 2)


def _grow(cap: int, ok: int, full: int) -> tuple[int | None, int]:
    """A request under ``cap`` succeeded, ``ok`` others in a row before it: the cap and count
    after it. The cap doubles after GROW_AFTER_PAGES successes in a row; at ``full`` it is gone
    (None)."""
    if ok + 1 < GROW_AFTER_PAGES:
        return cap, ok + 1
    return (None if cap * 2 >= full else cap * 2), 0
