"""A refresh the token endpoint fails without refusing the token keeps the session (audit G2
F12): one 401 answer (a gateway, a wrong anon key: GoTrue itself answers a bad refresh token
400 ``refresh_token_not_found`` or ``invalid_grant``, supabase-wire.md §2.5) used to log the
user out and delete a still valid refresh token. Now only GoTrue's refusals do; anything else
is reported and retried. Against an httpx mock token endpoint; tokens in a 0600 file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.store import Store
from daemon.sync.cloud import CloudHttp, CloudSession, SecretStore
from daemon.sync.cloud.errors import AuthRequired, CloudUnavailable
from daemon.sync.retry import Backoff
from tests.component.sync.mock_cloud import URL, grant, link_workspace, mocked_driver
from tests.helpers import MS

WITHIN = 5_000 * MS
#: ~59 s (rand 0.99): the driver's own retry does not come during a test
SLOW = Backoff(base_s=60.0, cap_s=60.0)
NOT_FOUND = {"code": "refresh_token_not_found", "message": "Invalid Refresh Token"}


class TokenEndpoint:
    """Grants passwords; answers refreshes with ``refresh`` (status, JSON) once set."""

    def __init__(self) -> None:
        self.refresh: tuple[int, Any] | None = None
        self.refreshes = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/auth/v1/token":
            if request.url.params["grant_type"] == "refresh_token" and self.refresh is not None:
                self.refreshes += 1
                status, body = self.refresh
                return httpx.Response(status, json=body)
            return httpx.Response(200, json=grant())
        if path.startswith("/rest/v1/rpc/sync_"):  # the access token is refused: refresh
            return httpx.Response(401, json={"code": "PGRST303", "message": "JWT expired"})
        return httpx.Response(404, json={"code": "PGRST202"})


@contextlib.asynccontextmanager
async def logged_in(tmp_path: Path, cloud: TokenEndpoint) -> AsyncIterator[CloudSession]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(cloud.handle))
    secrets = SecretStore(tmp_path, URL, use_keyring=False)
    async with client, CloudSession(CloudHttp(URL, "anon", client=client), secrets) as session:
        await session.login("ada@example.com", "pw")
        yield session


def stored_token(tmp_path: Path) -> str | None:
    stored = SecretStore(tmp_path, URL, use_keyring=False).load()
    return None if stored is None else stored.refresh_token


@pytest.mark.parametrize(
    "answer",
    [(401, {"message": "Invalid API key"}), (401, "Unauthorized"), (403, {"code": "bad_jwt"}),
     (404, "not found"), (500, {"code": "unexpected_failure"})],
    ids=["401-json", "401-text", "403", "404", "500"],
)  # fmt: skip
async def test_a_failed_refresh_that_refuses_nothing_keeps_the_session(
    tmp_path: Path, answer: tuple[int, Any]
) -> None:
    cloud = TokenEndpoint()
    async with logged_in(tmp_path, cloud) as session:
        token = await session.access_token()
        kept = stored_token(tmp_path)
        cloud.refresh = answer
        with pytest.raises(CloudUnavailable) as failed:  # was: AuthRequired, logged out
            await session.refresh_access_token(token)
        assert failed.value.retryable and failed.value.status == answer[0]
        status = session.status
        assert status.logged_in and not status.auth_required
        assert status.last_error == failed.value.reason
        assert kept is not None and stored_token(tmp_path) == kept  # not deleted
        cloud.refresh = None  # the gateway is fixed: the same token refreshes
        assert await session.refresh_access_token(token) != token
        assert session.status.logged_in and session.status.last_error is None


async def test_a_refusal_of_the_refresh_token_ends_the_session(tmp_path: Path) -> None:
    cloud = TokenEndpoint()
    async with logged_in(tmp_path, cloud) as session:
        token = await session.access_token()
        cloud.refresh = (400, NOT_FOUND)
        with pytest.raises(AuthRequired):
            await session.refresh_access_token(token)
        assert session.status.auth_required and not session.status.logged_in
        assert stored_token(tmp_path) is None


async def test_a_sync_whose_refresh_meets_a_401_retries_and_stays_logged_in(
    store: Store, tmp_path: Path
) -> None:
    """The data API refuses the token; the refresh it causes gets a 401: the sync fails as a
    transient error with a backoff, not as auth_required."""
    cloud = TokenEndpoint()
    async with mocked_driver(
        store, tmp_path, cloud.handle, backoff=SLOW, rand=lambda: 0.99, pull_interval_s=3600.0
    ) as driver:
        cloud.refresh = (401, {"message": "Invalid API key"})
        ws_id = await link_workspace(store, driver)
        result = await asyncio.wait_for(driver.sync_now("pull"), WITHIN)
        assert result["error"] == "http_401"
        status = driver.syncs[ws_id].status
        assert (status.state, status.error) == ("error", "http_401")
        assert status.retry_at is not None and cloud.refreshes >= 1
        assert stored_token(tmp_path) is not None
