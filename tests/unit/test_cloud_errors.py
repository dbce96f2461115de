"""Translating cloud failures into the daemon's errors, from answers recorded in
supabase-wire.md §2.5 (GoTrue) and §3.7 (PostgREST); and naming transport errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from daemon.errors import DaemonError
from daemon.sync.cloud.errors import (
    AuthRequired,
    CloudError,
    CloudRejected,
    CloudUnavailable,
    error_from_failure,
)
from daemon.sync.cloud.http import transport_kind
from daemon.sync.retry import BadData, Failure, Fatal, ReAuth, Retry, classify

NOW = 1_795_000_000.0
V2 = {"X-Supabase-Api-Version": "2024-01-01"}


def gotrue(status: int, code: str, message: str) -> Failure:
    headers = {**V2, "x-sb-error-code": code}
    return Failure.http(status, headers, f'{{"code":"{code}","message":"{message}"}}')


def postgrest(status: int, body: str, headers: dict[str, str] | None = None) -> Failure:
    return Failure.http(status, headers or {}, body)


CASES: list[tuple[Failure, type[CloudError], str, Any]] = [
    # GoTrue /token (§2.5)
    (
        gotrue(400, "invalid_credentials", "Invalid login credentials"),
        CloudRejected,
        "invalid_credentials",
        Fatal("invalid_credentials", 400),
    ),
    (
        gotrue(400, "email_not_confirmed", "Email not confirmed"),
        CloudRejected,
        "email_not_confirmed",
        Fatal("email_not_confirmed", 400),
    ),
    (
        gotrue(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"),
        AuthRequired,
        "auth_required",
        Fatal("auth_required", 400),
    ),
    (
        gotrue(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"),
        AuthRequired,
        "auth_required",
        Fatal("auth_required", 400),
    ),
    (
        gotrue(400, "session_not_found", "Invalid Refresh Token: No Valid Session Found"),
        AuthRequired,
        "auth_required",
        Fatal("auth_required", 400),
    ),
    (
        gotrue(400, "validation_failed", "Refresh token is not valid"),
        CloudRejected,
        "validation_failed",
        Fatal("validation_failed", 400),
    ),
    (
        # before late 2024: the OAuth shape, no version header
        Failure.http(
            400,
            {},
            '{"error":"invalid_grant","error_description":"Invalid Refresh Token: Already Used"}',
        ),
        AuthRequired,
        "auth_required",
        Fatal("auth_required", 400),
    ),
    (
        # legacy (no version header) shape: code is the status, error_code the code
        Failure.http(
            400,
            {},
            '{"code":400,"error_code":"invalid_credentials","msg":"Invalid login credentials"}',
        ),
        CloudRejected,
        "invalid_credentials",
        Fatal("invalid_credentials", 400),
    ),
    (
        gotrue(409, "conflict", "Too many concurrent token refresh requests"),
        CloudUnavailable,
        "conflict",
        Retry(None, "conflict"),
    ),
    (
        Failure.http(
            429,
            {**V2, "Retry-After": "7"},
            '{"code":"over_request_rate_limit","message":"Request rate limit reached"}',
        ),
        CloudUnavailable,
        "over_request_rate_limit",
        Retry(7.0, "over_request_rate_limit"),
    ),
    (
        gotrue(403, "bad_jwt", "invalid JWT: unable to parse or verify signature"),
        AuthRequired,
        "token_rejected",
        ReAuth(),
    ),
    (
        gotrue(500, "unexpected_failure", "Unexpected failure"),
        CloudUnavailable,
        "unexpected_failure",
        Retry(None, "unexpected_failure"),
    ),
    # PostgREST (§3.7)
    (
        postgrest(
            401,
            '{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}',
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ),
        AuthRequired,
        "token_rejected",
        ReAuth(),
    ),
    (
        postgrest(401, '{"code":"PGRST301","details":null,"hint":null,"message":"JWT expired"}'),
        AuthRequired,
        "token_rejected",
        ReAuth(),
    ),
    (
        postgrest(
            409,
            '{"code":"23505","details":"Key (id)=(1) already exists.","hint":null,'
            '"message":"duplicate key value violates unique constraint \\"todos_pkey\\""}',
        ),
        CloudRejected,
        "23505",
        BadData("23505", 409),  # a value the request carries (a push is split)
    ),
    (
        postgrest(
            403,
            '{"code":"42501","details":null,"hint":null,'
            '"message":"new row violates row-level security policy for table \\"t\\""}',
        ),
        CloudRejected,
        "42501",
        Fatal("42501", 403),
    ),
    (
        postgrest(
            404,
            '{"code":"PGRST202","details":null,"hint":null,"message":"No function"}',
        ),
        CloudRejected,
        "PGRST202",
        Fatal("PGRST202", 404),
    ),
    (
        postgrest(503, '{"code":"PGRST000","details":null,"hint":null,"message":"db down"}'),
        CloudUnavailable,
        "PGRST000",
        Retry(None, "PGRST000"),
    ),
    (
        # a proxy's HTML page: no JSON, so the status names the reason
        postgrest(502, "<html><body>Bad gateway</body></html>"),
        CloudUnavailable,
        "http_502",
        Retry(None, "http_502"),
    ),
    (Failure.network("connect"), CloudUnavailable, "connect", Retry(None, "connect")),
    (Failure.network("timeout"), CloudUnavailable, "timeout", Retry(None, "timeout")),
]


@pytest.mark.parametrize(("failure", "kind", "reason", "decision"), CASES)
def test_failures_become_daemon_errors(
    failure: Failure, kind: type[CloudError], reason: str, decision: Any
) -> None:
    error = error_from_failure(failure, operation="rest.push", now=NOW)
    assert type(error) is kind
    assert isinstance(error, DaemonError)
    assert error.reason == reason
    assert error.failure is failure and error.status == failure.status
    assert error.decision == decision == classify(failure, now=NOW)
    assert error.retryable is (kind is CloudUnavailable)
    assert str(error).startswith(f"rest.push failed: {reason}")
    # no server text reaches the message: only the operation, the code and the status
    for text in ("Invalid", "Key (id)", "row-level", "html", "JWT expired", "Too many"):
        assert text not in str(error)


def test_a_token_rejected_again_after_a_refresh_is_retried_not_a_logout() -> None:
    """GoTrue just granted the session: a data API refusing the fresh token (a gateway, keys
    or clocks out of step) is transient (was: AuthRequired, the user had to log in again)."""
    body = '{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}'
    error = error_from_failure(Failure.http(401, {}, body, reauthed=True), operation="x", now=NOW)
    assert type(error) is CloudUnavailable and error.reason == "token_rejected"
    assert error.retryable and error.decision == Retry(None, "token_rejected")


def test_retry_after_is_carried() -> None:
    failure = Failure.http(503, {"Retry-After": "12"}, None)
    error = error_from_failure(failure, operation="rest.pull", now=NOW)
    assert isinstance(error, CloudUnavailable) and error.retry_after_s == 12.0
    assert str(error) == "rest.pull failed: http_503 [HTTP 503]"


def test_messages_explain_the_common_reasons() -> None:
    error = error_from_failure(
        gotrue(400, "invalid_credentials", "Invalid login credentials"),
        operation="auth.login",
        now=NOW,
    )
    assert str(error) == (
        "auth.login failed: invalid_credentials (invalid e-mail or password) [HTTP 400]"
    )


REQUEST = httpx.Request("POST", "http://127.0.0.1:1/rest/v1/rpc/sync_push")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused", request=REQUEST), "connect"),
        (httpx.ConnectTimeout("slow", request=REQUEST), "connect"),
        (httpx.ReadTimeout("slow", request=REQUEST), "timeout"),
        (httpx.PoolTimeout("busy", request=REQUEST), "timeout"),
        (httpx.RemoteProtocolError("Server disconnected", request=REQUEST), "reset"),
        (httpx.ReadError("reset by peer", request=REQUEST), "reset"),
        (httpx.ProxyError("proxy", request=REQUEST), "reset"),
    ],
)
def test_transport_kinds(exc: httpx.TransportError, kind: str) -> None:
    assert transport_kind(exc) == kind
