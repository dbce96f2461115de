"""The one HTTP client every cloud call goes through, and the seam where failures are translated.

One ``httpx.AsyncClient`` per cloud, HTTP/1.1 with keep-alive: supabase-py's HTTP/2 client
drops idle connections with ``RemoteProtocolError`` (supabase-py #1064, supabase-wire.md §5.6).
Idle connections are kept ``KEEPALIVE_S`` (90 s), longer than the 30 s periodic pull
(``DriverSettings.pull_interval_s``), so an idle daemon's pulls reuse one connection instead of
a new TCP and TLS handshake every 30 s (it used to let them go after 4 s). A server that closed
an idle connection meanwhile (uvicorn after 5 s, a proxy's idle timeout) is no failure:
httpcore checks an idle connection before it takes it from the pool (``has_expired``: the
socket is readable, i.e. the server's FIN arrived) and opens a new one for the request
(tests/component/sync/test_cloud_keepalive.py). Every request carries ``apikey``; the caller
gives the bearer (the access token, or the anon key for the token grants).

Each request is bounded as a whole (``Bounds``, by operation: ``BOUNDS``), not only per read:
httpx's timeouts are per network operation, so an answer trickling in a byte every 10 s never
tripped them and wedged sync until a restart. Past its ``deadline_s`` a request fails as a
``timeout`` (a network failure: retried with backoff). Its answer is read as a stream and
given up past ``max_bytes`` (``too_large``, ``AnswerTooLarge``: nothing applied; a pull
page over it is asked for again with fewer rows, anything else retried with backoff), so a
cloud answering gigabytes cannot exhaust the daemon's memory; an error answer's body is read
up to ``ERROR_BODY_BYTES`` only (past that its status alone decides).

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

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from daemon import jsonnumbers
from daemon.config import Secret
from daemon.sync.cloud.errors import (
    AnswerTooLarge,
    CloudError,
    CloudProtocolError,
    error_from_failure,
)
from daemon.sync.cloud.wire import normalize_cloud_url
from daemon.sync.retry import Failure, TransportKind

__all__ = ["BOUNDS", "KEEPALIVE_S", "Bounds", "CloudHttp", "decode_json", "transport_kind"]

logger = logging.getLogger(__name__)

USER_AGENT: Final = "syncd/0.1"
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=10.0)
#: How long an idle connection is kept: above the periodic pull's 30 s (see the module doc).
KEEPALIVE_S: Final = 90.0
_LIMITS: Final = httpx.Limits(
    max_connections=16, max_keepalive_connections=8, keepalive_expiry=KEEPALIVE_S
)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one request may take: ``deadline_s`` in all (connect, send, wait and read), and
    ``max_bytes`` of answer (decoded; the ``Content-Length`` is checked first)."""

    deadline_s: float
    max_bytes: int


#: Bounds by operation, else by its prefix (``auth``, ``rest``). The sync RPCs get
#: postgrest-py's default timeout, 120 s (there it bounds each network operation, here the
#: whole request): a 4000-row page (bulk_pull_limit) measured 2.7 MB, ~22 s at 1 Mbit/s,
#: and a 500-row push (<= 1 MiB) is sent and applied in one request. Their answers' sizes
#: follow from the limits the daemon asks for: a pull page of at most bulk_pull_limit rows
#: (~700 B each measured; 64 MiB is 16 KiB a row, or 9x a full MAX_PULL_LIMIT page of
#: such rows), a push answer of one short result per change (<= 500; 16 MiB is 32 KiB a
#: result, the server's messages included). The other reads (a profile, memberships,
#: workspaces, pull marks) are small: 60 s, 8 MiB. GoTrue's token and logout answers are
#: under 2 KB and quick (supabase_auth uses httpx's 5 s per operation): 30 s, 1 MiB.
BOUNDS: Final[Mapping[str, Bounds]] = {
    "rest.pull": Bounds(120.0, 64 << 20),
    "rest.push": Bounds(120.0, 16 << 20),
    "rest": Bounds(60.0, 8 << 20),
    "auth": Bounds(30.0, 1 << 20),
}
DEFAULT_BOUNDS: Final = Bounds(60.0, 8 << 20)
#: An error answer's body is read up to this (GoTrue's and PostgREST's are under 1 KB).
ERROR_BODY_BYTES: Final = 64 << 10
#: What a read response's stream becomes (see the module doc): an empty body, never read again.
_READ: Final = httpx.ByteStream(b"")


#: Headers about the body as it came over the wire, not as it is kept (decoded, whole).
_BODY_HEADERS: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def transport_kind(exc: httpx.TransportError) -> TransportKind:
    """The retry policy's name for a request that got no response."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "reset"  # RemoteProtocolError, ReadError, WriteError, a proxy failing...


def decode_json(response: httpx.Response, *, operation: str) -> Any:
    """The JSON body of a successful response; CloudProtocolError if it is not JSON. A number
    beyond what orjson holds (PostgreSQL's jsonb takes any: ``1e400``) does not make valid JSON
    "not JSON" (daemon/jsonnumbers.py): a pulled row holding one is set aside by the store."""
    try:
        return jsonnumbers.loads(response.content)
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
        bounds: Mapping[str, Bounds] | None = None,
    ) -> None:
        self.url = normalize_cloud_url(url)
        self._anon_key = anon_key if isinstance(anon_key, Secret) else Secret(anon_key)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            http1=True, http2=False, timeout=DEFAULT_TIMEOUT, limits=_LIMITS
        )
        self._clock = clock
        self._bounds = bounds  # None: BOUNDS

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
        bounds = self._bounds_for(operation)
        request = self._client.build_request(
            method, self.url + path, params=params, content=content, headers=request_headers
        )
        try:
            async with asyncio.timeout(bounds.deadline_s):
                response = await self._exchange(request, bounds.max_bytes)
        except (httpx.TransportError, TimeoutError) as exc:
            kind = transport_kind(exc) if isinstance(exc, httpx.TransportError) else "timeout"
            logger.debug("%s.failed reason=%s", operation, kind)
            raise self._error(Failure.network(kind), operation) from exc
        except httpx.DecodingError as exc:  # a Content-Encoding its body does not follow
            raise CloudProtocolError(operation, "not_decodable") from exc
        if response is None:
            logger.debug("%s.failed reason=too_large max_bytes=%d", operation, bounds.max_bytes)
            raise AnswerTooLarge(operation, bounds.max_bytes)
        if response.is_success:
            return response
        failure = Failure.http(
            response.status_code, dict(response.headers), response.content, reauthed=reauthed
        )
        error = self._error(failure, operation)
        logger.debug("%s.failed reason=%s status=%s", operation, error.reason, error.status)
        raise error

    def _bounds_for(self, operation: str) -> Bounds:
        bounds = BOUNDS if self._bounds is None else self._bounds
        return bounds.get(operation) or bounds.get(operation.split(".")[0]) or DEFAULT_BOUNDS

    async def _exchange(self, request: httpx.Request, max_bytes: int) -> httpx.Response | None:
        """The answer to ``request``, its body read (a successful one up to ``max_bytes``,
        else None; an error's up to ERROR_BODY_BYTES, past which it is dropped)."""
        streamed = await self._client.send(request, stream=True)
        try:
            limit = max_bytes if streamed.is_success else min(max_bytes, ERROR_BODY_BYTES)
            body = await _read_at_most(streamed, limit)
        finally:
            await streamed.aclose()
            streamed.stream = _READ  # unbound (see the module doc)
        if body is None and streamed.is_success:
            return None
        headers = [(k, v) for k, v in streamed.headers.multi_items() if k not in _BODY_HEADERS]
        return httpx.Response(
            streamed.status_code, headers=headers, content=body or b"", request=request
        )

    def _error(self, failure: Failure, operation: str) -> CloudError:
        return error_from_failure(failure, operation=operation, now=self._clock())


async def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """``response``'s body, decoded; None as soon as it is known to be over ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # (encoded: never more than decoded)
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
