"""Seeding users and organisations from outside HTTP (``devcloud user create``, test fixtures)."""

from __future__ import annotations

import time

import asyncpg

from devcloud.auth import create_password_user

ORG_ROLES = ("owner", "admin", "member")


async def create_user(
    conn: asyncpg.Connection,
    email: str,
    password: str,
    *,
    org: str | None = None,
    role: str = "owner",
    now: float | None = None,
) -> str:
    """A confirmed user, and with ``org`` that organisation (created if no org has that name)
    plus the user's membership in it with ``role``; all in one transaction. Returns the user id.

    Raises ValueError for an unknown role and devcloud._gotrue.AuthError for a bad e-mail or
    password or an e-mail that is already registered.
    """
    if role not in ORG_ROLES:
        raise ValueError(f"role must be one of {', '.join(ORG_ROLES)}, not {role!r}")
    async with conn.transaction():
        user_id = await create_password_user(
            conn, email, password, now=time.time() if now is None else now
        )
        if org is not None:
            org_id = await ensure_organization(conn, org, created_by=user_id)
            await conn.execute(
                "INSERT INTO public.org_memberships (org_id, user_id, role) VALUES ($1, $2, $3)"
                " ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role",
                org_id,
                user_id,
                role,
            )
    return user_id


async def ensure_organization(conn: asyncpg.Connection, name: str, *, created_by: str) -> str:
    """The id of the organisation called ``name``, created if there is none."""
    if not name.strip():
        raise ValueError("an organisation needs a non-empty name")
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('devcloud.org:' || $1))", name)
    org_id = await conn.fetchval(
        "SELECT id FROM public.organizations WHERE name = $1 ORDER BY created_at LIMIT 1", name
    )
    if org_id is None:
        org_id = await conn.fetchval(
            "INSERT INTO public.organizations (name, created_by) VALUES ($1, $2) RETURNING id",
            name,
            created_by,
        )
    return str(org_id)
