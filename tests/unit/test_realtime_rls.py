"""How SELECT policies combine for a row that is no longer in its table."""

from __future__ import annotations

from devcloud.realtime.rls import Policy, distinct_images, quote_ident, visibility_predicate


def predicate(*policies: Policy, **flags: bool) -> str | None:
    options = {"rls": True, "force": False, "owner": False, "bypass": False, **flags}
    return visibility_predicate(policies=policies, **options)


def test_rls_off_for_the_role() -> None:
    assert predicate(rls=False) is None
    assert predicate(bypass=True) is None
    assert predicate(owner=True) is None
    assert predicate(owner=True, force=True) == "false"


def test_default_deny_without_permissive_policies() -> None:
    assert predicate() == "false"
    assert predicate(Policy(False, "org = 'a'")) == "false"


def test_permissive_or_and_restrictive_and() -> None:
    combined = predicate(
        Policy(True, "org = 'a'"), Policy(True, None), Policy(False, "deleted_at IS NULL")
    )
    assert combined == "((org = 'a') OR (true)) AND (deleted_at IS NULL)"


def test_quote_ident() -> None:
    assert quote_ident('we"ird') == '"we""ird"'


MEMBER = "(workspace_id IN (SELECT public.member_workspace_ids()))"


def test_images_are_reduced_to_the_named_columns_and_judged_once() -> None:
    images = [
        {"id": 1, "workspace_id": "a", "content": "x"},
        {"id": 2, "workspace_id": "a", "content": "y"},
        {"id": 3, "workspace_id": "b", "content": "x"},
    ]
    distinct, which = distinct_images(images, MEMBER, "messages")
    assert distinct == [{"workspace_id": "a"}, {"workspace_id": "b"}]
    assert which == [0, 0, 1]
    # a name inside a longer word is not that column; a qualified or cast one is
    rows = [{"org": "a", "title": str(i), "tag": "t"} for i in range(3)] + [
        {"org": "b", "tag": "u"}
    ]
    distinct, which = distinct_images(
        rows, "((t.org)::text = 'a') AND (tags_of() IS NULL)", "todos"
    )
    assert distinct == [{"org": "a"}, {"org": "b"}]
    assert which == [0, 0, 0, 1]


def test_the_key_columns_are_always_judged() -> None:
    images = [{"id": 1, "workspace_id": "a", "content": "x"}, {"id": 1, "workspace_id": "a"}]
    distinct, which = distinct_images(images, MEMBER, "messages", keys=["id"])
    assert distinct == [{"id": 1, "workspace_id": "a"}]
    assert which == [0, 0]


def test_images_stay_whole_when_the_predicate_may_use_the_whole_row() -> None:
    rows = [{"org": "a", "title": "x"}, {"org": "a", "title": "x"}, {"org": "a", "title": "y"}]
    distinct, which = distinct_images(rows, "check_row(todos.*)", "todos")
    assert distinct == [rows[0], rows[2]]
    assert which == [0, 0, 1]
    quoted = [{"Org": "a", "title": "x"}, {"Org": "b", "title": "x"}]
    distinct, which = distinct_images(quoted, "(\"Org\" = 'a')", "todos")
    assert distinct == quoted
    assert which == [0, 1]
