"""The status snapshot (daemon/sync/status.py) and how cloud errors reach JSON-RPC clients
(ui_bridge/dispatch.py). Pure: no I/O."""

from __future__ import annotations

from daemon.sync.cloud.errors import (
    AuthRequired,
    CloudProtocolError,
    CloudRejected,
    CloudUnavailable,
    error_from_failure,
)
from daemon.sync.local import CloudNotConfigured
from daemon.sync.retry import Failure
from daemon.sync.status import SyncStatus, WorkspaceStatus, iso, overall_state
from ui_bridge.dispatch import map_error
from ui_bridge.jsonrpc import ErrorCode


def test_the_overall_state_is_the_most_pressing_one() -> None:
    assert overall_state(["idle", "error", "pulling"], active=True, auth_required=False) == "error"
    assert overall_state(["idle", "pushing"], active=True, auth_required=False) == "pushing"
    assert overall_state(["idle"], active=True, auth_required=True) == "auth_required"
    assert overall_state(["pulling"], active=False, auth_required=False) == "offline"
    assert overall_state([], active=True, auth_required=False) == "idle"


def test_the_snapshot_json() -> None:
    status = SyncStatus.build(
        [
            WorkspaceStatus(
                "b", "pulling", last_pull_at=10.0, progress={"rows": 5, "pages": 1, "total": 9}
            ),
            WorkspaceStatus("a", "error", error="connect", last_push_at=20.5),
        ],
        configured=True,
        active=True,
        auth_required=False,
        counts={"outbox": 3, "rejected": 1, "conflicts": 0},
    )
    data = status.to_json()
    assert (data["state"], data["outbox"], data["rejected"], data["last_error"]) == (
        "error",
        3,
        1,
        "connect",
    )
    assert data["last_pull_at"] == "1970-01-01T00:00:10.000Z" == iso(10.0)
    assert data["last_push_at"] == "1970-01-01T00:00:20.500Z"
    assert data["progress"] == {"workspaces": ["b"], "rows": 5, "pages": 1, "total": 9}
    assert [w["workspace_id"] for w in data["workspaces"]] == ["a", "b"]


def test_the_progress_of_several_pulls_is_summed_and_has_a_total_once_all_have_one() -> None:
    def summed(*totals: int | None) -> object:
        pulls = [
            WorkspaceStatus(f"w{i}", "pulling", progress={"rows": 10, "pages": 2, "total": t})
            for i, t in enumerate(totals)
        ]
        pulls.append(WorkspaceStatus("idle", "idle"))  # not pulling: not in the sum
        build = SyncStatus.build(
            pulls, configured=True, active=True, auth_required=False, counts={}
        )
        return build.to_json()["progress"]

    assert summed(40, 25) == {"workspaces": ["w0", "w1"], "rows": 20, "pages": 4, "total": 65}
    assert summed(40, None) == {"workspaces": ["w0", "w1"], "rows": 20, "pages": 4, "total": None}


def test_cloud_errors_map_to_the_documented_codes() -> None:
    not_configured = map_error(CloudNotConfigured())
    assert not_configured is not None and not_configured.code == ErrorCode.CLOUD_NOT_CONFIGURED
    login = map_error(AuthRequired("sync.push", "logged_out"))
    assert login is not None and login.code == ErrorCode.LOGIN_REQUIRED
    assert login.data == {"reason": "logged_out", "operation": "sync.push"}
    refused = map_error(CloudRejected("auth.login", "invalid_credentials", status=400))
    assert refused is not None and refused.code == ErrorCode.LOGIN_REQUIRED
    limited = error_from_failure(
        Failure.http(429, {"Retry-After": "7"}, {"code": "over_request_rate_limit"}),
        operation="rest.push",
        now=0.0,
    )
    assert isinstance(limited, CloudUnavailable)
    rate = map_error(limited)
    assert rate is not None and rate.code == ErrorCode.RATE_LIMITED
    assert rate.data["retry_after_s"] == 7.0
    down = map_error(CloudUnavailable("rest.pull", "connect"))
    assert down is not None and down.code == ErrorCode.INTERNAL_ERROR
    assert down.data["retryable"] is True and down.message == "Cloud unavailable"
    policy = map_error(CloudRejected("cloud.link", "forbidden", status=403))
    assert policy is not None and policy.code == ErrorCode.REJECTED_BY_POLICY
    broken = map_error(CloudProtocolError("rest.pull", "not_json"))
    assert broken is not None and broken.code == ErrorCode.INTERNAL_ERROR
