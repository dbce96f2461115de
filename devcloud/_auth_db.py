"""The SQL of devcloud's GoTrue: ``auth`` users, identities, sessions and refresh tokens.

Every function takes an open connection and runs inside the caller's transaction. Times come
from the caller's clock (unix seconds), so tests can move time without waiting.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from devcloud._gotrue import AuthError, Identity, TokenState, User, new_refresh_token

_USER_COLUMNS = (
    "id, aud, role, email, phone, email_confirmed_at, confirmed_at, last_sign_in_at,"
    " raw_app_meta_data, raw_user_meta_data, is_anonymous, banned_until, created_at, updated_at"
)


def to_datetime(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}


async def _identities(conn: asyncpg.Connection, user_id: str) -> tuple[Identity, ...]:
    rows = await conn.fetch(
        "SELECT id, user_id, provider, provider_id, identity_data, email, last_sign_in_at,"
        " created_at, updated_at FROM auth.identities WHERE user_id = $1 ORDER BY created_at",
        user_id,
    )
    return tuple(
        Identity(
            id=str(r["id"]),
            user_id=str(r["user_id"]),
            provider=r["provider"],
            provider_id=r["provider_id"],
            identity_data=_json(r["identity_data"]),
            email=r["email"],
            last_sign_in_at=r["last_sign_in_at"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )
        for r in rows
    )


async def _user_from_row(conn: asyncpg.Connection, r: asyncpg.Record) -> User:
    return User(
        id=str(r["id"]),
        aud=r["aud"] or "authenticated",
        role=r["role"] or "authenticated",
        email=r["email"],
        phone=r["phone"],
        email_confirmed_at=r["email_confirmed_at"],
        confirmed_at=r["confirmed_at"],
        last_sign_in_at=r["last_sign_in_at"],
        app_metadata=_json(r["raw_app_meta_data"]),
        user_metadata=_json(r["raw_user_meta_data"]),
        is_anonymous=bool(r["is_anonymous"]),
        banned_until=r["banned_until"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        identities=await _identities(conn, str(r["id"])),
    )


async def load_user(conn: asyncpg.Connection, user_id: str) -> User | None:
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM auth.users WHERE id = $1 AND deleted_at IS NULL", user_id
    )
    return None if row is None else await _user_from_row(conn, row)


async def find_user_by_email(
    conn: asyncpg.Connection, email: str
) -> tuple[User, str | None] | None:
    """The user with this (normalised) e-mail and their password hash."""
    row = await conn.fetchrow(
        f"SELECT {_USER_COLUMNS}, encrypted_password FROM auth.users"
        " WHERE lower(email) = $1 AND deleted_at IS NULL",
        email,
    )
    if row is None:
        return None
    return await _user_from_row(conn, row), row["encrypted_password"]


async def insert_user(
    conn: asyncpg.Connection,
    *,
    email: str,
    password_hash: str,
    data: dict[str, Any],
    now: float,
) -> str:
    """A confirmed user with its ``email`` identity; AuthError if the e-mail is taken.

    The row is complete when inserted, so triggers on auth.users (the profiles trigger reads
    ``raw_user_meta_data``) see the user's metadata.
    """
    at = to_datetime(now)
    user_id = str(uuid.uuid4())
    claims = {"email": email, "email_verified": True, "phone_verified": False, "sub": user_id}
    try:
        await conn.execute(
            "INSERT INTO auth.users (id, aud, role, email, encrypted_password, email_confirmed_at,"
            " confirmed_at, raw_app_meta_data, raw_user_meta_data, created_at, updated_at)"
            " VALUES ($1, 'authenticated', 'authenticated', $2, $3, $4, $4, $5::jsonb, $6::jsonb,"
            " $4, $4)",
            user_id,
            email,
            password_hash,
            at,
            json.dumps({"provider": "email", "providers": ["email"]}),
            json.dumps({**data, **claims}),
        )
    except asyncpg.UniqueViolationError as exc:
        raise AuthError(422, "user_already_exists", "User already registered") from exc
    await conn.execute(
        "INSERT INTO auth.identities (user_id, provider, provider_id, identity_data, email,"
        " created_at, updated_at) VALUES ($1, 'email', $5, $2::jsonb, $3, $4, $4)",
        user_id,
        json.dumps({**claims, "email_verified": False}),
        email,
        at,
        user_id,
    )
    return user_id


async def update_user(
    conn: asyncpg.Connection,
    user_id: str,
    *,
    data: dict[str, Any] | None,
    password_hash: str | None,
    now: float,
) -> None:
    await conn.execute(
        "UPDATE auth.users SET"
        " raw_user_meta_data = raw_user_meta_data || coalesce($2::jsonb, '{}'::jsonb),"
        " encrypted_password = coalesce($3, encrypted_password), updated_at = $4 WHERE id = $1",
        user_id,
        None if data is None else json.dumps(data),
        password_hash,
        to_datetime(now),
    )


async def mark_signed_in(conn: asyncpg.Connection, user_id: str, now: float) -> None:
    at = to_datetime(now)
    await conn.execute("UPDATE auth.users SET last_sign_in_at = $2 WHERE id = $1", user_id, at)
    await conn.execute(
        "UPDATE auth.identities SET last_sign_in_at = $2 WHERE user_id = $1", user_id, at
    )


async def create_session(conn: asyncpg.Connection, user_id: str, now: float) -> str:
    at = to_datetime(now)
    session_id = await conn.fetchval(
        "INSERT INTO auth.sessions (user_id, aal, refreshed_at, created_at, updated_at)"
        " VALUES ($1, 'aal1', $2, $2, $2) RETURNING id",
        user_id,
        at,
    )
    return str(session_id)


async def session_exists(conn: asyncpg.Connection, session_id: str) -> bool:
    found = await conn.fetchval("SELECT true FROM auth.sessions WHERE id = $1::uuid", session_id)
    return bool(found)


async def issue_refresh_token(
    conn: asyncpg.Connection, *, user_id: str, session_id: str, parent: str | None, now: float
) -> str:
    token = new_refresh_token()
    at = to_datetime(now)
    await conn.execute(
        "INSERT INTO auth.refresh_tokens (token, user_id, session_id, parent, revoked,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, false, $5, $5)",
        token,
        user_id,
        session_id,
        parent,
        at,
    )
    await conn.execute(
        "UPDATE auth.sessions SET refreshed_at = $2, updated_at = $2 WHERE id = $1", session_id, at
    )
    return token


@dataclass(frozen=True)
class LockedToken:
    state: TokenState
    user_id: str
    session_id: str
    session_not_after: datetime | None
    session_created_at: datetime


async def lock_refresh_token(conn: asyncpg.Connection, token: str) -> LockedToken | None:
    """The presented refresh token with its session row locked, or None if either is gone.

    Locking the session serialises concurrent refreshes of one session, as GoTrue does; the
    token row is read after the lock so it reflects every refresh committed before ours.
    """
    session_id = await conn.fetchval(
        "SELECT session_id FROM auth.refresh_tokens WHERE token = $1", token
    )
    if session_id is None:
        return None
    session = await conn.fetchrow(
        "SELECT not_after, created_at FROM auth.sessions WHERE id = $1 FOR UPDATE", session_id
    )
    row = await conn.fetchrow(
        "SELECT token, revoked, parent, updated_at, user_id FROM auth.refresh_tokens"
        " WHERE token = $1",
        token,
    )
    if session is None or row is None:
        return None
    return LockedToken(
        state=_token_state(row),
        user_id=str(row["user_id"]),
        session_id=str(session_id),
        session_not_after=session["not_after"],
        session_created_at=session["created_at"],
    )


def _token_state(row: asyncpg.Record) -> TokenState:
    return TokenState(
        token=row["token"],
        revoked=bool(row["revoked"]),
        updated_at=row["updated_at"].timestamp(),
        parent=row["parent"],
    )


async def active_refresh_token(conn: asyncpg.Connection, session_id: str) -> TokenState | None:
    row = await conn.fetchrow(
        "SELECT token, revoked, parent, updated_at FROM auth.refresh_tokens"
        " WHERE session_id = $1 AND NOT revoked ORDER BY id DESC LIMIT 1",
        session_id,
    )
    return None if row is None else _token_state(row)


async def revoke_refresh_token(conn: asyncpg.Connection, token: str, now: float) -> None:
    await conn.execute(
        "UPDATE auth.refresh_tokens SET revoked = true, updated_at = $2"
        " WHERE token = $1 AND NOT revoked",
        token,
        to_datetime(now),
    )


async def revoke_session(conn: asyncpg.Connection, session_id: str, now: float) -> None:
    """Revoke every refresh token of the session and end it (reuse detected)."""
    at = to_datetime(now)
    await conn.execute(
        "UPDATE auth.refresh_tokens SET revoked = true WHERE session_id = $1 AND NOT revoked",
        session_id,
    )
    await conn.execute(
        "UPDATE auth.sessions SET not_after = $2, updated_at = $2 WHERE id = $1", session_id, at
    )


async def delete_sessions(
    conn: asyncpg.Connection, *, user_id: str, session_id: str | None, scope: str
) -> None:
    """Log out: ``global`` every session of the user, ``local`` this one, ``others`` the rest."""
    if scope == "local":
        await conn.execute("DELETE FROM auth.sessions WHERE id = $1::uuid", session_id)
    elif scope == "others":
        await conn.execute(
            "DELETE FROM auth.sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2::uuid",
            user_id,
            session_id,
        )
    else:
        await conn.execute("DELETE FROM auth.sessions WHERE user_id = $1", user_id)
