"""The session on a device whose wall clock disagrees with the cloud's (devcloud, real GoTrue
answers). devcloud shares the machine's clock, so this cannot happen on its own in a test: the
session is given a clock off by hours, as a laptop with a wrong time zone or a dual-boot RTC
has. GoTrue's ``expires_at`` is the cloud's clock; judged by the device's clock, a token from a
cloud two hours behind looked expired on arrival, so every request refreshed the session first
(and the refresher refreshed every 10 s): on Supabase, GoTrue's rate limit on /token (150 per
5 min in the CLI's config) soon answered 429 and sync stopped. A token's expiry is now its
``expires_in`` counted on the device's clock from when the grant was asked for."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from daemon.sync.cloud import CloudHttp, CloudSession, SecretStore
from devcloud.server import RunningDevcloud

from .conftest import PASSWORD

HOUR = 3600.0


class Counting(httpx.AsyncBaseTransport):
    """Counts the refresh grants that reach the cloud."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refreshes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("grant_type") == "refresh_token":
            self.refreshes += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def skewed(
    devcloud: RunningDevcloud, tmp_path: Path
) -> AsyncIterator[Callable[[float], CloudSession]]:
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    transport = Counting()
    async with httpx.AsyncClient(transport=transport) as client:
        http = CloudHttp(devcloud.url, devcloud.anon_key, client=client)

        def make(offset_s: float) -> CloudSession:
            session = CloudSession(
                http,
                SecretStore(tmp_path, devcloud.url, use_keyring=False),
                clock=lambda: time.time() + offset_s,
            )
            session.transport = transport  # type: ignore[attr-defined]
            return session

        yield make


@pytest.mark.parametrize("offset_s", [2 * HOUR, -2 * HOUR], ids=["ahead", "behind"])
async def test_a_skewed_device_clock_does_not_refresh_at_every_request(
    skewed: Callable[[float], CloudSession], offset_s: float
) -> None:
    session = skewed(offset_s)
    async with session:
        await session.login("ada@example.com", PASSWORD)
        tokens = {await session.access_token() for _ in range(5)}
        transport: Counting = session.transport  # type: ignore[attr-defined]
        assert transport.refreshes == 0  # was 5 with the device 2 h ahead: one per request
        assert len(tokens) == 1
        # the expiry is the device's: an hour from now on its clock, whatever the cloud's says
        assert session.status.expires_at is not None
        lifetime = session.status.expires_at - (time.time() + offset_s)
        assert HOUR - 60 < lifetime <= HOUR
        # ...and so is the life Realtime plans its token refreshes from (the JWT's exp is not)
        (token,) = tokens
        life = session.token_life(token)
        assert life is not None and HOUR - 60 < life <= HOUR
        assert session.token_life("another token") is None
