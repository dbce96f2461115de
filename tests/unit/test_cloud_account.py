"""The account cloud.status shows, as kept in the local store (daemon/sync/cloud/status.py):
what was written reads back the same, anything else is refused (never shown)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sync.cloud.records import Membership, Profile
from daemon.sync.cloud.status import AccountSnapshot, account_fields
from daemon.sync.cloud.wire import CloudUser

URL = "http://127.0.0.1:54321"
PROFILE = Profile("u1", "ada@example.com", "Ada", None)
MEMBER = Membership("o1", "Acme", "owner", "2026-01-01T00:00:00Z")
AS_OF = "2026-11-23T00:20:05.000Z"


def test_a_kept_account_reads_back_as_it_was_shown() -> None:
    kept = AccountSnapshot.loaded(URL, "u1", PROFILE, MEMBER, AS_OF)
    again = AccountSnapshot.from_json(kept.to_json())
    assert again == kept
    assert again.status_fields() == {**account_fields(PROFILE, MEMBER), "account_as_of": AS_OF}
    assert account_fields(PROFILE, MEMBER)["account_as_of"] is None
    none = AccountSnapshot.loaded(URL, "u1", None, None, AS_OF)  # no profile, no organisation
    assert AccountSnapshot.from_json(none.to_json()).status_fields() == {
        "profile": None,
        "organization": None,
        "role": None,
        "account_as_of": AS_OF,
    }


def test_it_shows_for_its_user_in_its_cloud_only() -> None:
    kept = AccountSnapshot.loaded(URL, "u1", PROFILE, MEMBER, AS_OF)
    assert kept.shows(URL, CloudUser("u1", "ada@example.com"))
    assert not kept.shows(URL, CloudUser("u2", "bob@example.com"))
    assert not kept.shows("https://other.example", CloudUser("u1"))
    assert not kept.shows(URL, None)


GOOD = AccountSnapshot.loaded(URL, "u1", PROFILE, MEMBER, AS_OF).to_json()


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "text",
        {**GOOD, "url": None},
        {**GOOD, "user_id": 5},
        {**GOOD, "as_of": None},
        {**GOOD, "role": 1},
        {**GOOD, "profile": {"email": "x"}},
        {**GOOD, "profile": {**GOOD["profile"], "display_name": 3}},
        {**GOOD, "organization": {"id": "o1"}},
        {**GOOD, "organization": "Acme"},
    ],
)
def test_anything_else_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        AccountSnapshot.from_json(bad)
