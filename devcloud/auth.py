"""``/auth/v1``: a GoTrue-compatible subset (e-mail + password, autoconfirm) on the ``auth`` schema.

Endpoints: ``signup``, ``token?grant_type=password|refresh_token``, ``user`` (GET, PUT),
``logout?scope=``, ``settings``, ``health``. Responses and errors follow GoTrue byte for byte
where supabase-py or supabase-js look (reference/supabase-wire.md §2). The rules live in
``_gotrue``; the SQL in ``_auth_db``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from devcloud import _auth_db as db
from devcloud._gotrue import (
    API_VERSION_HEADER,
    AuthError,
    RefreshOutcome,
    User,
    access_token_claims,
    check_password,
    check_password_strength,
    check_refresh_token_format,
    check_signup_input,
    decide_refresh,
    error_payload,
    hash_password,
    logout_scope,
    normalize_email,
    requested_api_version,
    token_response,
    user_json,
)
from devcloud.context import Devcloud, bearer_token
from devcloud.keys import InvalidToken, sign, verify

logger = logging.getLogger(__name__)


Clock = Callable[[], float]
Handler = Callable[[Request], Awaitable[Response]]

_SETTINGS = {
    "external": {"email": True, "phone": False, "anonymous_users": False},
    "disable_signup": False,
    "mailer_autoconfirm": True,
    "phone_autoconfirm": False,
    "sms_provider": "",
    "saml_enabled": False,
}
_HEALTH = {
    "version": "devcloud",
    "name": "GoTrue",
    "description": "GoTrue is a user registration and authentication API",
}


class Auth:
    """The auth service of one devcloud; ``clock`` and ``reuse_interval`` are test seams."""

    def __init__(self, ctx: Devcloud, *, clock: Clock = time.time) -> None:
        self.ctx = ctx
        self.clock = clock
        self.reuse_interval = ctx.config.refresh_token_reuse_interval

    def routes(self) -> list[BaseRoute]:
        """Routes relative to the ``/auth/v1`` mount."""
        return [
            Route("/signup", self._wrap(self.signup), methods=["POST"]),
            Route("/token", self._wrap(self.token), methods=["POST"]),
            Route("/user", self._wrap(self.get_user), methods=["GET"]),
            Route("/user", self._wrap(self.put_user), methods=["PUT"]),
            Route("/logout", self._wrap(self.logout), methods=["POST"]),
            Route("/settings", self._wrap(_static(_SETTINGS)), methods=["GET"]),
            Route("/health", self._wrap(_static(_HEALTH)), methods=["GET"]),
            # HS256 only: no public keys to publish (supabase-py asks only for kid tokens).
            Route("/.well-known/jwks.json", self._wrap(_static({"keys": []})), methods=["GET"]),
        ]

    # Endpoints

    async def signup(self, request: Request) -> Response:
        body = await _json_body(request)
        if not body.get("email") and not body.get("password") and not body.get("phone"):
            raise AuthError(422, "anonymous_provider_disabled", "Anonymous sign-ins are disabled")
        data = body.get("data")
        data = data if isinstance(data, dict) else {}
        email, hashed = await prepare_password_user(body.get("email"), body.get("password"))
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            user_id = await db.insert_user(
                conn, email=email, password_hash=hashed, data=data, now=self.clock()
            )
            return await self._new_session(conn, request, user_id)

    async def token(self, request: Request) -> Response:
        grant = request.query_params.get("grant_type", "")
        if grant == "password":
            return await self._password_grant(request, await _json_body(request))
        if grant == "refresh_token":
            return await self._refresh_grant(request, await _json_body(request))
        raise AuthError(400, "invalid_credentials", "unsupported_grant_type")

    async def get_user(self, request: Request) -> Response:
        _claims, user = await self._require_user(request)
        return JSONResponse(user_json(user))

    async def put_user(self, request: Request) -> Response:
        _claims, user = await self._require_user(request)
        body = await _json_body(request)
        data, password = body.get("data"), body.get("password")
        if data is not None and not isinstance(data, dict):
            raise AuthError(400, "validation_failed", "data must be a JSON object")
        email = body.get("email")
        if email and normalize_email(email) != (user.email or ""):
            raise AuthError(422, "validation_failed", "devcloud cannot change e-mail addresses")
        hashed = None
        if password is not None:
            if not isinstance(password, str):
                raise AuthError(400, "validation_failed", "password must be a string")
            check_password_strength(password)
            hashed = await asyncio.to_thread(hash_password, password)
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            await db.update_user(conn, user.id, data=data, password_hash=hashed, now=self.clock())
            updated = await db.load_user(conn, user.id)
        assert updated is not None  # the row was locked by the update above
        return JSONResponse(user_json(updated))

    async def logout(self, request: Request) -> Response:
        scope = logout_scope(request.query_params.get("scope"))
        claims, user = await self._require_user(request)
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            await db.delete_sessions(
                conn, user_id=user.id, session_id=claims.get("session_id"), scope=scope
            )
        return Response(status_code=204)

    # Grants

    async def _password_grant(self, request: Request, body: dict[str, Any]) -> Response:
        email = normalize_email(body.get("email"))
        password = body.get("password")
        if not email and not body.get("phone"):
            raise AuthError(400, "validation_failed", "missing email or phone")
        async with self.ctx.pool.acquire() as conn:
            found = await db.find_user_by_email(conn, email) if email else None
        user, stored = found if found is not None else (None, None)
        # Hash even for an unknown e-mail: the answer takes as long either way.
        ok = await asyncio.to_thread(
            check_password, password if isinstance(password, str) else "", stored
        )
        if user is None or not ok:
            raise AuthError(400, "invalid_credentials", "Invalid login credentials")
        if user.is_banned(self.clock()):
            raise AuthError(400, "user_banned", "User is banned")
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            return await self._new_session(conn, request, user.id)

    async def _new_session(
        self, conn: asyncpg.Connection, request: Request, user_id: str
    ) -> Response:
        now = self.clock()
        await db.mark_signed_in(conn, user_id, now)
        session_id = await db.create_session(conn, user_id, now)
        refresh = await db.issue_refresh_token(
            conn, user_id=user_id, session_id=session_id, parent=None, now=now
        )
        user = await db.load_user(conn, user_id)
        assert user is not None  # created or found in this transaction
        return self._token_response(request, user, session_id, refresh, session_started=now)

    async def _refresh_grant(self, request: Request, body: dict[str, Any]) -> Response:
        presented = check_refresh_token_format(body.get("refresh_token"))
        now = self.clock()
        async with self.ctx.pool.acquire() as conn:
            async with conn.transaction():
                outcome = await self._rotate(conn, presented, now)
                if isinstance(outcome, tuple):
                    user, session_id, refresh, started = outcome
                    return self._token_response(request, user, session_id, refresh, started)
            # The family was revoked and committed; now refuse.
            raise AuthError(
                400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
            )

    async def _rotate(
        self, conn: asyncpg.Connection, presented: str, now: float
    ) -> tuple[User, str, str, float] | None:
        """(user, session id, refresh token to hand out, session start), or None on reuse."""
        locked = await db.lock_refresh_token(conn, presented)
        if locked is None:
            message = "Invalid Refresh Token: Refresh Token Not Found"
            raise AuthError(400, "refresh_token_not_found", message)
        user = await db.load_user(conn, locked.user_id)
        if user is None:
            raise AuthError(
                400, "session_not_found", "Invalid Refresh Token: No Valid Session Found"
            )
        if user.is_banned(now):
            raise AuthError(400, "user_banned", "User is banned")
        if locked.session_not_after is not None and locked.session_not_after.timestamp() <= now:
            raise AuthError(400, "session_expired", "Invalid Refresh Token: Session Expired")
        active = await db.active_refresh_token(conn, locked.session_id)
        outcome = decide_refresh(locked.state, active, now=now, reuse_interval=self.reuse_interval)
        started = locked.session_created_at.timestamp()
        if outcome is RefreshOutcome.REJECT:
            logger.warning("auth.refresh_reuse session=%s: session revoked", locked.session_id)
            await db.revoke_session(conn, locked.session_id, now)
            return None
        if outcome is RefreshOutcome.RETURN_ACTIVE and active is not None:
            return user, locked.session_id, active.token, started
        await db.revoke_refresh_token(conn, presented, now)
        child = await db.issue_refresh_token(
            conn, user_id=user.id, session_id=locked.session_id, parent=presented, now=now
        )
        return user, locked.session_id, child, started

    def _token_response(
        self, request: Request, user: User, session_id: str, refresh: str, session_started: float
    ) -> Response:
        now = int(self.clock())
        claims = access_token_claims(
            user,
            session_id=session_id,
            issuer=f"{request.url.scheme}://{request.url.netloc}/auth/v1",
            now=now,
            expiry=self.ctx.config.jwt_expiry,
            amr=[{"method": "password", "timestamp": int(session_started)}],
        )
        access = sign(claims, self.ctx.config.jwt_secret)
        body = token_response(access_token=access, refresh_token=refresh, claims=claims, user=user)
        return JSONResponse(body)

    # Request plumbing

    async def _require_user(self, request: Request) -> tuple[dict[str, Any], User]:
        """GoTrue's ``requireAuthentication``: a valid user JWT whose user and session exist."""
        token = bearer_token(request.headers)
        if not token:
            raise AuthError(401, "no_authorization", "This endpoint requires a valid Bearer token")
        try:
            claims = verify(token, self.ctx.config.jwt_secret, now=self.clock())
        except InvalidToken as exc:
            reason = exc.reason
            if reason == "token is expired":
                reason = "token has invalid claims: token is expired"
            message = f"invalid JWT: unable to parse or verify signature, {reason}"
            raise AuthError(403, "bad_jwt", message) from exc
        if not claims.get("sub"):
            raise AuthError(403, "bad_jwt", "invalid claim: missing sub claim")
        async with self.ctx.pool.acquire() as conn:
            user = await _load_user_by_claim(conn, str(claims["sub"]))
            if user is None:
                raise AuthError(403, "user_not_found", "User from sub claim in JWT does not exist")
            session_id = claims.get("session_id")
            if session_id and not await _session_exists(conn, str(session_id)):
                message = "Session from session_id claim in JWT does not exist"
                raise AuthError(403, "session_not_found", message)
        if user.is_banned(self.clock()):
            raise AuthError(403, "user_banned", "User is banned")
        return claims, user

    def _wrap(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            version = requested_api_version(request.headers.get(API_VERSION_HEADER))
            rejected = _check_apikey(request, self.ctx.config.jwt_secret)
            if rejected is not None:
                return rejected
            try:
                response = await handler(request)
            except AuthError as exc:
                body, headers = error_payload(exc, version)
                response = JSONResponse(body, exc.status, headers)
            except Exception:  # the service boundary: answer 500, keep serving
                logger.exception("auth.failed %s %s", request.method, request.url.path)
                err = AuthError(
                    500, "unexpected_failure", "Unexpected failure, please check server logs"
                )
                body, headers = error_payload(err, version)
                response = JSONResponse(body, 500, headers)
            if version is not None:
                response.headers[API_VERSION_HEADER] = version
            return response

        return endpoint


async def create_password_user(
    conn: asyncpg.Connection,
    email: str,
    password: Any,
    data: dict[str, Any] | None = None,
    *,
    now: float,
) -> str:
    """A confirmed e-mail/password user (inside the caller's transaction); returns its id.

    Raises AuthError (status, code, message) for an invalid e-mail, a weak password or an
    e-mail already registered.
    """
    email, hashed = await prepare_password_user(email, password)
    return await db.insert_user(conn, email=email, password_hash=hashed, data=data or {}, now=now)


async def prepare_password_user(email: Any, password: Any) -> tuple[str, str]:
    """The normalised e-mail and the password hash of a new user; AuthError for bad input."""
    normalized = normalize_email(email)
    checked = check_signup_input(normalized, password)
    return normalized, await asyncio.to_thread(hash_password, checked)


def auth_of(ctx: Devcloud) -> Auth:
    """The (one) Auth service of a devcloud context, created on first use."""
    service = ctx.extras.get("auth")
    if not isinstance(service, Auth):
        service = ctx.extras["auth"] = Auth(ctx)
    return service


def _static(payload: dict[str, Any]) -> Handler:
    async def handler(request: Request) -> Response:
        return JSONResponse(payload)

    return handler


def _check_apikey(request: Request, secret: str) -> Response | None:
    """What the API gateway (Kong key-auth) does: an anon or service_role key is required."""
    key = request.headers.get("apikey") or request.query_params.get("apikey")
    if not key:
        return JSONResponse({"message": "No API key found in request"}, 401)
    try:
        role = verify(key, secret).get("role")
    except InvalidToken:
        role = None
    if role not in ("anon", "service_role"):
        return JSONResponse({"message": "Invalid authentication credentials"}, 401)
    return None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuthError(400, "bad_json", f"Could not parse request body as JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise AuthError(400, "bad_json", "Could not parse request body as JSON: not an object")
    return body


async def _load_user_by_claim(conn: asyncpg.Connection, sub: str) -> User | None:
    try:
        return await db.load_user(conn, sub)
    except (asyncpg.DataError, ValueError):  # sub is not a uuid
        return None


async def _session_exists(conn: asyncpg.Connection, session_id: str) -> bool:
    try:
        return await db.session_exists(conn, session_id)
    except (asyncpg.DataError, ValueError):
        return False
