"""Row-level security for a row that is no longer in its table (a DELETE's old row).

PostgreSQL applies policies only to table scans, so the SELECT policies that apply to the current
role are read from ``pg_policy`` and evaluated on the old row image instead: visible when RLS is
off for the role (RLS disabled, BYPASSRLS, or the owner without FORCE), else when any permissive
policy and every restrictive policy holds, as PostgreSQL combines them. Runs inside the
subscriber's ``transaction_as`` so ``auth.uid()`` and friends see the subscriber's claims.

The images are judged reduced to their key and the columns the predicate names, each
distinct one once (``distinct_images``): a 500-row ``sync_push`` of messages is judged on 500
(id, workspace_id) pairs, not on 500 whole rows parsed into records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

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


# A name pg_get_expr writes as it is (no quotes): lower case letters, digits, _ and $.
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


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
    conn: asyncpg.Connection,
    schema: str,
    table: str,
    images: Sequence[dict[str, Any]],
    keys: Iterable[str],
) -> list[bool]:
    """For each of ``images``, whether the current role may SELECT it as a row of
    ``schema.table``: the policies are read once and every image is judged in one query
    (``keys``: the primary key's columns, always judged, see ``distinct_images``)."""
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
    distinct, which = distinct_images(images, predicate, table, keys)
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
    visible = set(await conn.fetchval(sql, dumps_text(distinct)))
    return [i + 1 in visible for i in which]


def distinct_images(
    images: Sequence[dict[str, Any]], predicate: str, table: str, keys: Iterable[str] = ()
) -> tuple[list[dict[str, Any]], list[int]]:
    """The images reduced to their ``keys`` and the columns ``predicate`` may name, without
    repeats, and for each of ``images`` the index of its reduced image: PostgreSQL then reads
    two or three values per row instead of every column (timestamps, JSON…) of it.

    A column is kept when its name is a word of the predicate's text (a superset of the
    columns it reads: a column it does not name cannot change its value); the key columns are
    kept too, so a change whose key PostgreSQL cannot read still fails (and is judged alone).
    Nothing is reduced when the predicate may use the whole row (its text holds the table's
    name anywhere) or when a name is not a plain identifier (the predicate's text may show it
    quoted or escaped)."""
    names = {key for image in images for key in image}
    if table in predicate or not all(_PLAIN.fullmatch(n) for n in (table, *names)):
        kept = None
    else:
        words = set(_WORD.findall(predicate)) | set(keys)
        kept = [name for name in names if name in words]
    distinct: list[dict[str, Any]] = []
    seen: dict[bytes, int] = {}
    which: list[int] = []
    for image in images:
        reduced = image if kept is None else {k: image[k] for k in kept if k in image}
        key = _key(reduced)
        index = seen.get(key)
        if index is None:
            index = seen[key] = len(distinct)
            distinct.append(reduced)
        which.append(index)
    return distinct, which


def _key(image: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(image, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:  # integers beyond 64 bits
        return json.dumps(image, sort_keys=True, default=str).encode()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
