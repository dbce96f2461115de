"""The schema cache: tables' columns and functions' signatures, read from pg_catalog.

Entries are cached per name; a miss is never cached (a table created after start is found on
its first use), and callers ask for ``refresh=True`` when a column seems to be missing, so an
``ALTER TABLE`` is picked up without a restart. Lookups run on the request's own connection
(the catalogs are readable by every role), so they need no extra pool checkout.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from devcloud.rest.errors import unknown_table
from devcloud.rest.rpc import Argument, Function, Kind
from devcloud.rest.sql import Column, Relation

_TABLE_SQL = """
SELECT a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type,
       CASE WHEN a.attidentity <> '' THEN format('nextval(%L::regclass)',
              pg_get_serial_sequence(c.oid::regclass::text, a.attname))
            WHEN a.attgenerated <> '' THEN NULL
            ELSE pg_get_expr(d.adbin, d.adrelid) END AS "default",
       coalesce(a.attnum = ANY (i.indkey), false) AS is_pk
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
ORDER BY a.attnum
"""

_FUNCTION_SQL = """
SELECT p.proretset AS returns_set,
       p.pronargs AS nargs,
       p.pronargdefaults AS ndefaults,
       coalesce(p.proargnames, '{}') AS arg_names,
       coalesce(p.proargmodes::text[], '{}') AS arg_modes,
       ARRAY(SELECT format_type(x, NULL)
             FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY u(x, o)
             ORDER BY o) AS arg_types,
       t.typname AS ret_name,
       t.typtype::text AS ret_type,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS ret_columns,
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS ret_column_types
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type t ON t.oid = p.prorettype
WHERE n.nspname = $1 AND p.proname = $2 AND p.prokind = 'f'
"""


class Catalog:
    """A per-server cache of relations and functions of one schema."""

    def __init__(self, schema: str = "public") -> None:
        self.schema = schema
        self._relations: dict[str, Relation] = {}
        self._functions: dict[str, tuple[Function, ...]] = {}

    async def relation(
        self, conn: asyncpg.Connection, name: str, *, refresh: bool = False
    ) -> Relation:
        """The table or view ``name``; 404 PGRST205 when there is none."""
        cached = None if refresh else self._relations.get(name)
        if cached is not None:
            return cached
        rows = await conn.fetch(_TABLE_SQL, self.schema, name)
        if not rows:
            self._relations.pop(name, None)
            raise unknown_table(self.schema, name)
        columns = {r["name"]: Column(r["name"], r["type"], r["default"]) for r in rows}
        pk = tuple(r["name"] for r in rows if r["is_pk"])
        relation = Relation(self.schema, name, columns, pk)
        self._relations[name] = relation
        return relation

    async def functions(
        self, conn: asyncpg.Connection, name: str, *, refresh: bool = False
    ) -> tuple[Function, ...]:
        """Every overload of ``name`` callable by named arguments (possibly none)."""
        cached = None if refresh else self._functions.get(name)
        if cached is not None:
            return cached
        rows = await conn.fetch(_FUNCTION_SQL, self.schema, name)
        found = tuple(fn for fn in (_function(self.schema, name, r) for r in rows) if fn)
        if found:
            self._functions[name] = found
        return found


def _function(schema: str, name: str, row: Any) -> Function | None:
    types: list[str] = list(row["arg_types"])
    modes: list[str] = list(row["arg_modes"]) or ["i"] * len(types)
    names: list[str] = list(row["arg_names"]) or [""] * len(types)
    inputs = [(n, t) for n, t, m in zip(names, types, modes, strict=False) if m in ("i", "b", "v")]
    outputs = [(n, t) for n, t, m in zip(names, types, modes, strict=False) if m in ("o", "b", "t")]
    if any(not n for n, _ in inputs):
        return None  # positional-only parameters cannot be called by name
    first_default = len(inputs) - int(row["ndefaults"])
    args = tuple(Argument(n, t, i >= first_default) for i, (n, t) in enumerate(inputs))
    kind: Kind = "scalar"
    columns: dict[str, Column] = {}
    if row["ret_name"] == "void":
        kind = "void"
    elif row["ret_type"] == "c":
        kind = "composite"
        pairs = zip(row["ret_columns"], row["ret_column_types"], strict=True)
        columns = {c: Column(c, t) for c, t in pairs}
    elif row["ret_name"] == "record" and outputs and (len(outputs) > 1 or "t" in modes):
        kind = "composite"
        columns = {n: Column(n, t) for n, t in outputs}
    return Function(schema, name, args, bool(row["returns_set"]), kind, columns)
