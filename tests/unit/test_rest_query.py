"""devcloud.rest.query: PostgREST query strings → AST, and clear errors for malformed input."""

from __future__ import annotations

import pytest

from devcloud.rest.errors import RestError
from devcloud.rest.query import (
    Filter,
    Logic,
    OrderTerm,
    Query,
    SelectItem,
    parse_query,
    split_top,
    unquote,
)


def parse(query: str) -> Query:
    from urllib.parse import parse_qsl

    return parse_query(parse_qsl(query, keep_blank_values=True))


def parse_fails(query: str) -> RestError:
    with pytest.raises(RestError) as caught:
        parse(query)
    assert caught.value.status == 400 and caught.value.code == "PGRST100"
    return caught.value


def test_defaults_select_everything() -> None:
    assert parse("") == Query()
    assert Query().select == (SelectItem("*"),)


def test_select_columns_aliases_and_casts() -> None:
    q = parse("select=id,label:name,qty::text,n:qty::bigint,*")
    assert q.select == (
        SelectItem("id"),
        SelectItem("name", alias="label"),
        SelectItem("qty", cast="text"),
        SelectItem("qty", alias="n", cast="bigint"),
        SelectItem("*"),
    )


def test_select_quoted_names_and_spaces() -> None:
    q = parse('select="my col", "a:b":x')
    assert q.select == (SelectItem("my col"), SelectItem("x", alias="a:b"))


@pytest.mark.parametrize(
    ("select", "detail"),
    [
        ("id,owner(name)", "embedded"),
        ("...owner(name)", "embedded"),
        ("data->>key", "JSON paths"),
        ("qty::int;drop", "invalid cast"),
        ("id,,name", "empty column"),
        ("x:*", "'*' takes no alias"),
    ],
)
def test_select_errors(select: str, detail: str) -> None:
    error = parse_fails(f"select={select}")
    assert "select parameter" in error.message and detail in str(error.details)


def test_comparison_filters() -> None:
    q = parse("a=eq.1&b=neq.x&c=gt.2&d=gte.3&e=lt.4&f=lte.5&g=like.*an*&h=ilike.A%25")
    assert q.where == (
        Filter("a", "eq", "1"),
        Filter("b", "neq", "x"),
        Filter("c", "gt", "2"),
        Filter("d", "gte", "3"),
        Filter("e", "lt", "4"),
        Filter("f", "lte", "5"),
        Filter("g", "like", "*an*"),
        Filter("h", "ilike", "A%"),
    )


def test_value_keeps_dots_and_text_after_the_operator() -> None:
    assert parse("v=eq.1.5.x").where == (Filter("v", "eq", "1.5.x"),)
    assert parse("v=eq.").where == (Filter("v", "eq", ""),)


def test_in_lists_with_quotes_and_escapes() -> None:
    q = parse('s=in.(a,"b c","d,e","q\\"x",null)')
    assert q.where == (Filter("s", "in", ("a", "b c", "d,e", 'q"x', "null")),)
    assert parse("s=in.()").where == (Filter("s", "in", ()),)


def test_is_values_are_case_insensitive() -> None:
    q = parse("a=is.NULL&b=is.not_null&c=is.true&d=is.False&e=is.unknown")
    assert [f.value for f in q.where if isinstance(f, Filter)] == [
        "null",
        "not_null",
        "true",
        "false",
        "unknown",
    ]


def test_not_prefix_negates() -> None:
    assert parse("a=not.eq.1").where == (Filter("a", "eq", "1", negated=True),)
    assert parse("a=not.in.(1,2)").where == (Filter("a", "in", ("1", "2"), negated=True),)


def test_quoted_filter_column() -> None:
    assert parse("%22a.b%22=eq.1").where == (Filter("a.b", "eq", "1"),)


@pytest.mark.parametrize(
    "query",
    [
        "a=gtx.1",
        "a=1",
        "a=eq",
        "a=not.1",
        "a=in.1,2",
        "a=in.(1,2",
        "a=is.maybe",
        "a=cs.{1}",
        "owner.name=eq.x",
        "a->>b=eq.1",
    ],
)
def test_malformed_filters(query: str) -> None:
    error = parse_fails(query)
    assert "filter" in error.message


def test_or_and_nested_logic() -> None:
    q = parse("or=(a.eq.1,and(b.gt.2,c.is.null),not.or(d.lt.0,e.not.eq.x))")
    assert q.where == (
        Logic(
            "or",
            (
                Filter("a", "eq", "1"),
                Logic("and", (Filter("b", "gt", "2"), Filter("c", "is", "null"))),
                Logic(
                    "or",
                    (Filter("d", "lt", "0"), Filter("e", "eq", "x", negated=True)),
                    negated=True,
                ),
            ),
        ),
    )


def test_logic_values_may_be_quoted_and_contain_lists() -> None:
    q = parse('and=(name.eq."a,b",id.in.(1,"2,3"))&not.and=(x.eq.1)')
    assert q.where == (
        Logic("and", (Filter("name", "eq", "a,b"), Filter("id", "in", ("1", "2,3")))),
        Logic("and", (Filter("x", "eq", "1"),), negated=True),
    )


@pytest.mark.parametrize(
    "value",
    ["a.eq.1", "()", "(a.eq.1", "(a.eq.1))", "(a)", "(a.zz.1)", '(a.eq."x)', "(and(a.eq.1)"],
)
def test_malformed_logic_trees(value: str) -> None:
    error = parse_fails(f"or={value}")
    assert "logic tree" in error.message


def test_order_terms() -> None:
    q = parse("order=a,b.desc,c.asc.nullsfirst,d.nullslast,%22e.f%22.desc")
    assert q.order == (
        OrderTerm("a"),
        OrderTerm("b", descending=True),
        OrderTerm("c", nulls_first=True),
        OrderTerm("d", nulls_first=False),
        OrderTerm("e.f", descending=True),
    )


@pytest.mark.parametrize(
    "order", ["a.up", "a.desc.asc", "a.desc.nullsfirst.x", ",a", "a.nullsfirst.desc"]
)
def test_malformed_order(order: str) -> None:
    assert "order" in parse_fails(f"order={order}").message


def test_limit_offset_columns_on_conflict() -> None:
    q = parse('limit=10&offset=5&columns="done","title",id&on_conflict=a,b')
    assert (q.limit, q.offset) == (10, 5)
    assert q.columns == ("done", "title", "id")
    assert q.on_conflict == ("a", "b")


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "limit=x",
        "offset=1.5",
        "limit=9223372036854775808",
        "limit=\u0663",
        "columns=a,,b",
        "on_conflict=",
    ],
)
def test_malformed_paging_and_lists(query: str) -> None:
    parse_fails(query)


def test_skipped_keys_are_kept_aside() -> None:
    q = parse_query([("a", "1"), ("b", "eq.2"), ("select", "x")], skip={"a"})
    assert q.extra == {"a": "1"} and q.where == (Filter("b", "eq", "2"),)
    assert q.select == (SelectItem("x"),)


def test_lexical_helpers() -> None:
    assert split_top('a,(b,c),"d,e"', "x") == ["a", "(b,c)", '"d,e"']
    assert unquote('"a\\\\b\\"c"') == 'a\\b"c'
    assert unquote("plain") == "plain"
