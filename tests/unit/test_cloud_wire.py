"""daemon/sync/cloud/wire.py: the refresh schedule, GoTrue token responses, the base URL."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sync.cloud.wire import (
    CloudUser,
    is_expired,
    normalize_cloud_url,
    parse_token_response,
    refresh_at,
)

NOW = 1_795_242_209.0

# supabase-wire.md §2.2, trimmed to what matters plus a few of the fields we ignore.
TOKEN_RESPONSE: dict[str, Any] = {
    "access_token": "eyJhbGciOiJIUzI1NiJ9.e30.sig",
    "token_type": "bearer",
    "expires_in": 3600,
    "expires_at": 1795245809,
    "refresh_token": "hc7ltq4ppoyi",
    "user": {
        "id": "8d0fd2b3-9ca2-4f0f-8a5b-2d3f4e5a6b7c",
        "aud": "authenticated",
        "role": "authenticated",
        "email": "a@b.co",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "identities": [],
        "created_at": "2026-08-21T10:00:00.000000Z",
        "is_anonymous": False,
    },
}


@pytest.mark.parametrize(
    ("expires_at", "margin", "floor", "expected"),
    [
        (NOW + 3600, 60, 10, NOW + 3540),  # an hour-long token: a minute before expiry
        (NOW + 70, 60, 10, NOW + 10),  # exactly at the floor
        (NOW + 65, 60, 10, NOW + 10),  # would be 5 s from now: never sooner than 10 s
        (NOW + 2, 60, 10, NOW + 10),  # a very short token: still 10 s (access_token covers it)
        (NOW - 100, 60, 10, NOW + 10),  # already expired when it arrived (clock skew)
        (NOW + 4, 3, 0.5, NOW + 1),  # the knobs the integration tests turn
        (NOW + 4, 3, 2, NOW + 2),
    ],
)
def test_refresh_at(expires_at: float, margin: float, floor: float, expected: float) -> None:
    assert refresh_at(expires_at, now=NOW, margin_s=margin, floor_s=floor) == pytest.approx(
        expected
    )


def test_refresh_at_defaults_are_60_and_10_seconds() -> None:
    assert refresh_at(NOW + 3600, now=NOW) == NOW + 3540
    assert refresh_at(NOW + 30, now=NOW) == NOW + 10


def test_is_expired_counts_the_skew() -> None:
    assert not is_expired(NOW + 11, now=NOW, skew_s=10)
    assert is_expired(NOW + 10, now=NOW, skew_s=10)
    assert is_expired(NOW - 1, now=NOW, skew_s=0)


def test_parse_token_response() -> None:
    grant = parse_token_response(TOKEN_RESPONSE, now=NOW)
    assert grant.access_token == TOKEN_RESPONSE["access_token"]
    assert grant.refresh_token == "hc7ltq4ppoyi"
    assert grant.expires_at == NOW + 3600
    assert grant.user == CloudUser("8d0fd2b3-9ca2-4f0f-8a5b-2d3f4e5a6b7c", "a@b.co")
    assert "hc7ltq4ppoyi" not in repr(grant) and "eyJ" not in repr(grant)


def test_a_missing_expires_at_is_now_plus_expires_in() -> None:
    body = {k: v for k, v in TOKEN_RESPONSE.items() if k != "expires_at"}
    assert parse_token_response(body, now=NOW).expires_at == NOW + 3600


@pytest.mark.parametrize("skew_s", [-7200.0, -30.0, 0.0, 7200.0])
def test_the_expiry_is_counted_on_the_devices_clock(skew_s: float) -> None:
    """GoTrue's ``expires_at`` is the cloud's clock: a device hours off would take a fresh
    token for expired (and refresh at every request) or refresh it too late."""
    device_now = NOW + skew_s  # the cloud minted it at NOW (its clock): expires_at NOW + 3600
    grant = parse_token_response(TOKEN_RESPONSE, now=device_now)
    assert grant.expires_at == device_now + 3600


def test_without_expires_in_the_clouds_expires_at_is_used() -> None:
    body = {k: v for k, v in TOKEN_RESPONSE.items() if k != "expires_in"}
    assert parse_token_response(body, now=NOW + 7200).expires_at == 1795245809.0


def test_a_user_without_email() -> None:
    body = {**TOKEN_RESPONSE, "user": {"id": "u1", "email": ""}}
    assert parse_token_response(body, now=NOW).user == CloudUser("u1", None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"access_token": None}, "access_token"),
        ({"refresh_token": ""}, "refresh_token"),
        ({"user": "someone"}, "user"),
        ({"user": {"email": "a@b.co"}}, "id"),
        ({"expires_at": None, "expires_in": 0}, "expires_in"),
        ({"expires_at": True, "expires_in": "3600"}, "expires_in"),
        ({"expires_at": float("nan"), "expires_in": None}, "expires_in"),
    ],
)
def test_malformed_token_responses_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_token_response({**TOKEN_RESPONSE, **change}, now=NOW)
    assert str(caught.value) == field


def test_a_token_response_must_be_an_object() -> None:
    with pytest.raises(ValueError):
        parse_token_response(["not", "an", "object"], now=NOW)


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("http://127.0.0.1:54321", "http://127.0.0.1:54321"),
        (" https://abc.supabase.co/ ", "https://abc.supabase.co"),
        ("http://host/base//", "http://host/base"),
    ],
)
def test_normalize_cloud_url(url: str, normal: str) -> None:
    assert normalize_cloud_url(url) == normal


@pytest.mark.parametrize(
    "url", ["", "127.0.0.1:54321", "ftp://host", "http://", "http://h/?a=1", "http://h/#x"]
)
def test_bad_cloud_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        normalize_cloud_url(url)
