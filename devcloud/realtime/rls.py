"""Row-level security for a row that is no longer in its table (a DELETE's old row).

PostgreSQL applies policies only to table scans, so the SELECT policies that apply to the current
role are read from ``pg_policy`` and evaluated on the old row image instead: visible when RLS is
off for the role (RLS disabled, BYPASSRLS, or the owner without FORCE), else when any permissive
policy and every restrictive policy holds, as PostgreSQL combines them. Runs inside the
subscriber's ``transaction_as`` so ``auth.uid()`` and friends see the subscriber's claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from devcloud.realtime.changes import dumps_text

_POLICIES_SQL = """
SELECT c.relrowsecurity, c.relforcerowsecurity,
       pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') AS owner,
       (SELECT r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) AS bypass,
       p.polpermissive, pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual
FROM pg_catalog.pg_class c
LEFT JOIN pg_catalog.pg_policy p
  ON p.polrelid = c.oid AND p.polcmd IN ('r', '*')
 AND (p.polroles = '{0}' OR EXISTS (SELECT 1 FROM unnest(p.polroles) AS role(oid)
                                    WHERE pg_catalog.pg_has_role(current_user, role.oid, 'MEMBER')))
WHERE c.oid = to_regclass($1)
"""


@dataclass(frozen=True)
class Policy:
    permissive: bool
    qual: str | None  # None: the policy has no USING clause (true)


def visibility_predicate(
    *, rls: bool, force: bool, owner: bool, bypass: bool, policies: Sequence[Policy]
) -> str | None:
    """SQL boolean over the row's columns, or None when RLS does not apply to the role."""
    if not rls or bypass or (owner and not force):
        return None
    permissive = [f"({p.qual or 'true'})" for p in policies if p.permissive]
    restrictive = [f"({p.qual or 'true'})" for p in policies if not p.permissive]
    if not permissive:
        return "false"  # default deny
    return " AND ".join([f"({' OR '.join(permissive)})", *restrictive])


async def visible_images(
    conn: asyncpg.Connection, schema: str, table: str, images: Sequence[dict[str, Any]]
) -> list[bool]:
    """For each of ``images``, whether the current role may SELECT it as a row of
    ``schema.table``: the policies are read once and every image is judged in one query."""
    relation = f"{quote_ident(schema)}.{quote_ident(table)}"
    rows = await conn.fetch(_POLICIES_SQL, relation)
    if not rows:
        return [False] * len(images)  # the table is gone
    first = rows[0]
    policies = [
        Policy(r["polpermissive"], r["qual"]) for r in rows if r["polpermissive"] is not None
    ]
    predicate = visibility_predicate(
        rls=first["relrowsecurity"],
        force=first["relforcerowsecurity"],
        owner=first["owner"],
        bypass=bool(first["bypass"]),
        policies=policies,
    )
    if predicate is None:
        return [True] * len(images)
    # One scan of the images, so that the policies' uncorrelated sub-queries (membership
    # lists) run once, not once per image. The predicate's names are the row's columns: the
    # images' own aliases are named so that no real column is likely to collide with them.
    sql = (
        "SELECT coalesce(array_agg(_i._devcloud_ord), '{}')"
        " FROM jsonb_array_elements($1::jsonb)"
        " WITH ORDINALITY AS _i(_devcloud_image, _devcloud_ord)"
        f" CROSS JOIN LATERAL jsonb_populate_record(NULL::{relation}, _i._devcloud_image)"
        f" AS {quote_ident(table)} WHERE {predicate}"
    )
    visible = set(await conn.fetchval(sql, dumps_text(list(images))))
    return [i in visible for i in range(1, len(images) + 1)]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
