"""GoTrue's rules without I/O: error shapes, password hashing, refresh-token rotation, token JSON.

The HTTP adapter (``auth.py``) and the SQL (``_auth_db.py``) call into this module; nothing here
touches the network, the database or the clock (``now`` is always passed in).

Refresh-token rotation (GoTrue ``RefreshTokenGrant``, classic 12-character tokens):

    presented token ──not revoked──────────────────────────────▶ ISSUE_CHILD (rotate)
          │ revoked
          ├── it is the parent of the session's active token ──▶ RETURN_ACTIVE (any time)
          ├── revoked less than ``reuse_interval`` ago ─────────▶ ISSUE_CHILD
          └── otherwise ────────────────────────────────────────▶ REJECT (revoke the family)
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

API_VERSION_2024_01_01 = "2024-01-01"
API_VERSION_HEADER = "X-Supabase-Api-Version"
REFRESH_TOKEN_LENGTH = 12
MIN_PASSWORD_LENGTH = 6

_API_VERSION_RE = re.compile(r"^2[0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
_REFRESH_TOKEN_RE = re.compile(r"^[a-z0-9]{12}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

# scrypt cost: 16 MiB and ~50 ms per hash on this project's machines.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class AuthError(Exception):
    """An error GoTrue reports to the client: HTTP status, machine code, human message."""

    def __init__(
        self, status: int, code: str, message: str, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})


# Errors


def requested_api_version(header: str | None) -> str | None:
    """``2024-01-01`` when the request names a valid version since then, else None (legacy)."""
    if not header or not _API_VERSION_RE.match(header.strip()):
        return None
    return API_VERSION_2024_01_01 if header.strip() >= API_VERSION_2024_01_01 else None


def error_payload(err: AuthError, api_version: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON body and extra headers of an error, in the shape the request's version asks for."""
    if api_version is not None:
        body: dict[str, Any] = {"code": err.code, "message": err.message, **err.extra}
        return body, {API_VERSION_HEADER: api_version, "x-sb-error-code": err.code}
    legacy: dict[str, Any] = {"code": err.status, "error_code": err.code, "msg": err.message}
    if err.status >= 500:
        legacy["error_id"] = secrets.token_hex(8)
    return {**legacy, **err.extra}, {}


# Passwords


def hash_password(password: str) -> str:
    """A self-describing scrypt hash with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    parts = ("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    return "$".join(parts)


def check_password(password: str, encoded: str | None) -> bool:
    """Whether ``password`` matches ``encoded``; always spends one hash, so timing tells nothing."""
    parsed = _parse_hash(encoded)
    if parsed is None:
        _scrypt(password, b"\0" * 16, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def _parse_hash(encoded: str | None) -> tuple[int, int, int, bytes, bytes] | None:
    parts = (encoded or "").split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    if not (2 <= n <= 2**16 and n & (n - 1) == 0 and 1 <= r <= 16 and 1 <= p <= 4 and salt):
        return None
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Input checks


def normalize_email(value: Any) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def check_signup_input(email: str, password: Any) -> str:
    """The password of a valid signup; raises AuthError like GoTrue for bad input."""
    if not email:
        raise AuthError(400, "validation_failed", "To signup, please provide your email")
    if not _EMAIL_RE.match(email) or len(email) > 255:
        message = "Unable to validate email address: invalid format"
        raise AuthError(400, "validation_failed", message)
    if not isinstance(password, str) or not password:
        raise AuthError(400, "validation_failed", "Signup requires a valid password")
    check_password_strength(password)
    return password


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(
            422,
            "weak_password",
            f"Password should be at least {MIN_PASSWORD_LENGTH} characters.",
            {"weak_password": {"reasons": ["length"]}},
        )


def new_refresh_token() -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(REFRESH_TOKEN_LENGTH))


def check_refresh_token_format(token: Any) -> str:
    if not isinstance(token, str) or not token:
        raise AuthError(400, "validation_failed", "refresh_token required")
    too_short = len(token) < REFRESH_TOKEN_LENGTH
    if too_short or (len(token) == REFRESH_TOKEN_LENGTH and not _REFRESH_TOKEN_RE.match(token)):
        raise AuthError(400, "validation_failed", "Refresh token is not valid")
    return token


def logout_scope(value: str | None) -> str:
    scope = value or "global"
    if scope not in ("global", "local", "others"):
        raise AuthError(400, "validation_failed", f'Unsupported logout scope "{scope}"')
    return scope


# Refresh-token rotation


class RefreshOutcome(enum.Enum):
    ISSUE_CHILD = "issue_child"  # mint a new refresh token whose parent is the presented one
    RETURN_ACTIVE = "return_active"  # the client lost our last answer: hand back the active token
    REJECT = "reject"  # reuse outside the window: refuse and revoke the whole session


@dataclass(frozen=True)
class TokenState:
    token: str
    revoked: bool
    updated_at: float  # unix seconds of the last change (revocation time once revoked)
    parent: str | None = None


def decide_refresh(
    presented: TokenState, active: TokenState | None, *, now: float, reuse_interval: float
) -> RefreshOutcome:
    """What GoTrue does with a presented refresh token (see the module docstring)."""
    if not presented.revoked:
        return RefreshOutcome.ISSUE_CHILD
    if active is not None and active.parent == presented.token:
        return RefreshOutcome.RETURN_ACTIVE
    if now <= presented.updated_at + reuse_interval:
        return RefreshOutcome.ISSUE_CHILD
    return RefreshOutcome.REJECT


# Users and tokens


@dataclass(frozen=True)
class Identity:
    id: str
    user_id: str
    provider: str
    provider_id: str
    identity_data: dict[str, Any]
    email: str | None
    last_sign_in_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class User:
    id: str
    aud: str
    role: str
    email: str | None
    phone: str | None
    email_confirmed_at: datetime | None
    confirmed_at: datetime | None
    last_sign_in_at: datetime | None
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    is_anonymous: bool
    banned_until: datetime | None
    created_at: datetime
    updated_at: datetime
    identities: Sequence[Identity] = field(default_factory=tuple)

    def is_banned(self, now: float) -> bool:
        return self.banned_until is not None and self.banned_until.timestamp() > now


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as GoTrue writes it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _times(**values: datetime | None) -> dict[str, str]:
    return {key: format_time(value) for key, value in values.items() if value is not None}


def identity_json(identity: Identity) -> dict[str, Any]:
    return {
        "identity_id": identity.id,
        "id": identity.provider_id,
        "user_id": identity.user_id,
        "identity_data": identity.identity_data,
        "provider": identity.provider,
        **_times(last_sign_in_at=identity.last_sign_in_at),
        **_times(created_at=identity.created_at, updated_at=identity.updated_at),
        "email": identity.email or "",
    }


def user_json(user: User) -> dict[str, Any]:
    """The user object of GoTrue's responses (``GET /user``, ``user`` of a token response)."""
    return {
        "id": user.id,
        "aud": user.aud,
        "role": user.role,
        "email": user.email or "",
        **_times(email_confirmed_at=user.email_confirmed_at),
        "phone": user.phone or "",
        **_times(confirmed_at=user.confirmed_at, last_sign_in_at=user.last_sign_in_at),
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
        "identities": [identity_json(i) for i in user.identities],
        **_times(created_at=user.created_at, updated_at=user.updated_at),
        "is_anonymous": user.is_anonymous,
    }


def access_token_claims(
    user: User,
    *,
    session_id: str,
    issuer: str,
    now: int,
    expiry: int,
    amr: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The claims GoTrue puts in an access token (``AccessTokenClaims``)."""
    return {
        "iss": issuer,
        "sub": user.id,
        "aud": user.aud,
        "exp": now + expiry,
        "iat": now,
        "email": user.email or "",
        "phone": user.phone or "",
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
        "role": user.role,
        "aal": "aal1",
        "amr": [dict(entry) for entry in amr],
        "session_id": session_id,
        "is_anonymous": user.is_anonymous,
    }


def token_response(
    *, access_token: str, refresh_token: str, claims: Mapping[str, Any], user: User
) -> dict[str, Any]:
    """GoTrue's ``AccessTokenResponse``, fields in its order."""
    return {
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": int(claims["exp"]) - int(claims["iat"]),
        "expires_at": int(claims["exp"]),
        "refresh_token": refresh_token,
        "user": user_json(user),
    }
