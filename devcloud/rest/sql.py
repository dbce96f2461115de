"""A parsed PostgREST request → one parameterised SQL statement (pure; no I/O).

Identifiers are always double-quoted and checked against the relation's columns from the
catalog; values never enter the SQL text: they travel as text parameters and are cast to the
column's type in SQL (``CAST($1::text AS <type>)``), or as one JSON parameter that
``json_populate_recordset`` / ``json_to_record`` turns into typed rows.

Every statement returns exactly one row ``(total bigint, n bigint, body text)``: the exact
count when asked for (else NULL), the number of rows returned/affected, and the response body
already encoded as JSON by PostgreSQL (``json_agg``) so Python never re-encodes rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from devcloud.rest.errors import RestError, undefined_column, unknown_column
from devcloud.rest.query import Condition, Filter, Logic, Query

Body = Literal["rows", "keys", "none"]  # representation, primary keys (Location), nothing
Resolution = Literal["merge", "ignore"]

_COMPARISONS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_IS = {
    "null": "IS NULL",
    "not_null": "IS NOT NULL",
    "true": "IS TRUE",
    "false": "IS FALSE",
    "unknown": "IS UNKNOWN",
}


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type() output: usable in a CAST
    default: str | None = None  # the column default as SQL, from the catalog (trusted)


@dataclass(frozen=True)
class Relation:
    """A table or view (or an RPC's result set: then ``source`` is the FROM item)."""

    schema: str
    name: str
    columns: Mapping[str, Column]
    primary_key: tuple[str, ...] = ()
    source: str | None = None

    @property
    def ref(self) -> str:
        return f"{ident(self.schema)}.{ident(self.name)}"

    @property
    def from_item(self) -> str:
        return self.source or self.ref

    def column(self, name: str, *, payload: bool = False) -> Column:
        """The named column, or the error PostgREST gives for a query (42703) or body (PGRST204)."""
        found = self.columns.get(name)
        if found is None:
            raise unknown_column(self.name, name) if payload else undefined_column(self.name, name)
        return found

    def qualified(self, name: str) -> str:
        return f"{ident(self.name)}.{ident(self.column(name).name)}"


@dataclass
class Params:
    """Positional parameters; ``add`` returns the placeholder to put in the SQL."""

    values: list[object] = field(default_factory=list)

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[object, ...]


# --- pieces -----------------------------------------------------------------------------------


def select_list(rel: Relation, query: Query) -> str:
    parts = []
    for item in query.select:
        if item.column == "*":
            parts.append(f"{ident(rel.name)}.*")
            continue
        expr = rel.qualified(item.column)
        if item.cast:
            expr = f"CAST({expr} AS {item.cast})"
        if item.cast or item.alias:
            expr = f"{expr} AS {ident(item.alias or item.column)}"
        parts.append(expr)
    return ", ".join(parts)


def condition_sql(rel: Relation, cond: Condition, params: Params) -> str:
    if isinstance(cond, Logic):
        joiner = " AND " if cond.op == "and" else " OR "
        inner = joiner.join(condition_sql(rel, c, params) for c in cond.conditions)
        return f"NOT ({inner})" if cond.negated else f"({inner})"
    sql = _filter_sql(rel, cond, params)
    return f"NOT ({sql})" if cond.negated else sql


def _filter_sql(rel: Relation, f: Filter, params: Params) -> str:
    col = rel.qualified(f.column)
    col_type = rel.column(f.column).type
    if f.op in _COMPARISONS:
        return f"{col} {_COMPARISONS[f.op]} CAST({params.add(f.value)}::text AS {col_type})"
    if f.op in ("like", "ilike"):
        pattern = str(f.value).replace("*", "%")
        return f"{col}::text {f.op.upper()} {params.add(pattern)}::text"
    if f.op == "in":
        values = list(f.value) if isinstance(f.value, tuple) else [f.value]
        return f"{col} = ANY(CAST({params.add(values)}::text[] AS {col_type}[]))"
    return f"{col} {_IS[str(f.value)]}"


def where_sql(rel: Relation, query: Query, params: Params) -> str:
    if not query.where:
        return ""
    return " WHERE " + " AND ".join(condition_sql(rel, c, params) for c in query.where)


def order_sql(rel: Relation, query: Query) -> str:
    terms = []
    for term in query.order:
        sql = rel.qualified(term.column) + (" DESC" if term.descending else " ASC")
        if term.nulls_first is not None:
            sql += " NULLS FIRST" if term.nulls_first else " NULLS LAST"
        terms.append(sql)
    return " ORDER BY " + ", ".join(terms) if terms else ""


def _page_sql(limit: int | None, offset: int | None, params: Params) -> str:
    sql = f" LIMIT {params.add(limit)}::bigint" if limit is not None else ""
    return sql + (f" OFFSET {params.add(offset)}::bigint" if offset else "")


def _agg(body: Body, rel: Relation) -> str:
    if body == "none":
        return "NULL::text"
    if body == "keys":
        return "coalesce(json_agg(json_build_object(" + _key_pairs(rel) + ")), '[]')::text"
    return "coalesce(json_agg(_s), '[]')::text"


def _key_pairs(rel: Relation) -> str:
    keys = rel.primary_key or tuple(rel.columns)
    return ", ".join(f"'{k.replace(chr(39), chr(39) * 2)}', _s.{ident(k)}" for k in keys)


# --- statements -------------------------------------------------------------------------------


def build_read(
    rel: Relation,
    query: Query,
    *,
    count: bool = False,
    body: Body = "rows",
    limit: int | None = None,
    offset: int | None = None,
    params: Params | None = None,
) -> Statement:
    """GET/HEAD: the page (``limit``/``offset`` override the query's: Range header) and a count."""
    params = params or Params()
    where = where_sql(rel, query, params)
    total = f"(SELECT count(*) FROM {rel.from_item}{where})" if count else "NULL::bigint"
    inner = (
        f"SELECT {select_list(rel, query)} FROM {rel.from_item}{where}{order_sql(rel, query)}"
        + _page_sql(
            query.limit if limit is None else limit,
            query.offset if offset is None else offset,
            params,
        )
    )
    sql = f"SELECT {total}, count(*), {_agg(body, rel)} FROM ({inner}) _s"
    return Statement(sql, tuple(params.values))


def _returning(rel: Relation, query: Query, mutation: str, body: Body) -> str:
    if body == "none":
        return (
            f"WITH _m AS ({mutation} RETURNING 1) SELECT NULL::bigint, count(*), NULL::text FROM _m"
        )
    star = f"{ident(rel.name)}.*"
    selected = star if body == "keys" else select_list(rel, query)
    return (
        f"WITH _m AS ({mutation} RETURNING {star}) SELECT NULL::bigint, count(*), "
        f"{_agg(body, rel)} FROM (SELECT {selected} FROM _m AS {ident(rel.name)}) _s"
    )


def build_insert(
    rel: Relation,
    query: Query,
    *,
    payload: str,
    keys: tuple[str, ...],
    resolution: Resolution | None = None,
    missing_default: bool = False,
    body: Body = "rows",
) -> Statement:
    """POST: ``payload`` is a JSON array of objects; ``keys`` the payload's columns."""
    params = Params()
    names = query.columns if query.columns is not None else keys
    cols = [rel.column(name, payload=True) for name in names]
    target = ", ".join(ident(c.name) for c in cols)
    json_param = params.add(payload)
    if missing_default:
        values = ", ".join(_value_or_default(c, params) for c in cols)
        source = (
            f"json_array_elements({json_param}::json) AS _j(v)"
            f" CROSS JOIN LATERAL json_populate_record(NULL::{rel.ref}, _j.v) AS _r"
        )
    else:
        values = ", ".join(f"_r.{ident(c.name)}" for c in cols)
        source = f"json_populate_recordset(NULL::{rel.ref}, {json_param}::json) AS _r"
    mutation = (
        f"INSERT INTO {rel.ref} AS {ident(rel.name)} ({target}) SELECT {values} FROM {source}"
        if cols
        else f"INSERT INTO {rel.ref} AS {ident(rel.name)} SELECT FROM {source}"
    )
    mutation += _on_conflict(rel, query, [c.name for c in cols], resolution)
    return Statement(_returning(rel, query, mutation, body), tuple(params.values))


def _value_or_default(col: Column, params: Params) -> str:
    default = col.default or "NULL"
    present = f"(_j.v::jsonb) ? {params.add(col.name)}::text"
    return f"CASE WHEN {present} THEN _r.{ident(col.name)} ELSE {default} END"


def _on_conflict(
    rel: Relation, query: Query, names: list[str], resolution: Resolution | None
) -> str:
    if resolution is None:
        return ""
    target = query.on_conflict or rel.primary_key
    for name in target:
        rel.column(name)
    spec = f" ({', '.join(ident(n) for n in target)})" if target else ""
    if resolution == "ignore" or not names:
        return f" ON CONFLICT{spec} DO NOTHING"
    if not target:
        raise RestError(
            400,
            "42P10",
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            hint="Pass on_conflict with the columns of a unique constraint",
        )
    updates = ", ".join(f"{ident(n)} = EXCLUDED.{ident(n)}" for n in names)
    return f" ON CONFLICT{spec} DO UPDATE SET {updates}"


def build_update(
    rel: Relation, query: Query, *, payload: str, keys: tuple[str, ...], body: Body = "rows"
) -> Statement:
    """PATCH: ``payload`` is one JSON object whose ``keys`` are set on every matching row."""
    params = Params()
    cols = [rel.column(name, payload=True) for name in keys]
    sets = ", ".join(f"{ident(c.name)} = pgrst_body.{ident(c.name)}" for c in cols)
    json_param = params.add(payload)
    mutation = (
        f"UPDATE {rel.ref} SET {sets} FROM json_populate_record(NULL::{rel.ref}, "
        f"{json_param}::json) AS pgrst_body{where_sql(rel, query, params)}"
    )
    return Statement(_returning(rel, query, mutation, body), tuple(params.values))


def build_delete(rel: Relation, query: Query, *, body: Body = "rows") -> Statement:
    params = Params()
    mutation = f"DELETE FROM {rel.ref}{where_sql(rel, query, params)}"
    return Statement(_returning(rel, query, mutation, body), tuple(params.values))
