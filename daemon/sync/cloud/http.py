"""The one HTTP client every cloud call goes through, and the seam where failures are translated.

One ``httpx.AsyncClient`` per cloud, HTTP/1.1 with keep-alive: supabase-py's HTTP/2 client
drops idle connections with ``RemoteProtocolError`` (supabase-py #1064, supabase-wire.md §5.6).
Idle connections are let go after 4 s, under uvicorn's 5 s keep-alive, so a request is rarely
sent on a connection the server is closing. Every request carries ``apikey``; the caller gives
the bearer (the access token, or the anon key for the token grants).

``send`` returns a 2xx response or raises a ``CloudError`` built by ``error_from_failure``:
the failure (status, headers, decoded error JSON, or the transport error kind) rides along so
the sync driver can ``classify`` it again. Nothing here logs a header or a body.

Every response leaves ``send`` read and closed, and unbound from its stream: httpx 0.28 links
a response and its stream both ways (``BoundAsyncStream._response``; encode/httpx#3733), so a
response, body included, was freed only by the cyclic garbage collector, which the daemon runs
rarely (daemon/loop.py, ``tune_gc``). A first sync's 4000-row pages (2.7 MB each) piled up:
the daemon's memory grew with the workspace's size (100k rows: +72 MB, 20k: +28 MB). Once
unbound, the response is freed with the last reference to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
import orjson

from daemon.config import Secret
from daemon.sync.cloud.errors import CloudError, CloudProtocolError, error_from_failure
from daemon.sync.cloud.wire import normalize_cloud_url
from daemon.sync.retry import Failure, TransportKind

__all__ = ["CloudHttp", "decode_json", "transport_kind"]

logger = logging.getLogger(__name__)

USER_AGENT: Final = "syncd/0.1"
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
_LIMITS: Final = httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=4)
#: What a read response's stream becomes (see the module doc): an empty body, never read again.
_READ: Final = httpx.ByteStream(b"")


def transport_kind(exc: httpx.TransportError) -> TransportKind:
    """The retry policy's name for a request that got no response."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "reset"  # RemoteProtocolError, ReadError, WriteError, a proxy failing...


def decode_json(response: httpx.Response, *, operation: str) -> Any:
    """The JSON body of a successful response; CloudProtocolError if it is not JSON."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise CloudProtocolError(operation, "not_json", status=response.status_code) from exc


class CloudHttp:
    """The shared client of one cloud (``url``, ``anon_key``); close it with ``aclose``."""

    def __init__(
        self,
        url: str,
        anon_key: str | Secret,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = normalize_cloud_url(url)
        self._anon_key = anon_key if isinstance(anon_key, Secret) else Secret(anon_key)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            http1=True, http2=False, timeout=DEFAULT_TIMEOUT, limits=_LIMITS
        )
        self._clock = clock

    def __repr__(self) -> str:
        return f"CloudHttp(url={self.url!r})"

    @property
    def anon_key(self) -> str:
        return self._anon_key.reveal()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> CloudHttp:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        bearer: str | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        reauthed: bool = False,
    ) -> httpx.Response:
        """One request to ``url + path``; a 2xx response, or a ``CloudError``.

        ``reauthed``: this is the repeat after a refresh caused by a rejected token.
        """
        request_headers = {
            "apikey": self.anon_key,
            "Authorization": f"Bearer {bearer or self.anon_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if content is not None:
            request_headers["Content-Type"] = "application/json"
        request_headers.update(headers or {})
        try:
            response = await self._client.request(
                method, self.url + path, params=params, content=content, headers=request_headers
            )
        except httpx.TransportError as exc:
            failure = Failure.network(transport_kind(exc))
            logger.debug("%s.failed reason=%s", operation, failure.transport)
            raise self._error(failure, operation) from exc
        # read and closed by request(): the stream (and its link back to the response) is done
        response.stream = _READ
        if response.is_success:
            return response
        failure = Failure.http(
            response.status_code, dict(response.headers), response.content, reauthed=reauthed
        )
        error = self._error(failure, operation)
        logger.debug("%s.failed reason=%s status=%s", operation, error.reason, error.status)
        raise error

    def _error(self, failure: Failure, operation: str) -> CloudError:
        return error_from_failure(failure, operation=operation, now=self._clock())
