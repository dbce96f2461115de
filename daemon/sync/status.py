"""The sync status snapshot: per linked workspace and overall (pure: no I/O, no clock).

``sync.status`` (method and event) and ``syncd status`` show one ``SyncStatus``. Each linked
workspace's ``SyncSession`` publishes its own state; the overall state is the most pressing
one, in this order: auth_required, error, pushing, pulling, connecting, idle, offline; but
while any workspace's last request could not reach the cloud (error ``connect`` or ``reset``:
protocol.UNREACHABLE; until one of its requests succeeds) it is offline unless one is in
error: there is one cloud, and the workspaces that have not tried it since are no proof that
it is back. Without a session (logged out, or the cloud not configured) everything is
offline, or auth_required when the cloud ended the session. Times are Unix seconds here and
ISO-8601 text in JSON.

``event_view()`` is the snapshot as a status event compares it (``EventView``): service.py
publishes a snapshot only when it is news after the last one published. What is news: a change
of anything but the times and the states (counts, errors, pending, progress); or states at
rest that differ from the last event's. At rest: no request in flight, counting a retry's
request as the failure it retries (its error stays until a request succeeds). So the times,
which move with every pull and every retry, and the pulling/pushing/connecting of a request
that changes nothing else make no event; and the last event does not go on showing a request
in flight once it has ended (the first snapshot at rest after it is published).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from daemon.realtime.presence import format_time
from daemon.sync.protocol import UNREACHABLE

__all__ = [
    "IN_FLIGHT",
    "PRIORITY",
    "EventView",
    "SyncStatus",
    "WorkspaceStatus",
    "iso",
    "overall_state",
]

#: Overall state: the first of these that any workspace is in.
PRIORITY: Final = ("auth_required", "error", "pushing", "pulling", "connecting", "idle", "offline")
#: The states of a request in flight (a retry's request shows one of them too).
IN_FLIGHT: Final = frozenset({"connecting", "pulling", "pushing"})
#: What moves with every pull, push and retry; in a snapshot, never an event of its own.
TIMES: Final = ("last_pull_at", "last_push_at", "retry_at")
#: A workspace's totals: in a snapshot, never an event of their own either (what they count
#: shows as events already: the changes, the outbox's depth, the progress, rejections).
TOTALS: Final = ("counts",)


def iso(when: float | None) -> str | None:
    """Unix seconds as ISO-8601 UTC with milliseconds (None stays None)."""
    return None if when is None else format_time(when)


@dataclass(frozen=True, slots=True)
class WorkspaceStatus:
    """One linked workspace's sync state (from its session's last ``PublishStatus``)."""

    workspace_id: str
    state: str = "offline"
    pending: bool = False
    error: str | None = None
    retry_at: float | None = None
    last_pull_at: float | None = None
    last_push_at: float | None = None
    #: while a pull runs page after page: rows and pages so far, and the rows the run has to
    #: pull in all (``total``, None until the cloud counted them): a first sync shows progress
    progress: Mapping[str, int | None] | None = None
    #: what the workspace's sync moved since the daemon began syncing it (``Counts``: rows
    #: pushed applied, superseded, rejected; rows pulled, changed, conflicts): a clone's rows
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace_id": self.workspace_id,
            "state": self.state,
            "pending": self.pending,
            "last_error": self.error,
            "retry_at": iso(self.retry_at),
            "last_pull_at": iso(self.last_pull_at),
            "last_push_at": iso(self.last_push_at),
            "progress": None if self.progress is None else dict(self.progress),
            "counts": dict(self.counts),
        }

    def state_at_rest(self) -> str | None:
        """The state, a retry's request in flight as the failure it retries; None while
        another request is in flight."""
        if self.state not in IN_FLIGHT:
            return self.state
        if self.error is None:
            return None
        return "offline" if self.error in UNREACHABLE else "error"


def overall_state(
    states: Iterable[str], *, active: bool, auth_required: bool, unreachable: bool = False
) -> str:
    """The state to show for all workspaces; ``active``: logged in (sessions may run);
    ``unreachable``: a workspace's last request could not reach the cloud."""
    if auth_required:
        return "auth_required"
    if not active:
        return "offline"
    present = set(states)
    if unreachable and "error" not in present:
        return "offline"
    if not present:
        return "idle"  # logged in, nothing linked: nothing to do
    return next((s for s in PRIORITY if s in present), "offline")


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What ``sync.status`` answers; ``counts`` come from the store (outbox, rejected...)."""

    configured: bool
    state: str
    workspaces: tuple[WorkspaceStatus, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    last_error: str | None = None
    #: ``{ahead_ms, until}``: the device's clock runs more than the cloud's allowed lead ahead
    #: of its wall clock (hlc.py ``clock_ahead``), so the cloud refuses the changes made until
    #: ``until`` as ``clock_skew`` (they are sent again later: store/sync_skew.py); else None
    clock_ahead: Mapping[str, Any] | None = None

    @classmethod
    def build(
        cls,
        workspaces: Iterable[WorkspaceStatus],
        *,
        configured: bool,
        active: bool,
        auth_required: bool,
        counts: Mapping[str, int],
        session_error: str | None = None,
        clock_ahead: Mapping[str, Any] | None = None,
    ) -> SyncStatus:
        items = tuple(sorted(workspaces, key=lambda w: w.workspace_id))
        state = overall_state(
            (w.state for w in items),
            active=active,
            auth_required=auth_required,
            unreachable=_is_unreachable(items),
        )
        errors = [w.error for w in items if w.error]
        last_error = errors[0] if errors else session_error
        if auth_required and last_error is None:
            last_error = "auth_required"
        return cls(configured, state, items, dict(counts), last_error, clock_ahead)

    def states_at_rest(self) -> dict[str, Any] | None:
        """The overall and every workspace's state at rest, or None while a request is in
        flight (``WorkspaceStatus.state_at_rest``)."""
        states = {w.workspace_id: w.state_at_rest() for w in self.workspaces}
        if None in states.values():
            return None
        state = self.state
        if state in IN_FLIGHT:  # (so logged in, the session standing: the items decide)
            rest = (s for s in states.values() if s is not None)
            unreachable = _is_unreachable(self.workspaces)
            state = overall_state(rest, active=True, auth_required=False, unreachable=unreachable)
        return {"state": state, "workspaces": states}

    def event_view(self) -> EventView:
        """This snapshot as its event compares it (module docstring)."""
        content = self.to_json()
        shown = {"state": content["state"], "workspaces": {}}
        for key in ("state", *TIMES):
            content.pop(key, None)
        if content["clock_ahead"] is not None:  # (ahead_ms moves with every snapshot)
            content["clock_ahead"] = content["clock_ahead"]["until"]
        for w in content["workspaces"]:
            shown["workspaces"][w["workspace_id"]] = w["state"]
            for key in ("state", *TIMES, *TOTALS):
                w.pop(key, None)
        states = self.states_at_rest()
        return EventView(content, states, exact=states == shown)

    def to_json(self) -> dict[str, Any]:
        pulls = [w.last_pull_at for w in self.workspaces if w.last_pull_at is not None]
        pushes = [w.last_push_at for w in self.workspaces if w.last_push_at is not None]
        progress = [w for w in self.workspaces if w.progress is not None]
        return {
            "configured": self.configured,
            "state": self.state,
            "outbox": int(self.counts.get("outbox", 0)),
            "rejected": int(self.counts.get("rejected", 0)),
            "conflicts": int(self.counts.get("conflicts", 0)),
            "last_push_at": iso(max(pushes, default=None)),
            "last_pull_at": iso(max(pulls, default=None)),
            "last_error": self.last_error,
            "progress": _progress(progress),
            "clock_ahead": None if self.clock_ahead is None else dict(self.clock_ahead),
            "workspaces": [w.to_json() for w in self.workspaces],
        }


def _is_unreachable(workspaces: Iterable[WorkspaceStatus]) -> bool:
    """Whether a workspace's last request could not reach the cloud (module docstring)."""
    return any(w.error in UNREACHABLE for w in workspaces)


def _progress(pulling: list[WorkspaceStatus]) -> dict[str, Any] | None:
    """The running pulls' progress summed up, or None when no pull is under way."""
    if not pulling:
        return None
    shown = [w.progress or {} for w in pulling]
    totals = [p.get("total") for p in shown]
    return {
        "workspaces": [w.workspace_id for w in pulling],
        "rows": sum(p.get("rows") or 0 for p in shown),
        "pages": sum(p.get("pages") or 0 for p in shown),
        # known once every running pull's is (a sum of some would end below the rows)
        "total": None if None in totals else sum(t or 0 for t in totals),
    }


@dataclass(frozen=True, slots=True)
class EventView:
    """A status snapshot as its event compares it: ``content``, all but its times and states;
    ``states``, its states at rest (None while a request is in flight); ``exact``: the states
    it shows are those (no retry's request in flight shown as its failure)."""

    content: Any
    states: Any
    exact: bool = True

    def is_news_after(self, last: EventView | None) -> bool:
        """Whether to publish it after the event ``last`` (module docstring)."""
        if last is None or self.content != last.content:
            return True
        if self.states is None:
            return False
        return self.states != last.states or (self.exact and not last.exact)
