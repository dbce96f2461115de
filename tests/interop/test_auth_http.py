"""devcloud's /auth/v1 on the wire: GoTrue's error shapes (versioned and legacy), the gateway's
API-key check, bad input, token expiry, logout scopes, settings, health and CORS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from devcloud.auth import auth_of
from devcloud.server import RunningDevcloud
from tests.helpers import MS

VERSIONED = {"X-Supabase-Api-Version": "2024-01-01"}


@pytest.fixture
async def http(devcloud: RunningDevcloud) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"apikey": devcloud.anon_key}
    async with httpx.AsyncClient(base_url=f"{devcloud.url}/auth/v1", headers=headers) as client:
        yield client


async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> dict:
    response = await http.post(
        "/token?grant_type=password", json={"email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_versioned_errors_carry_code_message_and_echo_the_version(
    devcloud: RunningDevcloud, http: httpx.AsyncClient
):
    response = await http.post(
        "/token?grant_type=password",
        json={"email": "nobody@example.com", "password": "whatever"},
        headers=VERSIONED,
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_credentials",
        "message": "Invalid login credentials",
    }
    assert response.headers["X-Supabase-Api-Version"] == "2024-01-01"
    assert response.headers["x-sb-error-code"] == "invalid_credentials"


async def test_legacy_errors_without_the_version_header(http: httpx.AsyncClient):
    response = await http.post(
        "/token?grant_type=password", json={"email": "nobody@example.com", "password": "whatever"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error_code": "invalid_credentials",
        "msg": "Invalid login credentials",
    }
    assert "X-Supabase-Api-Version" not in response.headers


async def test_the_gateway_requires_an_api_key(devcloud: RunningDevcloud):
    async with httpx.AsyncClient(base_url=f"{devcloud.url}/auth/v1") as client:
        missing = await client.get("/settings")
        forged = await client.get("/settings", headers={"apikey": "not-a-jwt"})
    assert missing.status_code == forged.status_code == 401
    assert missing.json() == {"message": "No API key found in request"}


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/token?grant_type=password", b"{not json", 400, "bad_json"),
        ("/token?grant_type=password", b"[1, 2]", 400, "bad_json"),
        ("/token?grant_type=password", b"{}", 400, "validation_failed"),
        ("/token?grant_type=magic", b"{}", 400, "invalid_credentials"),
        (
            "/token?grant_type=refresh_token",
            b'{"refresh_token": "short"}',
            400,
            "validation_failed",
        ),
        (
            "/token?grant_type=refresh_token",
            b'{"refresh_token": "ABCDEFGHIJKL"}',
            400,
            "validation_failed",
        ),
        (
            "/token?grant_type=refresh_token",
            b'{"refresh_token": "abcdefghijkl"}',
            400,
            "refresh_token_not_found",
        ),
        (
            "/signup",
            b'{"email": "bad-address", "password": "long-enough"}',
            400,
            "validation_failed",
        ),
        ("/signup", b'{"email": "a@example.com"}', 400, "validation_failed"),
        ("/signup", b"{}", 422, "anonymous_provider_disabled"),
    ],
)
async def test_bad_input_is_refused_with_gotrue_codes(
    http: httpx.AsyncClient, path: str, body: bytes, status: int, code: str
):
    response = await http.post(path, content=body, headers=VERSIONED)
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_bad_input_changes_nothing(devcloud: RunningDevcloud, http: httpx.AsyncClient):
    await http.post("/signup", json={"email": "weak@example.com", "password": "abc"})
    async with devcloud.ctx.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM auth.users") == 0


async def test_user_endpoint_requires_a_valid_user_token(
    devcloud: RunningDevcloud, http: httpx.AsyncClient
):
    no_bearer = await http.get("/user", headers=VERSIONED)
    assert (no_bearer.status_code, no_bearer.json()["code"]) == (401, "no_authorization")
    anon = await http.get(
        "/user", headers={**VERSIONED, "Authorization": f"Bearer {devcloud.anon_key}"}
    )
    assert anon.status_code == 403
    assert anon.json() == {"code": "bad_jwt", "message": "invalid claim: missing sub claim"}


async def test_expired_access_tokens_are_bad_jwt(
    devcloud: RunningDevcloud, http: httpx.AsyncClient
):
    await devcloud.create_user("old@example.com", "s3cret-pw")
    session = await sign_in(http, "old@example.com", "s3cret-pw")
    auth = auth_of(devcloud.ctx)
    auth.clock = lambda: time.time() + devcloud.ctx.config.jwt_expiry + 1
    response = await http.get(
        "/user", headers={**VERSIONED, "Authorization": f"Bearer {session['access_token']}"}
    )
    assert response.status_code == 403 and response.json()["code"] == "bad_jwt"
    assert response.json()["message"].endswith("token has invalid claims: token is expired")


async def test_logout_scopes(devcloud: RunningDevcloud, http: httpx.AsyncClient):
    await devcloud.create_user("pat@example.com", "s3cret-pw")
    a = await sign_in(http, "pat@example.com", "s3cret-pw")
    b = await sign_in(http, "pat@example.com", "s3cret-pw")
    bearer = {"Authorization": f"Bearer {a['access_token']}"}

    unknown = await http.post("/logout?scope=everyone", headers={**bearer, **VERSIONED})
    assert unknown.status_code == 400 and unknown.json()["code"] == "validation_failed"

    local = await http.post("/logout?scope=local", headers=bearer)
    assert local.status_code == 204 and local.content == b""
    assert (await http.get("/user", headers=bearer)).status_code == 403  # session_not_found
    b_user = await http.get("/user", headers={"Authorization": f"Bearer {b['access_token']}"})
    assert b_user.status_code == 200 and b_user.json()["email"] == "pat@example.com"


async def test_signup_response_is_a_full_session(http: httpx.AsyncClient):
    response = await http.post(
        "/signup", json={"email": "new@example.com", "password": "s3cret-pw", "data": {}}
    )
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user",
    ]  # fmt: skip
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    identity = body["user"]["identities"][0]
    assert identity["identity_data"]["email"] == "new@example.com"
    assert body["user"]["created_at"].endswith("Z")


async def test_settings_and_health(http: httpx.AsyncClient):
    settings = await http.get("/settings")
    assert settings.status_code == 200 and settings.json()["mailer_autoconfirm"] is True
    health = await http.get("/health")
    assert health.status_code == 200 and health.json()["name"] == "GoTrue"
    jwks = await http.get("/.well-known/jwks.json")
    assert jwks.status_code == 200 and jwks.json() == {"keys": []}


async def test_cors_preflight_answers_like_the_supabase_gateway(devcloud: RunningDevcloud):
    requested = "authorization,x-client-info,apikey,content-type,x-supabase-api-version"
    async with httpx.AsyncClient() as client:
        response = await client.options(
            f"{devcloud.url}/auth/v1/token",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": requested,
            },
        )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert set(requested.split(",")) <= allowed


async def test_small_responses_are_not_held_back_by_nagle(http: httpx.AsyncClient):
    """uvicorn writes headers and body separately; without TCP_NODELAY on the accepted
    connection every response waited for the client's delayed ACK (~40 ms)."""
    await http.get("/health")  # connect first
    durations = []
    for _ in range(21):
        started = time.perf_counter()
        assert (await http.get("/health")).status_code == 200
        durations.append(time.perf_counter() - started)
    assert sorted(durations)[10] < 20 * MS  # the median; ~1 ms when healthy
