"""``/rpc/<function>``: choosing an overload by argument names and building the call (pure).

Arguments travel as one JSON object parameter that ``json_to_record`` turns into typed values
(so JSON arrays become PostgreSQL arrays, strings from a GET query string are parsed by each
type's input function), and the function is called with named notation.

Results are shaped as PostgREST shapes them: a scalar (or a single composite row) as that JSON
value, a set as a JSON array; composite sets also take ``select``, filters, ``order`` and paging.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from devcloud.rest.errors import RestError
from devcloud.rest.query import Query
from devcloud.rest.sql import Body, Column, Params, Relation, Statement, build_read, ident

Kind = Literal["scalar", "composite", "void"]


@dataclass(frozen=True)
class Argument:
    name: str
    type: str
    has_default: bool = False


@dataclass(frozen=True)
class Function:
    schema: str
    name: str
    args: tuple[Argument, ...]
    returns_set: bool
    kind: Kind
    columns: Mapping[str, Column]  # the result's columns when ``kind == "composite"``

    @property
    def ref(self) -> str:
        return f"{ident(self.schema)}.{ident(self.name)}"

    def accepts(self, given: Collection[str]) -> bool:
        names = {a.name for a in self.args}
        required = {a.name for a in self.args if not a.has_default}
        return required <= set(given) <= names


def argument_names(candidates: Sequence[Function]) -> frozenset[str]:
    return frozenset(a.name for fn in candidates for a in fn.args)


def choose_overload(
    schema: str, name: str, candidates: Sequence[Function], given: Collection[str]
) -> Function:
    """The overload whose arguments fit ``given``; 404 PGRST202 (as PostgREST) when none does."""
    fitting = [fn for fn in candidates if fn.accepts(given)]
    if len(fitting) == 1:
        return fitting[0]
    if len(fitting) > 1:  # prefer the one with the fewest unused optional arguments
        return min(fitting, key=lambda fn: len(fn.args))
    listed = ", ".join(sorted(given))
    raise RestError(
        404,
        "PGRST202",
        f"Could not find the function {schema}.{name}({listed}) in the schema cache",
        f"Searched for the function {schema}.{name} with parameters {listed or '(none)'}, "
        "but no matches were found in the schema cache.",
    )


def call_source(fn: Function, given: Collection[str], params: Params, args_json: str) -> str:
    """The FROM item calling ``fn`` (aliased by its name) with the given arguments.

    When every argument is ``jsonb`` the body is parsed once, as jsonb, and each argument is a
    part of it (the same values ``json_to_record`` gives, without lexing the body as json and
    then parsing each argument's text again: this is most of what a large ``sync_push`` costs
    before it starts).
    """
    alias = ident(fn.name)
    used = [a for a in fn.args if a.name in given]
    if not used:
        return f"{fn.ref}() AS {alias}"
    definitions = ", ".join(f"{ident(a.name)} {a.type}" for a in used)
    named = ", ".join(f"{ident(a.name)} => _a.{ident(a.name)}" for a in used)
    kind = "jsonb" if all(a.type == "jsonb" for a in used) else "json"
    return (
        f"{kind}_to_record({params.add(args_json)}::{kind}) AS _a({definitions})"
        f" CROSS JOIN LATERAL {fn.ref}({named}) AS {alias}"
    )


def raw_body_function(candidates: Sequence[Function], query: Query) -> Function | None:
    """The function a POST body can be handed to PostgreSQL as it is (``build_raw_call``), or
    None: one overload, returning one scalar, whose arguments are all ``jsonb`` without
    defaults (as ``sync_push(changes jsonb)``), called without select, filters or order."""
    if len(candidates) != 1:
        return None
    fn = candidates[0]
    if fn.kind != "scalar" or fn.returns_set or not fn.args:
        return None
    if any(a.type != "jsonb" or a.has_default for a in fn.args):
        return None
    if query.where or query.order or query.select != Query().select:
        return None
    return fn


def build_raw_call(fn: Function, body_json: str) -> Statement:
    """The call of a ``raw_body_function`` on the request body, unparsed by us.

    The body is one ``jsonb`` parameter (PostgreSQL parses it once, when the statement is
    bound: malformed JSON fails there, before anything runs). The call runs only when the body
    is an object whose keys are exactly the arguments' names (a one-time filter); otherwise the
    statement returns no row and the caller takes the ordinary path, which explains why.
    """
    params = Params()
    body = f"{params.add(body_json)}::jsonb"
    names = f"{params.add(sorted(a.name for a in fn.args))}::text[]"
    definitions = ", ".join(f"{ident(a.name)} jsonb" for a in fn.args)
    named = ", ".join(f"{ident(a.name)} => _a.{ident(a.name)}" for a in fn.args)
    alias = ident(fn.name)
    guard = (
        f"CASE WHEN jsonb_typeof({body}) = 'object' THEN ARRAY("
        f'SELECT k FROM jsonb_object_keys({body}) AS k ORDER BY k COLLATE "C") = {names}'
        " ELSE false END"
    )
    sql = (
        f"SELECT NULL::bigint, 1::bigint, to_json({alias})::text"
        f" FROM jsonb_to_record({body}) AS _a({definitions})"
        f" CROSS JOIN LATERAL {fn.ref}({named}) AS {alias} WHERE {guard}"
    )
    return Statement(sql, tuple(params.values))


def build_call(
    fn: Function,
    query: Query,
    *,
    given: Collection[str],
    args_json: str,
    count: bool = False,
    body: Body = "rows",
    limit: int | None = None,
    offset: int | None = None,
) -> Statement:
    """The call as one statement returning ``(total, n, body)`` like every other statement."""
    params = Params()
    source = call_source(fn, given, params, args_json)
    if fn.kind == "composite":
        rel = Relation(fn.schema, fn.name, fn.columns, source=source)
        return build_read(
            rel, query, count=count, body=body, limit=limit, offset=offset, params=params
        )
    if query.where or query.order or query.select != Query().select:
        raise RestError(
            400,
            "PGRST100",
            "select, filters and order apply only to functions returning table rows",
        )
    alias = ident(fn.name)
    if fn.kind == "void":
        return Statement(
            f"SELECT NULL::bigint, count(*), NULL::text FROM {source}", tuple(params.values)
        )
    if not fn.returns_set:
        sql = f"SELECT NULL::bigint, 1::bigint, to_json({alias})::text FROM {source}"
        return Statement(sql, tuple(params.values))
    total = f"(SELECT count(*) FROM {source})" if count else "NULL::bigint"
    lim, off = (
        (query.limit if limit is None else limit),
        (query.offset if offset is None else offset),
    )
    page = f" LIMIT {params.add(lim)}::bigint" if lim is not None else ""
    page += f" OFFSET {params.add(off)}::bigint" if off else ""
    agg = "NULL::text" if body == "none" else "coalesce(json_agg(_s.v), '[]')::text"
    sql = f"SELECT {total}, count(*), {agg} FROM (SELECT {alias} AS v FROM {source}{page}) _s"
    return Statement(sql, tuple(params.values))
