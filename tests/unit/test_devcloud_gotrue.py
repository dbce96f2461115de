"""GoTrue's pure rules: error shapes, passwords, token formats, rotation decisions, JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devcloud._gotrue import (
    AuthError,
    Identity,
    RefreshOutcome,
    TokenState,
    User,
    access_token_claims,
    check_password,
    check_refresh_token_format,
    check_signup_input,
    decide_refresh,
    error_payload,
    hash_password,
    logout_scope,
    new_refresh_token,
    requested_api_version,
    token_response,
    user_json,
)

T0 = datetime(2026, 8, 21, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2024-01-01", "2024-01-01"),
        ("2025-06-30", "2024-01-01"),
        ("2023-12-31", None),
        ("2024-13-01", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_requested_api_version(header, expected):
    assert requested_api_version(header) == expected


def test_error_payload_versioned_and_legacy():
    err = AuthError(422, "weak_password", "too short", {"weak_password": {"reasons": ["length"]}})
    body, headers = error_payload(err, "2024-01-01")
    assert body == {
        "code": "weak_password",
        "message": "too short",
        "weak_password": {"reasons": ["length"]},
    }
    assert headers == {"X-Supabase-Api-Version": "2024-01-01", "x-sb-error-code": "weak_password"}
    legacy, legacy_headers = error_payload(AuthError(400, "bad_json", "nope"), None)
    assert legacy == {"code": 400, "error_code": "bad_json", "msg": "nope"} and not legacy_headers
    server_error, _ = error_payload(AuthError(500, "unexpected_failure", "boom"), None)
    assert "error_id" in server_error


def test_password_hashes_are_salted_and_verify():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert check_password("correct horse", first) and check_password("correct horse", second)
    assert not check_password("correct horsf", first)


@pytest.mark.parametrize(
    "stored", [None, "", "plain", "scrypt$3$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA", "md5$x"]
)
def test_malformed_password_hashes_never_match(stored):
    assert not check_password("anything", stored)


def test_refresh_token_format():
    token = new_refresh_token()
    assert len(token) == 12 and token.isalnum() and token == token.lower()
    assert check_refresh_token_format(token) == token
    assert check_refresh_token_format("a-longer-v2-style-token") == "a-longer-v2-style-token"
    for bad in ("", None, "short", "ABCDEFGHIJKL", "abc-efghijkl"):
        with pytest.raises(AuthError) as caught:
            check_refresh_token_format(bad)
        assert caught.value.code == "validation_failed"


@pytest.mark.parametrize(
    ("email", "password", "code"),
    [
        ("", "long-enough", "validation_failed"),
        ("not-an-address", "long-enough", "validation_failed"),
        ("a@example.com", None, "validation_failed"),
        ("a@example.com", "", "validation_failed"),
        ("a@example.com", "12345", "weak_password"),
    ],
)
def test_signup_input_errors(email, password, code):
    with pytest.raises(AuthError) as caught:
        check_signup_input(email, password)
    assert caught.value.code == code


def test_logout_scope():
    assert [logout_scope(s) for s in (None, "", "global", "local", "others")] == [
        "global", "global", "global", "local", "others",
    ]  # fmt: skip
    with pytest.raises(AuthError, match='Unsupported logout scope "all"'):
        logout_scope("all")


def token(name: str, *, revoked: bool, at: float, parent: str | None = None) -> TokenState:
    return TokenState(token=name, revoked=revoked, updated_at=at, parent=parent)


@pytest.mark.parametrize(
    ("presented", "active", "now", "outcome"),
    [
        # a live token rotates
        (token("r2", revoked=False, at=0), None, 1000.0, RefreshOutcome.ISSUE_CHILD),
        # the parent of the active token: the active pair again, even much later
        (token("r1", revoked=True, at=0), token("r2", revoked=False, at=0, parent="r1"),
         1000.0, RefreshOutcome.RETURN_ACTIVE),
        # an older revoked token inside the 10 s window is still accepted
        (token("r0", revoked=True, at=100), token("r2", revoked=False, at=0, parent="r1"),
         110.0, RefreshOutcome.ISSUE_CHILD),
        # ... and refused one moment after it
        (token("r0", revoked=True, at=100), token("r2", revoked=False, at=0, parent="r1"),
         110.001, RefreshOutcome.REJECT),
        # a revoked family (no active token) outside the window
        (token("r2", revoked=True, at=100), None, 200.0, RefreshOutcome.REJECT),
    ],
)  # fmt: skip
def test_decide_refresh(presented, active, now, outcome):
    assert decide_refresh(presented, active, now=now, reuse_interval=10.0) is outcome


def make_user() -> User:
    identity = Identity(
        id="11111111-2222-4333-8444-555555555555",
        user_id="u1",
        provider="email",
        provider_id="u1",
        identity_data={"sub": "u1"},
        email="a@b.co",
        last_sign_in_at=None,
        created_at=T0,
        updated_at=T0,
    )
    return User(
        id="u1",
        aud="authenticated",
        role="authenticated",
        email="a@b.co",
        phone=None,
        email_confirmed_at=T0,
        confirmed_at=T0,
        last_sign_in_at=None,
        app_metadata={"provider": "email", "providers": ["email"]},
        user_metadata={"sub": "u1"},
        is_anonymous=False,
        banned_until=None,
        created_at=T0,
        updated_at=T0,
        identities=(identity,),
    )


def test_user_json_matches_gotrue():
    body = user_json(make_user())
    assert body["email_confirmed_at"] == "2026-08-21T10:00:00.000000Z"
    assert body["phone"] == "" and "last_sign_in_at" not in body  # omitted when never
    identity = body["identities"][0]
    assert identity["identity_id"] == "11111111-2222-4333-8444-555555555555"
    assert identity["id"] == identity["user_id"] == "u1"
    assert identity["identity_data"] == {"sub": "u1"}


def test_claims_and_token_response():
    user = make_user()
    claims = access_token_claims(
        user, session_id="s1", issuer="http://x/auth/v1", now=1000, expiry=60,
        amr=[{"method": "password", "timestamp": 990}],
    )  # fmt: skip
    assert (claims["iat"], claims["exp"], claims["session_id"]) == (1000, 1060, "s1")
    assert claims["aud"] == "authenticated"  # a string, not a list
    response = token_response(access_token="jwt", refresh_token="r", claims=claims, user=user)
    assert (response["expires_in"], response["expires_at"]) == (60, 1060)
    assert response["user"]["id"] == "u1"


def test_banned_until_the_given_time():
    user = make_user()
    banned = User(**{**user.__dict__, "banned_until": datetime(2030, 1, 1, tzinfo=UTC)})
    assert banned.is_banned(T0.timestamp()) and not user.is_banned(T0.timestamp())
    assert not banned.is_banned(datetime(2031, 1, 1, tzinfo=UTC).timestamp())
