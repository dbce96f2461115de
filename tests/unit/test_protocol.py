"""The sync session state machine: every (state x input) cell, then the timing rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from daemon.sync.protocol import (
    GROW_AFTER_PAGES,
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
    next_periodic_pull,
)
from daemon.sync.retry import Backoff, Failure

NOW = 1_000.0
T = NOW + 1.0

OFFLINE, CONNECTING, IDLE = SyncState.OFFLINE, SyncState.CONNECTING, SyncState.IDLE
PUSHING, PULLING, ERROR = SyncState.PUSHING, SyncState.PULLING, SyncState.ERROR
AUTH_REQUIRED = SyncState.AUTH_REQUIRED


def new_session() -> SyncSession:
    return SyncSession(rand=lambda: 0.5)


def actions(session: SyncSession) -> list[Command]:
    """The commands to run, without the status notifications."""
    return [c for c in session.commands_to_run() if not isinstance(c, PublishStatus)]


def kinds(commands: list[Command]) -> tuple[type, ...]:
    return tuple(type(c) for c in commands)


# Each state, reached through inputs only --------------------------------------------------------


def _offline(s: SyncSession) -> None:
    s.start(NOW, online=False)


def _connecting(s: SyncSession) -> None:
    s.start(NOW)


def _pulling(s: SyncSession) -> None:
    s.start(NOW)
    s.pull_page_received(NOW, PullPage("c1", has_more=True))


def _pushing(s: SyncSession) -> None:
    s.start(NOW, pending=True)
    s.pull_page_received(NOW, PullPage("c1", has_more=False))


def _idle(s: SyncSession) -> None:
    s.start(NOW)
    s.pull_page_received(NOW, PullPage("c1", has_more=False))


def _error(s: SyncSession) -> None:
    s.start(NOW)
    s.pull_page_received(NOW, Failure.http(503, {"Retry-After": "120"}))


def _auth_required(s: SyncSession) -> None:
    s.start(NOW)
    s.pull_page_received(NOW, Failure.http(400, {}, {"code": "refresh_token_not_found"}))


BUILD: dict[SyncState, Callable[[SyncSession], None]] = {
    OFFLINE: _offline,
    CONNECTING: _connecting,
    PULLING: _pulling,
    PUSHING: _pushing,
    IDLE: _idle,
    ERROR: _error,
    AUTH_REQUIRED: _auth_required,
}

INPUTS: dict[str, Callable[[SyncSession], object]] = {
    "start": lambda s: s.start(T, cursor="c9"),
    "local_changes": lambda s: s.local_changes_committed(T),
    "pull_ok": lambda s: s.pull_page_received(T, PullPage("c2", has_more=False)),
    "pull_failed": lambda s: s.pull_page_received(T, Failure.network("timeout")),
    "push_ok": lambda s: s.push_result_received(T, PushDone(more=False)),
    "push_failed": lambda s: s.push_result_received(T, Failure.http(503)),
    "remote_change": lambda s: s.remote_change_received(T, {"table": "tasks", "id": "r1"}),
    "online": lambda s: s.connectivity_changed(T, online=True),
    "offline": lambda s: s.connectivity_changed(T, online=False),
    "tick": lambda s: s.tick(T + 60),
    "auth_ok": lambda s: s.auth_refreshed(T),
    "manual_push": lambda s: s.manual_request(T, "push"),
    "manual_pull": lambda s: s.manual_request(T, "pull"),
}

P, U, A, R = PullSince, PushBatch, ApplyRemote, ScheduleRetry
# (state, input) -> (next state, commands other than PublishStatus)
TABLE: dict[SyncState, dict[str, tuple[SyncState, tuple[type, ...]]]] = {
    OFFLINE: {
        "start": (CONNECTING, (P,)),
        "local_changes": (OFFLINE, ()),
        "pull_ok": (OFFLINE, ()),  # stale result
        "pull_failed": (OFFLINE, ()),
        "push_ok": (OFFLINE, ()),
        "push_failed": (OFFLINE, ()),
        "remote_change": (OFFLINE, (A,)),
        "online": (CONNECTING, (P,)),
        "offline": (OFFLINE, ()),
        "tick": (OFFLINE, ()),
        "auth_ok": (OFFLINE, ()),
        "manual_push": (OFFLINE, ()),  # not started online: "offline"
        "manual_pull": (OFFLINE, ()),
    },
    CONNECTING: {
        "start": (CONNECTING, ()),  # the pull in flight reports first
        "local_changes": (CONNECTING, ()),
        "pull_ok": (IDLE, ()),
        "pull_failed": (ERROR, (R,)),
        "push_ok": (CONNECTING, ()),
        "push_failed": (CONNECTING, ()),
        "remote_change": (CONNECTING, (A,)),
        "online": (CONNECTING, ()),
        "offline": (OFFLINE, ()),
        "tick": (CONNECTING, ()),
        "auth_ok": (CONNECTING, ()),
        "manual_push": (CONNECTING, ()),  # after the pull in flight
        "manual_pull": (CONNECTING, ()),
    },
    PULLING: {
        "start": (CONNECTING, ()),
        "local_changes": (PULLING, ()),
        "pull_ok": (IDLE, ()),
        "pull_failed": (ERROR, (R,)),
        "push_ok": (PULLING, ()),
        "push_failed": (PULLING, ()),
        "remote_change": (PULLING, (A,)),
        "online": (CONNECTING, ()),
        "offline": (OFFLINE, ()),
        "tick": (PULLING, ()),
        "auth_ok": (PULLING, ()),
        "manual_push": (PULLING, ()),
        "manual_pull": (PULLING, ()),
    },
    PUSHING: {
        "start": (CONNECTING, ()),
        "local_changes": (PUSHING, ()),
        "pull_ok": (PUSHING, ()),
        "pull_failed": (PUSHING, ()),
        "push_ok": (IDLE, ()),
        "push_failed": (ERROR, (R,)),
        "remote_change": (PUSHING, (A,)),
        "online": (CONNECTING, ()),
        "offline": (OFFLINE, ()),
        "tick": (PUSHING, ()),
        "auth_ok": (PUSHING, ()),
        "manual_push": (PUSHING, ()),  # after the push in flight: a pull, then a push
        "manual_pull": (PUSHING, ()),
    },
    IDLE: {
        "start": (CONNECTING, (P,)),
        "local_changes": (PUSHING, (U,)),  # no push started yet: a lone write goes at once
        "pull_ok": (IDLE, ()),
        "pull_failed": (IDLE, ()),
        "push_ok": (IDLE, ()),
        "push_failed": (IDLE, ()),
        "remote_change": (IDLE, (A,)),
        "online": (CONNECTING, (P,)),
        "offline": (OFFLINE, ()),
        "tick": (PULLING, (P,)),  # the 30 s pull
        "auth_ok": (IDLE, ()),
        "manual_push": (PULLING, (P,)),  # a pull first, then the push
        "manual_pull": (PULLING, (P,)),
    },
    ERROR: {
        "start": (CONNECTING, (P,)),
        "local_changes": (ERROR, ()),  # held until the retry time
        "pull_ok": (ERROR, ()),
        "pull_failed": (ERROR, ()),
        "push_ok": (ERROR, ()),
        "push_failed": (ERROR, ()),
        "remote_change": (ERROR, (A,)),
        "online": (ERROR, ()),  # a reconnect does not end the server's Retry-After 120 s
        "offline": (OFFLINE, ()),
        "tick": (ERROR, ()),  # 61 s < Retry-After 120 s
        "auth_ok": (ERROR, ()),
        "manual_push": (ERROR, ()),  # Retry-After 120 s: answered with the reason
        "manual_pull": (ERROR, ()),
    },
    AUTH_REQUIRED: {
        "start": (CONNECTING, (P,)),
        "local_changes": (AUTH_REQUIRED, ()),
        "pull_ok": (AUTH_REQUIRED, ()),
        "pull_failed": (AUTH_REQUIRED, ()),
        "push_ok": (AUTH_REQUIRED, ()),
        "push_failed": (AUTH_REQUIRED, ()),
        "remote_change": (AUTH_REQUIRED, (A,)),
        "online": (AUTH_REQUIRED, ()),
        "offline": (AUTH_REQUIRED, ()),
        "tick": (AUTH_REQUIRED, ()),
        "auth_ok": (AUTH_REQUIRED, ()),
        "manual_push": (AUTH_REQUIRED, ()),  # the driver starts it again first
        "manual_pull": (AUTH_REQUIRED, ()),
    },
}


def test_the_table_covers_every_state_and_input() -> None:
    assert set(TABLE) == set(SyncState) == set(BUILD)
    for state, row in TABLE.items():
        assert set(row) == set(INPUTS), state


CELLS = [(state, name) for state in SyncState for name in INPUTS]


@pytest.mark.parametrize(("state", "input_name"), CELLS, ids=[f"{s}-{i}" for s, i in CELLS])
def test_transition(state: SyncState, input_name: str) -> None:
    session = new_session()
    BUILD[state](session)
    assert session.state is state
    session.commands_to_run()
    INPUTS[input_name](session)
    expected_state, expected_kinds = TABLE[state][input_name]
    assert (session.state, kinds(actions(session))) == (expected_state, expected_kinds)


# Timing rules -----------------------------------------------------------------------------------


def test_start_pulls_first_then_pushes_at_once() -> None:
    s = new_session()
    s.start(NOW, cursor="c0", pending=True)
    assert actions(s) == [PullSince("c0", 1000)]
    s.pull_page_received(NOW + 0.1, PullPage("c1", has_more=True))
    assert actions(s) == [PullSince("c1", 1000)]  # next page at once
    s.pull_page_received(NOW + 0.2, PullPage("c2", has_more=False))
    assert actions(s) == [PushBatch(500)]  # unpushed edits go right after the catch-up


def test_a_publish_pushes_its_history_first_then_pulls() -> None:
    """Its cloud workspace was just made from this device: nothing to merge before the push
    (a value the cloud held already makes the push superseded and kept as a lost entry)."""
    s = new_session()
    s.start(NOW, pending=True, push_first=True)
    assert actions(s) == [PushBatch(500)] and s.state is CONNECTING
    assert s.manual_request(NOW + 0.05, "push") is None  # (syncd push meanwhile)
    s.push_result_received(NOW + 0.1, PushDone(more=True))
    assert actions(s) == [PushBatch(500)] and s.state is PUSHING  # no pull before it ends
    s.push_result_received(NOW + 0.2, PushDone(more=False))
    assert actions(s) == [PullSince(None, 1000)]  # at once once the run ended
    s.pull_page_received(NOW + 0.3, PullPage("c1", has_more=False))
    assert actions(s) == [] and s.state is IDLE
    s.tick(NOW + 0.3 + 30)
    assert actions(s) == [PullSince("c1", 1000)]  # then the usual periodic pull


def test_a_publish_without_pending_changes_pulls_first() -> None:
    s = new_session()
    s.start(NOW, push_first=True)
    assert actions(s) == [PullSince(None, 1000)]


@pytest.mark.parametrize(
    "failure", [Failure.network("timeout"), Failure.http(503)], ids=["timeout", "503"]
)
def test_a_publish_whose_push_fails_pulls_first_on_the_retry(failure: Failure) -> None:
    s = new_session()
    s.start(NOW, pending=True, push_first=True)
    s.commands_to_run()
    s.push_result_received(NOW + 0.1, failure)
    (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
    s.tick(retry.at)
    assert actions(s) == [PullSince(None, 1000)]


def test_a_publish_whose_token_expired_refreshes_and_still_pushes_first() -> None:
    s = new_session()
    s.start(NOW, pending=True, push_first=True)
    s.commands_to_run()
    expired = Failure.http(401, {}, {"code": "PGRST303", "message": "JWT expired"})
    s.push_result_received(NOW + 0.1, expired)
    assert actions(s) == [RefreshAuth()]
    s.auth_refreshed(NOW + 0.2)
    assert actions(s) == [PushBatch(500)]
    s.push_result_received(NOW + 0.3, PushDone(more=False))
    assert actions(s) == [PullSince(None, 1000)]


def test_a_reconnect_during_a_publish_pulls_first() -> None:
    s = new_session()
    s.start(NOW, pending=True, push_first=True)
    s.commands_to_run()
    s.connectivity_changed(NOW + 0.1, online=False)
    s.connectivity_changed(NOW + 0.2, online=True)
    s.push_result_received(NOW + 0.3, PushDone(more=True))  # (the push in flight reports)
    assert actions(s) == [PullSince(None, 1000)]


def test_a_lone_write_is_pushed_at_once() -> None:
    s = new_session()
    _idle(s)
    s.commands_to_run()
    s.local_changes_committed(T)
    assert actions(s) == [PushBatch(500)] and s.state is PUSHING
    s.push_result_received(T + 0.01, PushDone(more=False))
    s.local_changes_committed(T + 0.26)  # 250 ms after the last push started: at once again
    assert actions(s) == [PushBatch(500)]


def test_writes_soon_after_a_push_wait_at_most_250_ms_from_its_start() -> None:
    s = new_session()
    _idle(s)
    s.local_changes_committed(T)
    s.push_result_received(T + 0.05, PushDone(more=False))
    s.commands_to_run()
    s.local_changes_committed(T + 0.1)
    s.local_changes_committed(T + 0.2)  # does not postpone the push
    assert s.deadline == T + 0.25 and s.state is IDLE and s.snapshot.pending
    s.tick(T + 0.249)
    assert actions(s) == []
    s.tick(T + 0.25)
    assert actions(s) == [PushBatch(500)] and s.state is PUSHING


def test_more_batches_follow_at_once_and_writes_during_a_push_are_pushed_too() -> None:
    s = new_session()
    _pushing(s)
    s.commands_to_run()
    s.push_result_received(T, PushDone(more=True))
    assert actions(s) == [PushBatch(500)]
    s.local_changes_committed(T + 0.1)  # 250 ms after the push that started at T
    s.push_result_received(T + 0.2, PushDone(more=False))
    assert actions(s) == [] and s.snapshot.pending and s.deadline == T + 0.25
    s.tick(T + 0.25)
    assert actions(s) == [PushBatch(500)]
    s.push_result_received(T + 0.4, PushDone(more=False))
    assert not s.snapshot.pending and s.state is IDLE


def test_pull_every_30_seconds() -> None:
    s = new_session()
    _idle(s)
    assert s.deadline == NOW + 30
    s.commands_to_run()
    s.tick(NOW + 30)
    assert actions(s) == [PullSince("c1", 1000)]
    s.pull_page_received(NOW + 30.5, PullPage(None, has_more=False))  # no new rows: cursor stays
    assert s.deadline == NOW + 60.5 and s.snapshot.cursor == "c1"


def test_reconnect_pulls_then_pushes_and_resets_the_backoff() -> None:
    s = SyncSession(rand=lambda: 0.5, backoff=Backoff(base_s=20.0, cap_s=30.0))
    s.start(NOW)
    s.pull_page_received(NOW, Failure.http(503))
    s.local_changes_committed(T)
    s.connectivity_changed(T + 2, online=False)
    s.commands_to_run()
    s.connectivity_changed(T + 3, online=True)
    assert actions(s) == [PullSince(None, 1000)] and s.snapshot.attempt == 0
    s.pull_page_received(T + 4, PullPage("c1", has_more=False))
    assert actions(s) == [PushBatch(500)]


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    s = SyncSession(rand=lambda: 0.5, backoff=Backoff(base_s=1.0, cap_s=8.0))
    s.start(NOW)
    s.commands_to_run()
    now = NOW
    delays = []
    for _ in range(5):
        s.pull_page_received(now, Failure.network("connect"))
        (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
        delays.append(retry.at - now)
        assert s.state is OFFLINE and s.deadline == retry.at  # the cloud cannot be reached
        now = retry.at
        s.tick(now)
        assert actions(s) == [PullSince(None, 1000)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]  # 0.5 * min(8, 1 * 2**n)
    s.pull_page_received(now, Failure.http(429, {"Retry-After": "60"}))
    (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
    assert retry.at == now + 60 and retry.reason == "http_429" and retry.attempt == 6
    s.tick(now + 60)
    s.pull_page_received(now + 61, PullPage("c1", has_more=False))
    assert s.snapshot.attempt == 0 and s.snapshot.error is None and s.state is IDLE


def test_a_push_that_keeps_failing_backs_off_although_the_catch_up_pulls_succeed() -> None:
    """Each retry begins with a catch-up pull; its success must not reset the push's backoff
    (the push was repeated every few hundred ms, for ever, while only sync_push failed)."""
    s = SyncSession(rand=lambda: 0.5, backoff=Backoff(base_s=1.0, cap_s=8.0))
    _pushing(s)
    s.commands_to_run()
    now, delays = T, []
    for attempt in range(1, 6):
        s.push_result_received(now, Failure.http(500))
        (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
        assert retry.attempt == attempt and s.state is ERROR
        delays.append(retry.at - now)
        now = retry.at
        s.tick(now)
        assert actions(s) == [PullSince("c1", 1000)]
        s.pull_page_received(now, PullPage("c1", has_more=False))
        assert actions(s) == [PushBatch(500)] and s.snapshot.attempt == attempt
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]  # 0.5 * min(8, 1 * 2**n)
    s.push_result_received(now, PushDone(more=False))  # the push itself succeeds: reset
    assert s.snapshot.attempt == 0 and s.state is IDLE


def test_the_backoff_resets_once_every_failed_kind_of_request_succeeded() -> None:
    s = SyncSession(rand=lambda: 0.5, backoff=Backoff(base_s=1.0, cap_s=8.0))
    _pushing(s)
    s.commands_to_run()
    s.push_result_received(T, Failure.http(500))
    s.tick(T + 0.5)
    s.commands_to_run()
    s.pull_page_received(T + 0.5, Failure.network("timeout"))  # the pull fails too
    (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
    assert retry.attempt == 2
    s.tick(retry.at)
    s.pull_page_received(retry.at, PullPage("c1", has_more=False))
    assert s.snapshot.attempt == 2  # the push has not succeeded yet
    s.push_result_received(retry.at, PushDone(more=False))
    assert s.snapshot.attempt == 0 and not s.snapshot.failing


def test_a_failure_holds_every_request_until_the_retry_time() -> None:
    s = new_session()
    _error(s)  # pull failed; retry at NOW + 120
    s.commands_to_run()
    s.local_changes_committed(T)
    assert s.deadline == NOW + 120
    s.tick(NOW + 119)
    assert actions(s) == []
    s.tick(NOW + 120)
    assert actions(s) == [PullSince(None, 1000)]  # the pull first, then the push


@pytest.mark.parametrize(
    ("failure", "state"),
    [(Failure.network("connect"), OFFLINE), (Failure.network("reset"), OFFLINE),
     (Failure.network("timeout"), ERROR), (Failure.http(503), ERROR)],
)  # fmt: skip
def test_a_failed_push_is_retried_after_a_catch_up_pull(failure: Failure, state: SyncState) -> None:
    """Back from an outage, remote changes are merged while the unpushed edits are still
    pending (a lost manual edit becomes a conflict), as after a realtime reconnect."""
    s = new_session()
    _pushing(s)
    s.commands_to_run()
    s.push_result_received(T, failure)
    (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
    assert s.state is state
    s.tick(retry.at)
    assert actions(s) == [PullSince("c1", 1000)] and s.state is CONNECTING
    s.pull_page_received(retry.at + 1, PullPage("c2", has_more=False))
    assert actions(s) == [PushBatch(500)]
    s.push_result_received(retry.at + 2, PushDone(more=False))
    assert s.state is IDLE and s.snapshot.error is None


@pytest.mark.parametrize(
    ("failure", "state"),
    [(Failure.network("connect"), OFFLINE), (Failure.network("reset"), OFFLINE),
     (Failure.network("timeout"), ERROR), (Failure.http(500, {}, {"code": "XX000"}), ERROR),
     (Failure.http(503), ERROR),
     (Failure.http(404, {}, {"code": "PGRST202"}), ERROR)],
)  # fmt: skip
def test_a_manual_sync_ends_a_backoff_and_tries_now(failure: Failure, state: SyncState) -> None:
    """``syncd push`` after the cloud came back must not answer the old failure for up to
    30 s (nor until the slow retry of a Fatal): it pulls now, then pushes."""
    s = SyncSession(rand=lambda: 0.99, backoff=Backoff(base_s=20.0, cap_s=30.0))
    _pushing(s)
    s.commands_to_run()
    s.push_result_received(T, failure)
    (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
    assert s.state is state and retry.at > T + 19
    assert s.manual_request(T + 1, "push") is None
    assert actions(s) == [PullSince("c1", 1000)] and s.state is CONNECTING
    snapshot = s.snapshot
    assert (snapshot.attempt, snapshot.retry_at, snapshot.error) == (0, None, None)
    s.pull_page_received(T + 2, PullPage("c2", has_more=False))
    assert actions(s) == [PushBatch(500)]
    s.push_result_received(T + 3, PushDone(more=False))
    assert s.state is IDLE and not s.snapshot.pending


def test_a_manual_pull_ends_a_backoff_and_pushes_only_what_is_pending() -> None:
    s = SyncSession(rand=lambda: 0.99, backoff=Backoff(base_s=20.0, cap_s=30.0))
    _idle(s)
    s.tick(NOW + 30)
    s.commands_to_run()
    s.pull_page_received(NOW + 30, Failure.http(502))
    assert s.state is ERROR
    s.commands_to_run()
    assert s.manual_request(NOW + 31, "pull") is None
    assert actions(s) == [PullSince("c1", 1000)]
    s.pull_page_received(NOW + 32, PullPage("c2", has_more=False))
    assert actions(s) == [] and s.state is IDLE  # nothing was pending: no push


def test_a_server_retry_after_holds_manual_requests_until_it_passes() -> None:
    """A 429/503 with Retry-After is honoured whoever asks: the request is answered with the
    reason and the backoff stays; the jitter on top of it is not (only the server's time)."""
    s = SyncSession(rand=lambda: 0.5, backoff=Backoff(base_s=20.0, cap_s=30.0))
    _pushing(s)
    s.commands_to_run()
    s.push_result_received(T, Failure.http(429, {"Retry-After": "5"}))
    (retry,) = [c for c in actions(s) if isinstance(c, ScheduleRetry)]
    assert retry.at == T + 10  # jitter 0.5 * 20 s, more than the server's 5 s
    before = s.snapshot
    for now in (T, T + 1, T + 4.99):
        assert s.manual_request(now, "push") == "http_429"
        assert actions(s) == [] and s.snapshot == before and s.state is ERROR
    assert s.manual_request(T + 5, "push") is None  # the server's time passed: try now
    assert actions(s) == [PullSince("c1", 1000)]


def test_a_reconnect_keeps_a_server_retry_after() -> None:
    """A realtime re-subscribe (or the network coming back) ends the daemon's own backoff, not
    the server's Retry-After: the catch-up pull goes when the server's time has passed."""
    s = SyncSession(rand=lambda: 0.5, backoff=Backoff(base_s=20.0, cap_s=30.0))
    _pushing(s)
    s.commands_to_run()
    s.push_result_received(T, Failure.http(429, {"Retry-After": "5"}))
    actions(s)
    s.connectivity_changed(T + 1, online=False)
    s.connectivity_changed(T + 2, online=True)
    assert actions(s) == [] and s.state is ERROR and s.snapshot.error == "http_429"
    assert s.deadline == T + 5  # the server's time, not the jitter's T + 10
    assert s.manual_request(T + 3, "push") == "http_429"
    s.tick(T + 5)
    assert actions(s) == [PullSince("c1", 1000)]
    s.pull_page_received(T + 6, PullPage("c2", has_more=False))
    assert actions(s) == [PushBatch(500)] and s.snapshot.attempt == 1  # (the push failed)
    s.push_result_received(T + 7, PushDone(more=False))
    assert s.snapshot.attempt == 0


def test_a_manual_request_that_cannot_start_says_why() -> None:
    s = new_session()
    assert s.manual_request(NOW, "push") == "offline"  # not started
    s.start(NOW, online=False)
    assert s.manual_request(NOW, "pull") == "offline"
    s = new_session()
    _auth_required(s)
    s.commands_to_run()
    assert s.manual_request(T, "push") == "auth_required" and actions(s) == []


def test_expired_token_refreshes_and_repeats_the_request_once() -> None:
    s = new_session()
    _pushing(s)
    s.commands_to_run()
    expired = Failure.http(401, {}, {"code": "PGRST303", "message": "JWT expired"})
    s.push_result_received(T, expired)
    assert actions(s) == [RefreshAuth()] and s.state is CONNECTING
    s.auth_refreshed(T + 0.1)
    assert actions(s) == [PushBatch(500)]
    s.push_result_received(T + 0.2, expired)  # rejected again right after a refresh
    # the session stands (GoTrue granted it): retried with backoff, not auth_required
    (retry,) = actions(s)
    assert isinstance(retry, ScheduleRetry) and retry.reason == "token_rejected"
    assert s.state is ERROR and s.snapshot.error == "token_rejected"
    s.tick(retry.at)
    assert actions(s) == [PullSince("c1", 1000)]  # a retry pulls first
    s.pull_page_received(retry.at + 0.1, expired)  # not refreshed again at once
    (again,) = actions(s)
    assert isinstance(again, ScheduleRetry) and again.attempt == 2
    s.tick(again.at)
    assert actions(s) == [PullSince("c1", 1000)]
    s.pull_page_received(again.at + 0.1, PullPage("c1", has_more=False))
    assert actions(s) == [PushBatch(500)] and s.snapshot.error is None


def test_refresh_refused_or_unreachable() -> None:
    s = new_session()
    s.start(NOW)
    s.commands_to_run()
    s.pull_page_received(NOW, Failure.http(403, {}, {"code": "bad_jwt"}))
    assert actions(s) == [RefreshAuth()]
    s.auth_refreshed(NOW + 1, Failure.network("timeout"))
    (retry,) = actions(s)
    assert isinstance(retry, ScheduleRetry) and s.state is ERROR
    s.tick(retry.at)
    assert actions(s) == [PullSince(None, 1000)]
    s.pull_page_received(retry.at, Failure.http(401))
    assert actions(s) == [RefreshAuth()]
    s.auth_refreshed(retry.at + 1, Failure.http(400, {}, {"code": "refresh_token_already_used"}))
    assert s.state is AUTH_REQUIRED and s.snapshot.error == "auth_required"


def test_other_fatal_errors_retry_slowly() -> None:
    s = new_session()
    s.start(NOW)
    s.commands_to_run()
    s.pull_page_received(NOW, Failure.http(404, {}, {"code": "PGRST202"}))  # no sync_pull yet
    assert actions(s) == [ScheduleRetry(NOW + 30.0, 1, "PGRST202")]
    assert s.state is ERROR and s.snapshot.error == "PGRST202"


def test_a_request_lost_offline_is_repeated_on_reconnect_without_backoff() -> None:
    s = new_session()
    _pushing(s)
    s.connectivity_changed(T, online=False)
    s.commands_to_run()
    s.push_result_received(T, Failure.network("connect"))
    assert actions(s) == [] and s.snapshot.attempt == 0 and s.state is OFFLINE
    s.connectivity_changed(T + 5, online=True)
    assert actions(s) == [PullSince("c1", 1000)]
    s.pull_page_received(T + 6, PullPage("c2", has_more=False))
    assert actions(s) == [PushBatch(500)]


def test_a_stale_page_still_moves_the_cursor() -> None:
    s = new_session()
    _pulling(s)
    s.start(T, cursor="c1")  # e.g. relogin while a pull is in flight
    s.pull_page_received(T, PullPage("c5", has_more=True))
    assert s.snapshot.cursor == "c5"


def test_status_is_published_only_when_it_changes() -> None:
    s = new_session()
    s.start(NOW)
    first = [c for c in s.commands_to_run() if isinstance(c, PublishStatus)]
    assert first == [PublishStatus(CONNECTING, False, None, None, None)]
    s.tick(NOW + 1)
    s.remote_change_received(NOW + 1, {"id": "x"})
    assert [c for c in s.commands_to_run() if isinstance(c, PublishStatus)] == []
    s.pull_page_received(NOW + 2, PullPage("c1", has_more=False))
    assert s.commands_to_run() == [PublishStatus(IDLE, False, None, None, NOW + 2)]
    s.local_changes_committed(NOW + 3)  # pushed at once
    assert s.commands_to_run() == [
        PushBatch(500),
        PublishStatus(PUSHING, True, None, None, NOW + 2),
    ]
    s.push_result_received(NOW + 3.1, PushDone(more=False))
    assert s.commands_to_run() == [PublishStatus(IDLE, False, None, None, NOW + 2)]
    s.local_changes_committed(NOW + 3.2)  # waits for NOW + 3.25: only "pending" changes
    assert s.commands_to_run() == [PublishStatus(IDLE, True, None, None, NOW + 2)]


def test_inputs_before_start_only_record_pending_changes() -> None:
    s = new_session()
    s.local_changes_committed(NOW)
    s.tick(NOW + 10)
    assert actions(s) == [] and s.state is OFFLINE and s.deadline is None
    assert s.snapshot.pending


def test_stopping_ends_what_a_failure_left() -> None:
    """Logged out (or held), no request goes until ``start``: the failure before it is no news
    any more (a status after a logout said the last error, offline and the retry time, until
    the next login)."""
    s = SyncSession(rand=lambda: 0.5, backoff=Backoff(base_s=20.0, cap_s=30.0))
    _pushing(s)
    s.commands_to_run()
    s.push_result_received(T, Failure.network("connect"))
    actions(s)
    assert s.snapshot.error == "connect" and s.snapshot.retry_at is not None
    s.stopped(T + 1)
    snap = s.snapshot
    assert (snap.error, snap.retry_at, snap.not_before, snap.attempt) == (None, None, None, 0)
    assert s.state is OFFLINE and s.deadline is None and actions(s) == []
    s.tick(T + 60)
    assert actions(s) == []  # nothing until start


# A page over the answer's size cap ------------------------------------------------------------


def test_a_page_over_the_size_cap_is_asked_again_with_half_the_rows_then_grows_back() -> None:
    s = SyncSession(rand=lambda: 0.5, pull_limit=1000, bulk_pull_limit=4000)
    s.start(NOW, cursor="c0")
    assert actions(s) == [PullSince("c0", 1000)]
    s.pull_page_received(NOW, PullTooLarge(1000))
    # at once, no backoff, no error: the pages after it are asked for that size too
    assert actions(s) == [PullSince("c0", 500, 500)]
    assert s.snapshot.error is None and s.snapshot.retry_at is None and s.state is CONNECTING
    s.pull_page_received(NOW, PullTooLarge(500))
    assert actions(s) == [PullSince("c0", 250, 250)]
    for n in range(GROW_AFTER_PAGES):  # pages that fit: after a few in a row, it doubles
        s.pull_page_received(NOW + n, PullPage(f"c{n + 1}", has_more=True))
        limit = 250 if n + 1 < GROW_AFTER_PAGES else 500
        assert actions(s) == [PullSince(f"c{n + 1}", limit, limit)]
    s.pull_page_received(NOW + 5, PullTooLarge(500))  # too large again: halved again
    assert actions(s) == [PullSince(f"c{GROW_AFTER_PAGES}", 250, 250)]
    # back to the usual sizes: 250 -> 500 -> 1000 (first page), 2000 (pages after) -> 4000
    cursor, at = "c9", NOW + 10
    for cap in (500, 1000, 2000, 4000):
        for _ in range(GROW_AFTER_PAGES):
            s.pull_page_received(at, PullPage(cursor, has_more=True))
            at += 1
            (pull,) = actions(s)
        assert isinstance(pull, PullSince)
        assert (pull.limit, pull.bulk) == ((1000, None) if cap == 4000 else (min(cap, 1000), cap))
    assert s.snapshot.page_cap is None


def test_a_single_row_over_the_size_cap_fails_with_backoff_and_says_so() -> None:
    s = new_session()
    s.start(NOW, cursor="c0")
    s.commands_to_run()
    for limit in (1000, 500, 250, 125, 62, 31, 15, 7, 3):
        s.pull_page_received(NOW, PullTooLarge(limit))
        (pull,) = actions(s)
        assert isinstance(pull, PullSince) and pull.limit == max(1, limit // 2)
    s.pull_page_received(NOW, PullTooLarge(1))  # one row, and still too large
    (retry,) = actions(s)
    assert retry == ScheduleRetry(retry.at, 1, "row_too_large") and retry.at > NOW
    assert s.state is ERROR and s.snapshot.error == "row_too_large"
    s.tick(retry.at)
    assert actions(s) == [PullSince("c0", 1, 1)]  # it keeps trying, one row at a time
    s.pull_page_received(retry.at, PullTooLarge(1))
    (again,) = actions(s)
    assert isinstance(again, ScheduleRetry) and again.attempt == 2  # the backoff grows
    # a restart (a login) keeps the smaller pages: the row is still there
    s.start(again.at, cursor="c0")
    assert actions(s) == [PullSince("c0", 1, 1)]
    s.pull_page_received(again.at, PullPage("c1", has_more=False))  # the row was made smaller
    assert s.snapshot.error is None and s.state is IDLE


def test_a_page_the_cloud_gave_up_on_is_retried_with_backoff_for_half_the_rows() -> None:
    """PostgreSQL's statement timeout (57014, 8 s on Supabase): the same page asked again
    would time out again, for ever. It is a failure (backoff, said in status), and the retry
    and the pages after it ask for half as many rows; they grow back as pages succeed."""
    timeout = Failure.http(500, body={"code": "57014", "message": "canceling statement"})
    s = SyncSession(rand=lambda: 0.5, pull_limit=1000, bulk_pull_limit=4000)
    s.start(NOW, cursor="c0")
    assert actions(s) == [PullSince("c0", 1000)]
    s.pull_page_received(NOW, PullTooSlow(4000, timeout))  # a bulk page fetched ahead
    (retry,) = actions(s)
    assert retry == ScheduleRetry(retry.at, 1, "57014") and retry.at > NOW
    assert s.state is ERROR and s.snapshot.error == "57014"
    s.tick(retry.at)
    assert actions(s) == [PullSince("c0", 1000, 2000)]
    s.pull_page_received(retry.at, PullTooSlow(1000, timeout))
    (again,) = actions(s)
    assert isinstance(again, ScheduleRetry) and again.attempt == 2  # the backoff grows
    s.tick(again.at)
    assert actions(s) == [PullSince("c0", 500, 500)]
    s.pull_page_received(again.at, PullPage("c1", has_more=False))
    assert s.snapshot.error is None and s.state is IDLE and s.snapshot.page_cap == 500
    # one row timing out cannot be made smaller: it is retried, one row at a time
    assert s.manual_request(again.at + 1, "pull") is None
    assert actions(s) == [PullSince("c1", 500, 500)]
    s.pull_page_received(again.at + 1, PullTooSlow(1, timeout))
    (last,) = actions(s)
    assert isinstance(last, ScheduleRetry) and s.snapshot.page_cap == 1


def test_a_push_batch_the_cloud_gave_up_on_is_retried_with_half_the_rows_then_grows_back() -> None:
    """A statement timeout on sync_push: the same batch would time out again, for ever (the
    outbox never drained). Retried with backoff, for half as many rows; the cap doubles after
    GROW_AFTER_PAGES batches succeed in a row, back to the usual size."""
    timeout = Failure.http(500, body={"code": "57014"})

    def pushes() -> list[int]:
        return [c.limit for c in actions(s) if isinstance(c, PushBatch)]

    s = new_session()
    _pushing(s)
    assert pushes() == [500]
    at = NOW
    for cap in (250, 125):
        s.push_result_received(at, timeout)
        (retry,) = actions(s)
        assert retry == ScheduleRetry(retry.at, retry.attempt, "57014")
        assert s.state is ERROR and s.snapshot.push_cap == cap
        at = retry.at
        s.tick(at)  # the retry pulls first, then pushes
        s.pull_page_received(at, PullPage("c2", has_more=False))
        assert pushes() == [cap]
    sizes = []
    for _ in range(2 * GROW_AFTER_PAGES):
        s.push_result_received(at, PushDone(more=True))
        sizes += pushes()
    assert sizes == [125] * (GROW_AFTER_PAGES - 1) + [250] * GROW_AFTER_PAGES + [500]
    assert s.snapshot.push_cap is None and s.snapshot.error is None
    s.push_result_received(at, Failure.http(503))  # any other failure keeps the size
    assert s.snapshot.push_cap is None


# The periodic pulls of all workspaces fall due together ----------------------------------------


def test_the_next_periodic_pull_is_the_next_phase_after_now() -> None:
    assert next_periodic_pull(1_000.0, 30.0, 0.0) == 1_020.0
    assert next_periodic_pull(1_020.0, 30.0, 0.0) == 1_050.0  # on the phase: a whole interval
    assert next_periodic_pull(1_049.999, 30.0, 0.0) == 1_050.0  # never later than the interval
    assert next_periodic_pull(1_000.0, 30.0, 995.5) == 1_025.5
    assert next_periodic_pull(990.0, 30.0, 995.5) == 995.5  # a phase in the future
    # (float rounding at the boundary: strictly after now, whatever the phase's digits)
    phase = 1_763_880_000.123
    due = next_periodic_pull(phase + 3 * 30.0, 30.0, phase)
    assert phase + 3 * 30.0 < due <= phase + 4 * 30.0 + 1e-6


@pytest.mark.parametrize("interval", [0.0, -30.0, float("nan"), float("inf")])
def test_a_pull_interval_that_is_no_positive_number_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="pull interval"):
        next_periodic_pull(NOW, interval, 0.0)
    with pytest.raises(ValueError, match="pull interval"):
        SyncSession(pull_interval_s=interval)


def test_workspaces_sharing_a_phase_pull_together_however_their_pulls_ended() -> None:
    """Ten sessions whose pulls ended at different times (a start each, a catch-up, a
    retry...) all fall due at the same instant, and stay together: one wakeup serves all."""
    sessions = [SyncSession(rand=lambda: 0.5, pull_phase=NOW) for _ in range(10)]
    for i, s in enumerate(sessions):
        s.start(NOW + i * 2.7, cursor="c0")
        s.pull_page_received(NOW + i * 2.7 + 0.3, PullPage("c1", has_more=False))
    assert {s.deadline for s in sessions} == {NOW + 30}
    for round_at in (NOW + 30, NOW + 60, NOW + 90):
        for i, s in enumerate(sessions):
            s.commands_to_run()
            s.tick(round_at)
            assert actions(s) == [PullSince("c1", 1000)]
            s.pull_page_received(round_at + 0.05 * i, PullPage(None, has_more=False))
        assert {s.deadline for s in sessions} == {round_at + 30}  # every 30 s, all at once


def test_a_pull_off_the_phase_is_followed_at_the_next_phase_never_later() -> None:
    s = SyncSession(rand=lambda: 0.5, pull_phase=NOW)
    s.start(NOW + 12, cursor="c0")
    s.commands_to_run()
    s.pull_page_received(NOW + 12.5, PullPage("c1", has_more=False))
    assert s.deadline == NOW + 30  # 17.5 s later, not 30 s: back on the shared phase
    s.connectivity_changed(NOW + 40, online=True)  # a realtime rejoin: catch-up pull now
    assert actions(s) == [PullSince("c1", 1000)]
    s.pull_page_received(NOW + 40.2, PullPage(None, has_more=False))
    assert s.deadline == NOW + 60


# One backoff for every workspace while the cloud is out of reach -------------------------------


def new_reach() -> CloudReach:
    return CloudReach(Backoff(base_s=1.0, cap_s=8.0), rand=lambda: 0.5)


def test_an_outage_begins_once_and_one_workspace_probes_at_a_time() -> None:
    reach = new_reach()
    assert not reach.down and reach.claim(NOW, "a")  # no outage: anyone may go
    assert reach.unreachable(NOW, "a", "connect")  # begins: said once
    assert not reach.unreachable(NOW, "b", "connect")  # b's request was already under way
    assert not reach.unreachable(NOW, "c", "reset")
    assert reach.down and reach.next_probe() == NOW + 0.5  # rand * base
    assert not reach.claim(NOW + 0.4, "b")  # not yet
    assert reach.claim(NOW + 0.5, "b")  # b probes...
    assert not reach.claim(NOW + 0.5, "a") and not reach.claim(NOW + 9, "c")  # ...alone
    assert reach.next_probe() is None and reach.prober == "b"


def test_each_failed_probe_waits_longer_up_to_the_cap_and_an_answer_ends_the_outage() -> None:
    reach = new_reach()
    reach.unreachable(NOW, "a", "connect")
    at = NOW
    for expected in (1.0, 2.0, 4.0, 4.0):  # rand 0.5 * min(8, 1 * 2**attempt)
        at = reach.next_probe() or 0.0
        assert reach.claim(at, "a")
        assert not reach.unreachable(at + 0.1, "a", "connect")
        assert reach.next_probe() == at + 0.1 + expected
    assert reach.reached(at + 20) == at + 20 - NOW  # how long it lasted
    assert not reach.down and reach.reached(at + 21) is None
    assert reach.unreachable(at + 30, "a", "connect")  # a new outage: said again


def test_a_probe_that_got_no_word_or_stopped_hands_the_next_probe_on() -> None:
    reach = new_reach()
    reach.unreachable(NOW, "a", "connect")
    assert reach.claim(NOW + 1, "a")
    reach.release(NOW + 2, "b")  # not the prober: nothing changes
    assert reach.prober == "a"
    reach.release(NOW + 2, "a")  # a timeout, a logout, a close
    assert reach.prober is None and reach.next_probe() == NOW + 3  # backoff of attempt 1
    assert reach.claim(NOW + 3, "b")


def test_only_a_cloud_out_of_reach_begins_an_outage() -> None:
    reach = new_reach()
    with pytest.raises(ValueError, match="out of reach"):
        reach.unreachable(NOW, "a", "timeout")
    assert not reach.down
