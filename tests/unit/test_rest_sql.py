"""devcloud.rest.sql and devcloud.rest.rpc: AST → parameterised SQL (no database here; the
interop tests run the same statements on PostgreSQL)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from devcloud.rest.errors import RestError
from devcloud.rest.query import Query, parse_query
from devcloud.rest.rpc import Argument, Function, build_call, choose_overload
from devcloud.rest.sql import (
    Column,
    Relation,
    build_delete,
    build_insert,
    build_read,
    build_update,
    ident,
)

ITEMS = Relation(
    "public",
    "items",
    {
        "id": Column("id", "bigint", "nextval('items_id_seq'::regclass)"),
        "name": Column("name", "text"),
        "qty": Column("qty", "integer", "5"),
        'odd"col': Column('odd"col', "character varying(20)"),
    },
    primary_key=("id",),
)


def q(text: str) -> Query:
    return parse_query(parse_qsl(text, keep_blank_values=True))


def test_ident_doubles_quotes() -> None:
    assert ident('a"b') == '"a""b"'


def test_read_quotes_identifiers_and_passes_values_as_text_params() -> None:
    stmt = build_read(
        ITEMS, q("select=id,label:name&qty=gte.3&name=like.*x*&order=id.desc&limit=2")
    )
    assert stmt.params == ("3", "%x%", 2)
    assert '"items"."id", "items"."name" AS "label"' in stmt.sql
    assert 'FROM "public"."items" WHERE "items"."qty" >= CAST($1::text AS integer)' in stmt.sql
    assert '"items"."name"::text LIKE $2::text' in stmt.sql
    assert 'ORDER BY "items"."id" DESC LIMIT $3::bigint' in stmt.sql
    assert stmt.sql.startswith("SELECT NULL::bigint, count(*), coalesce(json_agg(_s), '[]')::text")


def test_values_never_enter_the_sql_text() -> None:
    evil = "1'); DROP TABLE items; --"
    stmt = build_read(ITEMS, parse_query([("name", f"eq.{evil}"), ("or", f'(qty.eq."{evil}")')]))
    assert "DROP" not in stmt.sql and stmt.params == (evil, evil)


def test_odd_column_names_are_quoted_and_cast_with_their_type() -> None:
    stmt = build_read(ITEMS, parse_query([('"odd\\"col"', "in.(a,b)")]))
    assert '"items"."odd""col" = ANY(CAST($1::text[] AS character varying(20)[]))' in stmt.sql
    assert stmt.params == (["a", "b"],)


def test_count_repeats_the_filter_without_paging() -> None:
    stmt = build_read(ITEMS, q("qty=is.null&limit=1&offset=4"), count=True)
    assert '(SELECT count(*) FROM "public"."items" WHERE "items"."qty" IS NULL)' in stmt.sql
    assert stmt.params == (1, 4)


def test_range_overrides_and_head_skips_the_body() -> None:
    stmt = build_read(ITEMS, Query(), limit=10, offset=20, body="none")
    assert "LIMIT $1::bigint OFFSET $2::bigint" in stmt.sql and stmt.params == (10, 20)
    assert "json_agg" not in stmt.sql


def test_logic_and_negation() -> None:
    stmt = build_read(ITEMS, q("or=(id.eq.1,not.and(qty.gt.2,name.is.not_null))&id=not.eq.3"))
    assert (
        'WHERE ("items"."id" = CAST($1::text AS bigint) OR NOT ("items"."qty" > '
        'CAST($2::text AS integer) AND "items"."name" IS NOT NULL)) AND NOT ("items"."id" = '
        "CAST($3::text AS bigint))"
    ) in stmt.sql


@pytest.mark.parametrize(
    "query", ["select=nope", "nope=eq.1", "order=nope", "or=(nope.eq.1)", "select=a:nope::text"]
)
def test_unknown_columns_in_the_query_are_42703(query: str) -> None:
    with pytest.raises(RestError) as caught:
        build_read(ITEMS, q(query))
    assert caught.value.code == "42703" and caught.value.status == 400
    assert "items.nope" in caught.value.message


def test_insert_from_json_recordset() -> None:
    stmt = build_insert(ITEMS, Query(), payload='[{"name":"a"}]', keys=("name",))
    assert stmt.params == ('[{"name":"a"}]',)
    assert (
        'INSERT INTO "public"."items" AS "items" ("name") SELECT _r."name" FROM '
        'json_populate_recordset(NULL::"public"."items", $1::json) AS _r RETURNING "items".*'
    ) in stmt.sql


def test_insert_unknown_payload_column_is_pgrst204() -> None:
    with pytest.raises(RestError) as caught:
        build_insert(ITEMS, Query(), payload="[]", keys=("colour",))
    assert caught.value.code == "PGRST204"
    assert (
        caught.value.message == "Could not find the 'colour' column of 'items' in the schema cache"
    )


def test_insert_columns_param_wins_over_payload_keys() -> None:
    stmt = build_insert(ITEMS, q("columns=qty"), payload="[]", keys=("name", "colour"))
    assert '("qty") SELECT _r."qty"' in stmt.sql


def test_missing_default_uses_the_catalog_default_per_row() -> None:
    stmt = build_insert(ITEMS, q("columns=name,qty"), payload="[]", keys=(), missing_default=True)
    assert 'CASE WHEN (_j.v::jsonb) ? $3::text THEN _r."qty" ELSE 5 END' in stmt.sql
    assert "ELSE NULL END" in stmt.sql  # name has no default
    assert stmt.params == ("[]", "name", "qty")


def test_upserts() -> None:
    merge = build_insert(ITEMS, Query(), payload="[]", keys=("id", "name"), resolution="merge")
    assert (
        'ON CONFLICT ("id") DO UPDATE SET "id" = EXCLUDED."id", "name" = EXCLUDED."name"'
        in merge.sql
    )
    ignore = build_insert(
        ITEMS, q("on_conflict=name"), payload="[]", keys=("name",), resolution="ignore"
    )
    assert 'ON CONFLICT ("name") DO NOTHING' in ignore.sql
    keyless = Relation("public", "log", {"x": Column("x", "text")})
    with pytest.raises(RestError):
        build_insert(keyless, Query(), payload="[]", keys=("x",), resolution="merge")


def test_minimal_and_key_bodies() -> None:
    minimal = build_insert(ITEMS, Query(), payload="[]", keys=("name",), body="none")
    assert minimal.sql.endswith("RETURNING 1) SELECT NULL::bigint, count(*), NULL::text FROM _m")
    keys = build_insert(ITEMS, Query(), payload="[]", keys=("name",), body="keys")
    assert "json_build_object('id', _s.\"id\")" in keys.sql


def test_update_and_delete() -> None:
    update = build_update(ITEMS, q("id=eq.7&select=id"), payload='{"qty":1}', keys=("qty",))
    assert update.params == ('{"qty":1}', "7")
    assert (
        'UPDATE "public"."items" SET "qty" = pgrst_body."qty" FROM json_populate_record('
        'NULL::"public"."items", $1::json) AS pgrst_body '
        'WHERE "items"."id" = CAST($2::text AS bigint)'
    ) in update.sql
    assert 'SELECT "items"."id" FROM _m AS "items"' in update.sql
    delete = build_delete(ITEMS, q("qty=lt.0"))
    assert (
        'DELETE FROM "public"."items" WHERE "items"."qty" < CAST($1::text AS integer)' in delete.sql
    )


ADD = Function(
    "public", "add", (Argument("a", "integer"), Argument("b", "integer", True)), False, "scalar", {}
)
ADD3 = Function(
    "public", "add", (Argument("a", "integer"), Argument("c", "integer")), False, "scalar", {}
)


def test_overloads_are_chosen_by_argument_names() -> None:
    assert choose_overload("public", "add", [ADD, ADD3], {"a"}) is ADD
    assert choose_overload("public", "add", [ADD, ADD3], {"a", "c"}) is ADD3
    with pytest.raises(RestError) as caught:
        choose_overload("public", "add", [ADD, ADD3], {"z"})
    assert caught.value.code == "PGRST202" and caught.value.status == 404
    assert caught.value.message == "Could not find the function public.add(z) in the schema cache"


def test_call_passes_arguments_as_one_json_record() -> None:
    stmt = build_call(ADD, Query(), given=("a",), args_json='{"a":1}')
    assert stmt.params == ('{"a":1}',)
    assert stmt.sql == (
        'SELECT NULL::bigint, 1::bigint, to_json("add")::text FROM json_to_record($1::json) '
        'AS _a("a" integer) CROSS JOIN LATERAL "public"."add"("a" => _a."a") AS "add"'
    )


def test_calls_by_result_kind() -> None:
    series = Function("public", "s", (), True, "scalar", {})
    assert "json_agg(_s.v)" in build_call(series, q("limit=2"), given=(), args_json="{}").sql
    void = Function("public", "v", (), False, "void", {})
    assert build_call(void, Query(), given=(), args_json="{}").sql.endswith('"public"."v"() AS "v"')
    rows = Function("public", "r", (), True, "composite", {"x": Column("x", "integer")})
    stmt = build_call(rows, q("x=gt.1&select=x"), given=(), args_json="{}", count=True)
    assert (
        'SELECT "r"."x" FROM "public"."r"() AS "r" WHERE "r"."x" > CAST($1::text AS integer)'
        in stmt.sql
    )
    with pytest.raises(RestError):
        build_call(series, q("x=eq.1"), given=(), args_json="{}")
