"""The daemon's cloud session: login, silent restore, the scheduled refresh, logout.

Theory of operation
-------------------
The daemon is the only process that refreshes this session: GoTrue rotates refresh tokens and
revokes the whole family when a used one comes back outside its reuse window (supabase-wire.md
§2.3), so two refreshers would log each other out. GoTrue is spoken with httpx directly rather
than through ``supabase_auth``'s client: three endpoints are all we need, and its errors drop
the response headers (``Retry-After``), turn network errors into status 0 and keep a session
and timers of their own; here every failure becomes a ``retry.Failure`` on the one shared
HTTP/1.1 client, and nothing but this class holds or rotates the token.

State: no credentials (logged out, or ``auth_required`` after a refusal), or credentials with a
refresh token and, once a grant succeeded, an access token with ``expires_at``/``refresh_at``.
Holding credentials is being logged in (``status.logged_in``), granted yet or not.

- ``login`` and a successful refresh install a grant: the new refresh token is stored with the
  user it logs in (``SecretStore``, ``StoredSession``) and the next refresh is due at
  ``wire.refresh_at`` (60 s before expiry, never sooner than 10 s after the grant).
- ``restore`` (at start) takes the stored refresh token and user and refreshes the token; a
  cloud that cannot be reached does not lose it: the refresher keeps trying with
  ``retry.Backoff`` (full jitter). Meanwhile the session is logged in as the stored user, with
  ``last_error`` saying why it is not granted yet (``connect``), and a call that needs a token
  fails as the cloud being unavailable, not as a missing login: nothing is wrong with the
  session, and it needs no login when the cloud is back.
- A refused refresh (``refresh_token_already_used``, ``refresh_token_not_found``, the session
  gone...: ``retry.refresh_refused``) drops the credentials and the stored token and sets
  ``auth_required``: cloud calls raise ``AuthRequired`` until the next login; local work is
  not affected. Any other failed refresh (a 401 from a gateway or a wrong anon key, a 5xx, an
  answer that is not a grant) keeps them: ``last_error`` says why, the refresher retries with
  backoff, and a call that needs a token fails as the cloud being unavailable.
- ``logout`` forgets everything locally first, then tells the server (best effort).
- ``access_token()`` hands out a token with more than ``expiry_skew_s`` left, refreshing first
  if needed; ``refresh_access_token(rejected)`` is the REST client's repeat after a 401. Both go
  through one lock, so many callers cause one refresh. A token the data API refuses right
  after its grant (``token_refused``: a gateway, PostgREST's keys or clock out of step with
  GoTrue's) does not end the session: the request is retried with backoff, and the token is
  refreshed again when due, not at every retry.
- A generation number, bumped by login and logout, keeps a refresh that was in flight during
  either from installing its (stale) result.

``status`` is an immutable ``SessionStatus``; listeners get every new one. No token appears in
any status, repr, log line or error message (invariant I8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import orjson

from daemon.aio import cancel_and_wait
from daemon.errors import InvalidInput
from daemon.sync.cloud.errors import (
    AuthRequired,
    CloudError,
    CloudProtocolError,
    CloudRejected,
    CloudUnavailable,
    SecretStoreError,
)
from daemon.sync.cloud.http import CloudHttp, decode_json
from daemon.sync.cloud.secrets import SecretStore, StoredSession
from daemon.sync.cloud.status import SessionStatus, StatusListener
from daemon.sync.cloud.wire import (
    REFRESH_FLOOR_S,
    REFRESH_MARGIN_S,
    CloudUser,
    TokenGrant,
    is_expired,
    parse_token_response,
    refresh_at,
)
from daemon.sync.retry import TOKEN_REJECTED, Backoff, Retry, refresh_refused

__all__ = ["CloudSession", "SessionStatus", "StatusListener"]

logger = logging.getLogger(__name__)

API_VERSION: Final = {"X-Supabase-Api-Version": "2024-01-01"}
#: The refresher re-reads the wall clock at least this often (a suspended laptop wakes late).
MAX_WAIT_S: Final = 30.0
#: Retries of a refresh that failed for a transient reason (full jitter, 1 s doubling to 60 s).
REFRESH_BACKOFF: Final = Backoff(base_s=1.0, cap_s=60.0)


@dataclass(slots=True)
class _Credentials:
    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    refresh_at: float | None = None
    received_at: float = 0.0
    user: CloudUser | None = None


class CloudSession:
    """The session of one cloud; ``async with`` runs its refresher."""

    def __init__(
        self,
        http: CloudHttp,
        secrets: SecretStore,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        backoff: Backoff = REFRESH_BACKOFF,
        # Timeouts
        refresh_margin_s: float = REFRESH_MARGIN_S,
        refresh_floor_s: float = REFRESH_FLOOR_S,
        expiry_skew_s: float = 10.0,
    ) -> None:
        self.http = http
        self._secrets = secrets
        self._clock = clock
        self._rand = rand
        self._backoff = backoff
        self._margin_s = refresh_margin_s
        self._floor_s = refresh_floor_s
        self._skew_s = expiry_skew_s
        self._creds: _Credentials | None = None
        self._auth_required = False
        self._known_user: CloudUser | None = None
        self._last_error: str | None = None
        self._generation = 0
        self._installs = 0  # grants installed so far
        #: the access token the data API refused right after its grant (``token_refused``)
        self._refused_token: str | None = None
        self._attempt = 0
        self._retry_at: float | None = None
        self._refresh_lock = asyncio.Lock()
        self._store_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._listeners: list[StatusListener] = []
        self._status = self._current_status()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"CloudSession(url={self.http.url!r}, status={self._status!r})"

    # Lifecycle

    async def __aenter__(self) -> CloudSession:
        self._task = asyncio.create_task(self._run_refresher(), name="cloud-session-refresher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    # Status

    @property
    def status(self) -> SessionStatus:
        return self._status

    def add_listener(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener(status)`` on every change; returns the function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    # Commands

    async def login(self, email: str, password: str) -> SessionStatus:
        """Log in with a password; raises CloudRejected (``invalid_credentials``...),
        CloudUnavailable or InvalidInput. The previous session, if any, is replaced."""
        _check_login(email, password)
        body = orjson.dumps({"email": email.strip(), "password": password})
        grant = await self._grant("password", body, operation="auth.login")
        self._generation += 1
        self._install(grant)
        logger.info("auth.login user=%s", grant.user.id)
        await self._persist_quietly()
        return self._status

    async def restore(self) -> SessionStatus:
        """Log in silently with the stored refresh token (at start). Never raises for the
        cloud's sake: a refusal ends in ``auth_required``, an outage in background retries."""
        if self._creds is not None:
            return self._status
        try:
            stored = await asyncio.to_thread(self._secrets.load)
        except SecretStoreError as exc:
            logger.warning("auth.restore_failed reason=%s", exc.reason)
            return self._set_error(exc.reason)
        if stored is None:
            return self._status
        self._generation += 1
        self._creds = _Credentials(refresh_token=stored.refresh_token, user=stored.user)
        self._known_user = stored.user
        self._auth_required = False
        self._publish()
        await self._refresh_in_background()
        self._wake.set()
        return self._status

    async def logout(self) -> SessionStatus:
        """Forget the session here (memory and stored token), then revoke it on the server;
        a server that cannot be reached changes nothing about the local outcome."""
        creds = self._creds
        self._generation += 1
        self._creds, self._auth_required, self._known_user = None, False, None
        self._last_error, self._retry_at, self._attempt = None, None, 0
        self._refused_token = None
        self._publish()
        self._wake.set()
        try:
            await self._persist()
        finally:
            if creds is not None and creds.access_token is not None:
                await self._revoke(creds.access_token)
            logger.info("auth.logout")
        return self._status

    async def access_token(self) -> str:
        """A valid access token; raises AuthRequired (log in) or CloudUnavailable."""
        creds = self._creds
        if creds is None:
            raise self._auth_required_error("auth.token")
        if creds.access_token is not None and not self._is_expired(creds):
            return creds.access_token
        return await self._refresh(seen=creds.access_token)

    def token_life(self, token: str) -> float | None:
        """Seconds ``token`` (the current access token) is still good for, on this device's
        clock (``expires_in`` counted from when it was asked for, not GoTrue's ``exp``, which is
        the cloud's clock); None for any other token, or when its expiry is not known. Realtime
        plans its token refreshes from this (daemon/realtime/tokens.py)."""
        creds = self._creds
        if creds is None or creds.access_token != token or creds.expires_at is None:
            return None
        return creds.expires_at - self._clock()

    async def refresh_access_token(self, rejected: str) -> str:
        """A new access token after the cloud refused ``rejected``; one refresh for any number
        of callers that saw the same token refused. A token the cloud refused right after the
        refresh that granted it (``token_refused``) is not refreshed again before it is due
        (the refresher does that, at ``refresh_at``): CloudUnavailable ``token_rejected``,
        which the caller retries with backoff."""
        if rejected == self._refused_token:
            raise CloudUnavailable(
                "auth.refresh", TOKEN_REJECTED, decision=Retry(None, TOKEN_REJECTED)
            )
        return await self._refresh(seen=rejected)

    def token_refused(self, token: str) -> None:
        """The data API refused ``token`` right after the refresh that granted it: the session
        stands (GoTrue granted it, the refresh token works), but refreshing again at once would
        only rotate the refresh token at every retry of the request."""
        creds = self._creds
        if creds is not None and creds.access_token == token:
            self._refused_token = token

    # Refreshing

    async def _refresh(self, *, seen: str | None) -> str:
        installs = self._installs
        async with self._refresh_lock:
            creds = self._creds
            if creds is None:
                raise self._auth_required_error("auth.refresh")
            current = creds.access_token
            # Someone else refreshed while we waited for the lock (a token issued in the same
            # second can be identical to the one we saw, so count grants, not only compare).
            fresh = current is not None and not self._is_expired(creds, skew_s=0)
            if fresh and (current != seen or self._installs != installs):
                assert current is not None
                return current
            generation = self._generation
            body = orjson.dumps({"refresh_token": creds.refresh_token})
            try:
                grant = await self._grant("refresh_token", body, operation="auth.refresh")
            except CloudError as exc:
                if exc.failure is not None and refresh_refused(exc.failure):
                    if generation == self._generation:
                        await self._refused(exc)
                    raise AuthRequired(
                        "auth.refresh", "auth_required", status=exc.status, failure=exc.failure
                    ) from exc
                failed = _not_refused(exc)
                if generation == self._generation:
                    self._set_error(failed.reason)
                raise failed from exc
            if generation != self._generation:  # logged out, or in anew, meanwhile: drop it
                return self._current_token_or_raise()
            self._install(grant)
        logger.info("auth.refreshed user=%s", grant.user.id)
        await self._persist_quietly()
        return grant.access_token

    async def _refresh_in_background(self) -> None:
        """One refresh for the refresher or ``restore``: failures are recorded, not raised."""
        creds = self._creds
        try:
            await self._refresh(seen=None if creds is None else creds.access_token)
        except AuthRequired:
            pass  # the status says so
        except CloudError as exc:
            retry_after = getattr(exc, "retry_after_s", None)
            delay = self._backoff.delay(min(self._attempt, 64), self._rand(), retry_after)
            self._attempt += 1
            self._retry_at = self._clock() + delay
            logger.warning("auth.refresh_failed reason=%s retry_in=%.1fs", exc.reason, delay)

    def _refresh_due_at(self) -> float | None:
        creds = self._creds
        if creds is None:
            return None
        if self._retry_at is not None:
            return self._retry_at
        return self._clock() if creds.refresh_at is None else creds.refresh_at

    async def _run_refresher(self) -> None:
        while True:
            self._wake.clear()
            due = self._refresh_due_at()
            if due is None:
                await self._wake.wait()
                continue
            delay = due - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, MAX_WAIT_S)):
                        await self._wake.wait()
                continue
            try:
                await self._refresh_in_background()
            except Exception:  # supervisor boundary: the refresher must outlive a bug
                logger.exception("auth.refresher_failed")
                self._retry_at = self._clock() + self._backoff.cap_s

    # Helpers

    async def _grant(self, grant_type: str, body: bytes, *, operation: str) -> TokenGrant:
        asked_at = self._clock()  # the token's life is counted from here (wire.py)
        response = await self.http.send(
            "POST",
            "/auth/v1/token",
            operation=operation,
            params={"grant_type": grant_type},
            content=body,
            headers=API_VERSION,
        )
        data = decode_json(response, operation=operation)
        try:
            return parse_token_response(data, now=asked_at)
        except ValueError as exc:
            raise CloudProtocolError(
                operation, "bad_token_response", status=response.status_code
            ) from exc

    def _install(self, grant: TokenGrant) -> None:
        now = self._clock()
        self._installs += 1
        self._creds = _Credentials(
            refresh_token=grant.refresh_token,
            access_token=grant.access_token,
            expires_at=grant.expires_at,
            refresh_at=refresh_at(
                grant.expires_at, now=now, margin_s=self._margin_s, floor_s=self._floor_s
            ),
            received_at=now,
            user=grant.user,
        )
        self._known_user = grant.user
        self._refused_token = None
        self._auth_required, self._last_error = False, None
        self._attempt, self._retry_at = 0, None
        self._publish()
        self._wake.set()

    async def _refused(self, exc: CloudError) -> None:
        logger.warning("auth.refresh_refused reason=%s: log in again", exc.reason)
        self._creds, self._auth_required = None, True
        self._last_error, self._retry_at, self._attempt = "auth_required", None, 0
        self._publish()
        await self._persist_quietly()

    async def _revoke(self, access_token: str) -> None:
        try:
            await self.http.send(
                "POST",
                "/auth/v1/logout",
                operation="auth.logout",
                bearer=access_token,
                params={"scope": "local"},
                headers=API_VERSION,
            )
        except CloudError as exc:  # already signed out, or unreachable: local logout stands
            logger.info("auth.logout_server_skipped reason=%s", exc.reason)

    async def _persist(self) -> None:
        """Make the stored token match the credentials (serialised: the last state wins)."""
        async with self._store_lock:
            creds = self._creds
            if creds is None:
                await asyncio.to_thread(self._secrets.delete)
            else:
                stored = StoredSession(creds.refresh_token, creds.user)
                await asyncio.to_thread(self._secrets.save, stored)
        self._publish()  # the store may have fallen back from the keyring to the file

    async def _persist_quietly(self) -> None:
        try:
            await self._persist()
        except SecretStoreError as exc:
            logger.warning("auth.secret_not_saved reason=%s", exc.reason)

    def _is_expired(self, creds: _Credentials, *, skew_s: float | None = None) -> bool:
        if creds.expires_at is None:
            return True
        if skew_s is None:
            # A token shorter-lived than twice the skew would be refreshed at every use.
            skew_s = min(self._skew_s, (creds.expires_at - creds.received_at) / 2)
        return is_expired(creds.expires_at, now=self._clock(), skew_s=skew_s)

    def _current_token_or_raise(self) -> str:
        creds = self._creds
        if creds is None or creds.access_token is None or self._is_expired(creds, skew_s=0):
            raise self._auth_required_error("auth.refresh")
        return creds.access_token

    def _auth_required_error(self, operation: str) -> AuthRequired:
        return AuthRequired(operation, "auth_required" if self._auth_required else "logged_out")

    def _set_error(self, reason: str) -> SessionStatus:
        self._last_error = reason
        self._publish()
        return self._status

    def _current_status(self) -> SessionStatus:
        creds = self._creds
        return SessionStatus(
            logged_in=creds is not None,
            auth_required=self._auth_required,
            user=creds.user if creds is not None and creds.user else self._known_user,
            expires_at=None if creds is None else creds.expires_at,
            secret_backend=self._secrets.backend,
            last_error=self._last_error,
        )

    def _publish(self) -> None:
        status = self._current_status()
        if status == self._status:
            return
        self._status = status
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:  # a listener's bug must not break the session
                logger.exception("auth.listener_failed")


def _not_refused(exc: CloudError) -> CloudError:
    """A failed refresh that did not refuse the token, as a transient failure: the session is
    kept and the refresh retried (``retry.refresh_refused``). An answer the retry policy would
    take for a rejected token (401: refresh, then ``auth_required``) or a refusal for good
    becomes ``CloudUnavailable`` naming its status (``http_401``) or code."""
    if not isinstance(exc, AuthRequired | CloudRejected):
        return exc
    reason = exc.reason if isinstance(exc, CloudRejected) else f"http_{exc.status}"
    return CloudUnavailable(exc.operation, reason, status=exc.status, decision=Retry(None, reason))


def _check_login(email: object, password: object) -> None:
    if not isinstance(email, str) or "@" not in email.strip():
        raise InvalidInput("email", "an e-mail address is required")
    if not isinstance(password, str) or not password:
        raise InvalidInput("password", "a password is required")
