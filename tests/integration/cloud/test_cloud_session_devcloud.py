"""CloudSession against a real devcloud: login, restore, the scheduled refresh, refusals, logout."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemon.errors import InvalidInput
from daemon.sync.cloud.errors import AuthRequired, CloudRejected, CloudUnavailable
from daemon.sync.cloud.secrets import SecretStore
from daemon.sync.cloud.session import CloudSession, SessionStatus
from daemon.sync.cloud.wire import CloudUser
from daemon.sync.retry import Backoff
from devcloud.auth import auth_of
from devcloud.context import DevcloudConfig
from devcloud.keys import verify
from devcloud.server import RunningDevcloud, running_devcloud
from tests.helpers import MS, wait_for

if TYPE_CHECKING:  # fixtures' types (conftest is not importable: this folder is no package)
    from conftest import LeakWatch, OpenSession, StartDevcloud

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"


def stored(data_dir: Path, url: str) -> str | None:
    return SecretStore(data_dir, url, use_keyring=False).get()


def store(data_dir: Path, url: str, token: str) -> None:
    SecretStore(data_dir, url, use_keyring=False).set(token)


def assert_nothing_shows(watch: LeakWatch, session: CloudSession, *extra: object) -> None:
    for text in (repr(session), repr(session.status), str(session.status.to_json()), *extra):
        for value in watch.secrets:
            assert value not in str(text)


async def test_login_stores_the_refresh_token_and_reports_the_user(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    user_id = await devcloud.create_user(EMAIL, PASSWORD)
    session = await open_session(devcloud, tmp_path)
    seen: list[SessionStatus] = []
    session.add_listener(seen.append)
    status = await session.login(EMAIL, PASSWORD)
    assert status.logged_in and not status.auth_required and status.last_error is None
    assert status.user == CloudUser(user_id, EMAIL)
    assert status.secret_backend == "file"
    assert seen[-1] == status == session.status
    token = await session.access_token()
    claims = verify(token, devcloud.ctx.config.jwt_secret)
    assert claims["sub"] == user_id and claims["role"] == "authenticated"
    # counted on this device's clock from the request (expires_in), the same clock here
    assert status.expires_at == pytest.approx(claims["exp"], abs=2)
    refresh = stored(tmp_path, devcloud.url)
    assert refresh is not None and len(refresh) == 12
    path = SecretStore(tmp_path, devcloud.url, use_keyring=False).path
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await session.access_token() == token  # valid for an hour: no refresh per call
    leaks.secret(token, refresh, PASSWORD)
    assert_nothing_shows(leaks, session, seen)


async def test_a_wrong_password_is_refused_and_changes_nothing(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    await devcloud.create_user(EMAIL, PASSWORD)
    session = await open_session(devcloud, tmp_path)
    leaks.secret("wrong password!")
    with pytest.raises(CloudRejected) as caught:
        await session.login(EMAIL, "wrong password!")
    assert caught.value.reason == "invalid_credentials" and caught.value.status == 400
    assert "wrong password!" not in str(caught.value)
    for email, password in (("", PASSWORD), ("no-at-sign", PASSWORD), (EMAIL, "")):
        with pytest.raises(InvalidInput):
            await session.login(email, password)
    assert session.status == SessionStatus(secret_backend="file")
    assert stored(tmp_path, devcloud.url) is None
    with pytest.raises(AuthRequired) as not_in:
        await session.access_token()
    assert not_in.value.reason == "logged_out"


async def test_restore_logs_in_silently_from_the_stored_token(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    user_id = await devcloud.create_user(EMAIL, PASSWORD)
    first = await open_session(devcloud, tmp_path)
    await first.login(EMAIL, PASSWORD)
    refresh = stored(tmp_path, devcloud.url)
    assert refresh is not None

    restarted = await open_session(devcloud, tmp_path)  # the daemon after a restart
    status = await restarted.restore()
    assert status.logged_in and status.user == CloudUser(user_id, EMAIL)
    rotated = stored(tmp_path, devcloud.url)
    assert rotated is not None and rotated != refresh  # the rotated token was saved again
    token = await restarted.access_token()
    assert verify(token, devcloud.ctx.config.jwt_secret)["sub"] == user_id
    assert await restarted.restore() == status  # restoring again changes nothing
    leaks.secret(refresh, rotated, token)

    nothing_stored = await open_session(devcloud, tmp_path / "elsewhere")
    assert await nothing_stored.restore() == SessionStatus(secret_backend="file")


async def test_the_token_is_refreshed_before_it_expires(
    start_devcloud: StartDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    dc = await start_devcloud(jwt_expiry=4)
    await dc.create_user(EMAIL, PASSWORD)
    # the refresh comes 2 s after the login: a token minted in the same second as the first
    # would be the same JWT (its claims count whole seconds), as GoTrue's would
    session = await open_session(
        dc, tmp_path, refresh_margin_s=2.0, refresh_floor_s=0.5, expiry_skew_s=1.0
    )
    changes: list[tuple[float, SessionStatus]] = []
    session.add_listener(lambda status: changes.append((time.time(), status)))
    first = await session.login(EMAIL, PASSWORD)
    first_token = await session.access_token()
    first_refresh = stored(tmp_path, dc.url)
    assert first.expires_at is not None

    def expires_after(at: float) -> bool:
        return session.status.expires_at is not None and session.status.expires_at > at

    await wait_for(lambda: expires_after(first.expires_at or 0), timeout=5_000 * MS)
    refreshed_at = next(t for t, s in changes if s.expires_at != first.expires_at)
    assert refreshed_at < first.expires_at  # before expiry, not after a failure
    token = await session.access_token()
    assert token != first_token
    assert verify(token, dc.ctx.config.jwt_secret)  # valid now
    # the rotated refresh token is saved right after it arrives
    await wait_for(lambda: stored(tmp_path, dc.url) not in (None, first_refresh))
    # and it keeps going: the next one is scheduled from the new token
    second = session.status.expires_at or 0
    await wait_for(lambda: expires_after(second), timeout=5_000 * MS)
    assert session.status.logged_in and session.status.last_error is None
    leaks.secret(first_token, first_refresh, token, stored(tmp_path, dc.url))
    assert len(leaks.messages("auth.refreshed")) >= 2


async def test_concurrent_callers_share_one_refresh(
    start_devcloud: StartDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    dc = await start_devcloud(jwt_expiry=2)
    await dc.create_user(EMAIL, PASSWORD)
    session = await open_session(dc, tmp_path, refresh_floor_s=3600.0)  # no scheduled refresh
    await session.login(EMAIL, PASSWORD)
    first = await session.access_token()
    assert await session.access_token() == first  # a 2 s token is used for its first second
    expires_at = session.status.expires_at or 0
    # the skew of a 2 s token is half its life: in its last 0.4 s it is due for a refresh
    await wait_for(lambda: time.time() >= expires_at - 0.4, message="the token's last moment")
    tokens = await asyncio.gather(*(session.access_token() for _ in range(5)))
    renewed_once = len(set(tokens)) == 1 and tokens[0] != first
    assert renewed_once, "five callers, one new token"
    assert len(leaks.messages("auth.refreshed")) == 1
    rejected = tokens[0]
    renewed = await asyncio.gather(*(session.refresh_access_token(rejected) for _ in range(3)))
    assert len(set(renewed)) == 1
    assert len(leaks.messages("auth.refreshed")) == 2
    leaks.secret(first, *tokens, *renewed)


async def test_a_reused_refresh_token_ends_the_session_everywhere(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    auth_of(devcloud.ctx).reuse_interval = 0.0
    user_id = await devcloud.create_user(EMAIL, PASSWORD)
    laptop = await open_session(devcloud, tmp_path / "laptop")
    await laptop.login(EMAIL, PASSWORD)
    copied = stored(tmp_path / "laptop", devcloud.url)
    assert copied is not None
    for _ in range(2):  # rotate twice: the copy is no longer even the parent of the active one
        await laptop.refresh_access_token(await laptop.access_token())
    leaks.secret(copied, stored(tmp_path / "laptop", devcloud.url))

    store(tmp_path / "copy", devcloud.url, copied)  # a second holder of the same token
    copy = await open_session(devcloud, tmp_path / "copy")
    status = await copy.restore()
    assert status.auth_required and not status.logged_in
    assert status.last_error == "auth_required"
    assert stored(tmp_path / "copy", devcloud.url) is None  # a dead token is not kept

    # reuse revoked the whole family: the laptop must log in again too
    with pytest.raises(AuthRequired) as caught:
        await laptop.refresh_access_token(await laptop.access_token())
    assert laptop.status.auth_required and not laptop.status.logged_in
    assert laptop.status.user == CloudUser(user_id, EMAIL)  # who to log in as
    assert stored(tmp_path / "laptop", devcloud.url) is None
    with pytest.raises(AuthRequired):
        await laptop.access_token()
    assert_nothing_shows(leaks, laptop, caught.value, caught.value.__cause__)

    status = await laptop.login(EMAIL, PASSWORD)
    assert status.logged_in and not status.auth_required


async def test_logout_revokes_the_session_on_the_server(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    await devcloud.create_user(EMAIL, PASSWORD)
    session = await open_session(devcloud, tmp_path / "a")
    await session.login(EMAIL, PASSWORD)
    copied = stored(tmp_path / "a", devcloud.url)
    assert copied is not None
    leaks.secret(copied)
    store(tmp_path / "b", devcloud.url, copied)
    status = await session.logout()
    assert status == SessionStatus(secret_backend="file")
    assert stored(tmp_path / "a", devcloud.url) is None
    other = await open_session(devcloud, tmp_path / "b")
    assert (await other.restore()).auth_required  # the server forgot the session


async def test_logout_clears_local_secrets_even_when_the_cloud_is_down(
    fresh_database_url: str, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    async with running_devcloud(DevcloudConfig(port=0), database_url=fresh_database_url) as dc:
        await dc.create_user(EMAIL, PASSWORD)
        session = await open_session(dc, tmp_path)
        await session.login(EMAIL, PASSWORD)
        leaks.secret(await session.access_token(), stored(tmp_path, dc.url))
        path = SecretStore(tmp_path, dc.url, use_keyring=False).path
        assert path.exists()
    status = await session.logout()  # devcloud is gone: the server call fails
    assert status == SessionStatus(secret_backend="file")
    assert stored(tmp_path, dc.url) is None and not path.exists()
    with pytest.raises(AuthRequired):
        await session.access_token()
    assert leaks.messages("auth.logout_server_skipped reason=connect")


async def test_restore_rides_out_an_outage_with_backoff(
    fresh_database_url: str,
    start_devcloud: StartDevcloud,
    open_session: OpenSession,
    tmp_path: Path,
    leaks: LeakWatch,
) -> None:
    async with running_devcloud(DevcloudConfig(port=0), database_url=fresh_database_url) as dc:
        user_id = await dc.create_user(EMAIL, PASSWORD)
        first = await open_session(dc, tmp_path / "first")
        await first.login(EMAIL, PASSWORD)
        token = stored(tmp_path / "first", dc.url)
        assert token is not None
        url, port = dc.url, dc.port
    leaks.secret(token)
    kept = SecretStore(tmp_path / "first", url, use_keyring=False).load()
    assert kept is not None and kept.user == CloudUser(user_id, EMAIL)  # stored with the token
    SecretStore(tmp_path, url, use_keyring=False).save(kept)
    fast = Backoff(base_s=0.05, cap_s=0.2)
    session = await open_session(url, tmp_path, backoff=fast)
    status = await session.restore()
    # logged in as the stored user, not granted yet: the cloud cannot be reached
    assert status.logged_in and not status.auth_required
    assert status.user == CloudUser(user_id, EMAIL) and status.expires_at is None
    assert status.last_error == "connect"
    assert stored(tmp_path, url) == token  # an outage never costs the session
    with pytest.raises(CloudUnavailable):
        await session.access_token()
    await wait_for(lambda: len(leaks.messages("auth.refresh_failed reason=connect")) >= 3)

    await start_devcloud(port=port)  # the same cloud comes back
    await wait_for(lambda: session.status.expires_at is not None, timeout=10_000 * MS)
    assert session.status.logged_in and session.status.user == CloudUser(user_id, EMAIL)
    assert session.status.last_error is None
    leaks.secret(await session.access_token(), stored(tmp_path, url))
