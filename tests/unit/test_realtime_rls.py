"""How SELECT policies combine for a row that is no longer in its table."""

from __future__ import annotations

from devcloud.realtime.rls import Policy, quote_ident, visibility_predicate


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
