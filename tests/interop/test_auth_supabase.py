"""The official supabase-py client against devcloud's /auth/v1: sign up, sign in, refresh,
get_user, update_user, sign out, and refresh-token reuse detection."""

from __future__ import annotations

import asyncio
import time

import pytest
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError
from supabase_auth.types import Session

from devcloud.auth import auth_of
from devcloud.keys import verify
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for


async def client_for(dc: RunningDevcloud, *, auto_refresh: bool = False) -> AsyncClient:
    options = AsyncClientOptions(auto_refresh_token=auto_refresh)
    return await acreate_client(dc.url, dc.anon_key, options)


async def sign_in(client: AsyncClient, email: str, password: str = "s3cret-pw") -> Session:
    """Sign in with a password; the session (which supabase-py types as optional)."""
    session = (
        await client.auth.sign_in_with_password({"email": email, "password": password})
    ).session
    assert session is not None
    return session


async def test_sign_up_returns_a_session_and_get_user_finds_the_user(devcloud: RunningDevcloud):
    client = await client_for(devcloud)
    response = await client.auth.sign_up(
        {
            "email": "Ada@Example.com",
            "password": "correct horse",
            "options": {"data": {"n": 1, "display_name": "Ada"}},
        }
    )
    assert response.session is not None and response.user is not None
    assert response.user.email == "ada@example.com"
    assert response.user.user_metadata["n"] == 1
    assert response.user.identities and response.user.identities[0].provider == "email"

    fetched = await client.auth.get_user()
    assert fetched is not None and fetched.user.id == response.user.id
    assert fetched.user.email_confirmed_at is not None  # devcloud autoconfirms
    async with devcloud.ctx.pool.acquire() as conn:  # the project's trigger saw the metadata
        profile = await conn.fetchrow(
            "SELECT email, display_name FROM public.profiles WHERE id = $1", response.user.id
        )
    assert dict(profile) == {"email": "ada@example.com", "display_name": "Ada"}


async def test_sign_in_issues_gotrue_claims(devcloud: RunningDevcloud):
    user_id = await devcloud.create_user("bob@example.com", "hunter22")
    client = await client_for(devcloud)
    session = await sign_in(client, "bob@example.com", "hunter22")
    assert session.user.id == user_id
    claims = verify(session.access_token, devcloud.ctx.config.jwt_secret)
    assert claims["sub"] == user_id
    assert claims["role"] == claims["aud"] == "authenticated"
    assert claims["exp"] - claims["iat"] == devcloud.ctx.config.jwt_expiry == session.expires_in
    assert claims["email"] == "bob@example.com"
    assert claims["aal"] == "aal1" and claims["amr"][0]["method"] == "password"
    assert claims["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert claims["user_metadata"]["sub"] == user_id
    assert claims["is_anonymous"] is False and claims["session_id"]
    assert claims["iss"] == f"{devcloud.url}/auth/v1"
    assert len(session.refresh_token) == 12


async def test_wrong_password_and_unknown_user_are_invalid_credentials(devcloud: RunningDevcloud):
    await devcloud.create_user("carol@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    for email, password in [("carol@example.com", "nope-nope"), ("nobody@example.com", "x" * 8)]:
        with pytest.raises(AuthApiError) as caught:
            await client.auth.sign_in_with_password({"email": email, "password": password})
        assert caught.value.status == 400 and caught.value.code == "invalid_credentials"


async def test_signup_errors(devcloud: RunningDevcloud):
    await devcloud.create_user("dave@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    with pytest.raises(AuthApiError) as caught:
        await client.auth.sign_up({"email": "dave@example.com", "password": "another-pw"})
    assert (caught.value.status, caught.value.code) == (422, "user_already_exists")
    with pytest.raises(AuthWeakPasswordError) as weak:
        await client.auth.sign_up({"email": "erin@example.com", "password": "abc"})
    assert weak.value.reasons == ["length"]


async def test_refresh_rotates_within_the_same_session(devcloud: RunningDevcloud):
    await devcloud.create_user("fay@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    first = await sign_in(client, "fay@example.com")
    second = (await client.auth.refresh_session()).session
    assert second is not None
    assert second.refresh_token != first.refresh_token
    secret = devcloud.ctx.config.jwt_secret
    assert (
        verify(second.access_token, secret)["session_id"]
        == verify(first.access_token, secret)["session_id"]
    )
    assert (await client.auth.get_user()).user.email == "fay@example.com"


async def test_sign_out_ends_the_session(devcloud: RunningDevcloud):
    await devcloud.create_user("gus@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    session = await sign_in(client, "gus@example.com")
    await client.auth.sign_out()
    assert await client.auth.get_session() is None

    other = await client_for(devcloud)
    with pytest.raises(AuthApiError) as caught:
        await other.auth.get_user(session.access_token)
    assert (caught.value.status, caught.value.code) == (403, "session_not_found")
    with pytest.raises(AuthApiError) as refused:
        await other.auth.refresh_session(session.refresh_token)
    assert refused.value.code == "refresh_token_not_found"


async def test_sign_out_others_keeps_only_this_session(devcloud: RunningDevcloud):
    await devcloud.create_user("hal@example.com", "s3cret-pw")
    laptop, phone = await client_for(devcloud), await client_for(devcloud)
    await sign_in(laptop, "hal@example.com")
    await sign_in(phone, "hal@example.com")

    await laptop.auth.sign_out({"scope": "others"})

    assert (await laptop.auth.refresh_session()).session is not None
    with pytest.raises(AuthApiError) as caught:
        await phone.auth.refresh_session()
    assert caught.value.code == "refresh_token_not_found"


async def test_update_user_metadata_and_password(devcloud: RunningDevcloud):
    await devcloud.create_user("ivy@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    await sign_in(client, "ivy@example.com")
    updated = await client.auth.update_user({"data": {"theme": "dark"}, "password": "n3w-secret"})
    assert updated.user.user_metadata["theme"] == "dark"
    assert updated.user.user_metadata["email"] == "ivy@example.com"  # merged, not replaced

    again = await client_for(devcloud)
    response = await again.auth.sign_in_with_password(
        {"email": "ivy@example.com", "password": "n3w-secret"}
    )
    assert response.user is not None and response.user.user_metadata["theme"] == "dark"


async def test_reuse_of_an_old_refresh_token_after_the_window_revokes_the_session(
    devcloud: RunningDevcloud,
):
    await devcloud.create_user("jon@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    r0 = (await sign_in(client, "jon@example.com")).refresh_token
    r1 = (await client.auth.refresh_session()).session.refresh_token  # type: ignore[union-attr]
    r2 = (await client.auth.refresh_session()).session.refresh_token  # type: ignore[union-attr]

    # The parent of the active token: the client lost our answer; it gets the active pair back.
    assert (await client.auth.refresh_session(r1)).session.refresh_token == r2  # type: ignore[union-attr]

    auth = auth_of(devcloud.ctx)
    auth.clock = lambda: time.time() + auth.reuse_interval + 1  # the reuse window has passed
    with pytest.raises(AuthApiError) as caught:
        await client.auth.refresh_session(r0)
    assert (caught.value.status, caught.value.code) == (400, "refresh_token_already_used")
    with pytest.raises(AuthApiError) as revoked:
        await client.auth.refresh_session(r2)
    assert revoked.value.code == "session_expired"


async def test_a_revoked_token_inside_the_window_is_still_accepted(devcloud: RunningDevcloud):
    await devcloud.create_user("kim@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    r0 = (await sign_in(client, "kim@example.com")).refresh_token
    await client.auth.refresh_session()
    r2 = (await client.auth.refresh_session()).session.refresh_token  # type: ignore[union-attr]

    again = (await client.auth.refresh_session(r0)).session  # grandparent, within 10 s
    assert again is not None and again.refresh_token not in (r0, r2)
    assert (await client.auth.refresh_session(r2)).session is not None


async def test_auto_refresh_renews_short_lived_tokens(devcloud_factory):
    dc = await devcloud_factory(jwt_expiry=12)  # the client refreshes 10 s before expiry
    await dc.create_user("lee@example.com", "s3cret-pw")
    client = await client_for(dc, auto_refresh=True)
    events: list[str] = []
    client.auth.on_auth_state_change(lambda event, _session: events.append(event))
    first = await sign_in(client, "lee@example.com")
    try:
        await wait_for(lambda: "TOKEN_REFRESHED" in events, timeout=8_000 * MS)
        session = await client.auth.get_session()
        assert session is not None and session.refresh_token != first.refresh_token
    finally:
        await client.auth.sign_out()  # also stops the refresh timer


async def test_concurrent_refreshes_of_one_token_all_get_the_same_new_token(
    devcloud: RunningDevcloud,
):
    await devcloud.create_user("max@example.com", "s3cret-pw")
    client = await client_for(devcloud)
    r0 = (await sign_in(client, "max@example.com")).refresh_token
    clients = [await client_for(devcloud) for _ in range(5)]
    results = await asyncio.gather(*(c.auth.refresh_session(r0) for c in clients))
    tokens = {r.session.refresh_token for r in results}  # type: ignore[union-attr]
    assert len(tokens) == 1 and r0 not in tokens
