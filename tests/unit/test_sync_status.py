"""Which status snapshots are news for a durable event (status.py ``EventView``): pure."""

from __future__ import annotations

import pytest

from daemon.sync.status import EventView, SyncStatus, WorkspaceStatus


def view(*workspaces: WorkspaceStatus, outbox: int = 0, active: bool = True) -> EventView:
    status = SyncStatus.build(
        workspaces,
        configured=True,
        active=active,
        auth_required=False,
        counts={"outbox": outbox, "rejected": 0, "conflicts": 0},
    )
    return status.event_view()


def test_times_alone_are_no_news() -> None:
    before = view(WorkspaceStatus("a", "idle", last_pull_at=1.0, last_push_at=1.0))
    after = view(WorkspaceStatus("a", "idle", last_pull_at=31.0, last_push_at=2.0))
    assert not after.is_news_after(before)
    assert after.is_news_after(None)  # the first one is


def test_a_request_that_changes_nothing_else_is_no_news_and_is_never_left_shown() -> None:
    idle = view(WorkspaceStatus("a", "idle"), WorkspaceStatus("b", "idle"))
    pulling = view(WorkspaceStatus("a", "pulling"), WorkspaceStatus("b", "idle"))
    assert pulling.states is None and not pulling.is_news_after(idle)
    # a push that moves the outbox is news, with the state in flight (not a push alone) ...
    waiting = view(WorkspaceStatus("a", "idle", pending=True), outbox=3)
    pushing = view(WorkspaceStatus("a", "pushing", pending=True), outbox=3)
    assert waiting.is_news_after(idle) and not pushing.is_news_after(waiting)
    drained = view(WorkspaceStatus("a", "pushing"), outbox=0)
    assert drained.is_news_after(waiting)
    # ... and the state at rest after it is news, though nothing else changed
    done = view(WorkspaceStatus("a", "idle"), outbox=0)
    assert done.is_news_after(drained)
    assert not view(WorkspaceStatus("a", "pulling")).is_news_after(done)


def test_a_retry_that_fails_again_is_no_news() -> None:
    offline = view(WorkspaceStatus("a", "offline", pending=True, error="connect", retry_at=5.0))
    retrying = view(WorkspaceStatus("a", "connecting", pending=True, error="connect"))
    again = view(WorkspaceStatus("a", "offline", pending=True, error="connect", retry_at=9.0))
    assert retrying.states == offline.states == {"state": "offline", "workspaces": {"a": "offline"}}
    assert not retrying.is_news_after(offline)
    assert not again.is_news_after(offline)
    # another reason is another state (error), and news
    failing = view(WorkspaceStatus("a", "pulling", pending=True, error="http_503"))
    assert failing.states == {"state": "error", "workspaces": {"a": "error"}}
    assert failing.is_news_after(offline)
    # a retry's request shown (published with another change) is followed by its state at rest
    shown = view(WorkspaceStatus("a", "connecting", error="connect"), outbox=1)
    assert shown.is_news_after(offline) and not shown.exact
    settled = view(WorkspaceStatus("a", "offline", error="connect", retry_at=3.0), outbox=1)
    assert settled.is_news_after(shown)
    assert not view(WorkspaceStatus("a", "connecting", error="connect"), outbox=1).is_news_after(
        settled
    )


def test_real_changes_are_news() -> None:
    idle = view(WorkspaceStatus("a", "idle"))
    assert view(WorkspaceStatus("a", "idle"), outbox=1).is_news_after(idle)
    assert view(WorkspaceStatus("a", "idle", pending=True)).is_news_after(idle)
    assert view(WorkspaceStatus("a", "error", error="http_500")).is_news_after(idle)
    progress = {"rows": 10, "pages": 1, "total": None}
    assert view(WorkspaceStatus("a", "pulling", progress=progress)).is_news_after(idle)
    assert view(WorkspaceStatus("a", "idle"), WorkspaceStatus("b", "idle")).is_news_after(idle)
    assert view(WorkspaceStatus("a", "offline"), active=False).is_news_after(idle)


def test_a_workspace_s_counts_are_in_the_snapshot_but_no_news() -> None:
    before = WorkspaceStatus("a", "idle", counts={"pulled": 0, "applied": 0})
    after = WorkspaceStatus("a", "idle", counts={"pulled": 7, "applied": 2})
    status = SyncStatus.build(
        [after], configured=True, active=True, auth_required=False, counts={}
    ).to_json()
    assert status["workspaces"][0]["counts"] == {"pulled": 7, "applied": 2}
    assert not view(after).is_news_after(view(before))


@pytest.mark.parametrize("reason", ["connect", "reset"])
def test_the_cloud_out_of_reach_for_one_workspace_is_offline_for_all(reason: str) -> None:
    """One workspace's push could not connect (or the connection was reset: a port that
    accepts then resets, README's unreachable cloud); the others, idle, have not tried since: the
    overall state is offline (it was idle), also while the retry's request is in flight."""

    def build(*workspaces: WorkspaceStatus) -> SyncStatus:
        return SyncStatus.build(
            workspaces, configured=True, active=True, auth_required=False, counts={"outbox": 1}
        )

    failed = WorkspaceStatus("a", "offline", pending=True, error=reason, retry_at=5.0)
    status = build(failed, WorkspaceStatus("b", "idle"))
    assert status.state == "offline" and status.last_error == reason
    retrying = WorkspaceStatus("a", "connecting", pending=True, error=reason)
    in_flight = build(retrying, WorkspaceStatus("b", "idle"))
    assert in_flight.state == "offline"
    assert in_flight.states_at_rest() == {
        "state": "offline", "workspaces": {"a": "offline", "b": "idle"},
    }  # fmt: skip
    assert not in_flight.event_view().is_news_after(status.event_view())
    # another failure is no sign the cloud is out of reach: the most pressing state shows
    failing = build(WorkspaceStatus("a", "error", error="http_503"), WorkspaceStatus("b", "idle"))
    assert failing.state == "error"
    # a request that reached the cloud again ends it
    assert build(WorkspaceStatus("a", "idle"), WorkspaceStatus("b", "idle")).state == "idle"


def test_a_clock_ahead_shows_in_the_snapshot_and_is_news_only_when_it_comes_or_goes() -> None:
    def status(ahead_ms: int | None) -> SyncStatus:
        return SyncStatus.build(
            [WorkspaceStatus("a", "idle")],
            configured=True,
            active=True,
            auth_required=False,
            counts={},
            clock_ahead=None
            if ahead_ms is None
            else {"ahead_ms": ahead_ms, "until": "2027-01-01T00:00:00.000Z"},
        )

    assert status(None).to_json()["clock_ahead"] is None
    ahead = status(3_700_000)
    assert ahead.to_json()["clock_ahead"] == {
        "ahead_ms": 3_700_000,
        "until": "2027-01-01T00:00:00.000Z",
    }
    assert ahead.event_view().is_news_after(status(None).event_view())
    # the lead shrinks as the wall clock moves: no news of its own
    assert not status(3_600_500).event_view().is_news_after(ahead.event_view())
    assert status(None).event_view().is_news_after(ahead.event_view())
