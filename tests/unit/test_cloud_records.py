"""daemon/sync/cloud/records.py and status.py: checking what the cloud's REST API returns."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.sync.cloud.records import (
    CloudWorkspace,
    Profile,
    PullMarks,
    check_marks,
    check_pull_page,
    check_pull_progress,
    check_push_results,
    check_uuid,
    cursor_position,
    later_cursor,
    oldest_first,
    parse_rows,
    pull_head,
)
from daemon.sync.cloud.status import SessionStatus
from daemon.sync.cloud.wire import CloudUser

WS = "0194f3a2-7c41-7d2e-9a10-3b5c6d7e8f90"


def test_cursors_are_ordered_by_txid_then_seq_and_unknown_forms_by_nobody() -> None:
    assert cursor_position(None) == cursor_position("") == (0, 0)  # the start
    assert cursor_position("12:7") == (12, 7)
    assert cursor_position("9:100") < cursor_position("10:1")  # type: ignore[operator]
    for odd in ("7", "a:1", "1:2:3", " 1:2", "1:-2", "1" * 21 + ":1"):
        assert cursor_position(odd) is None
    assert later_cursor("10:1", "9:100") == "10:1"
    assert later_cursor("9:100", "10:1") == "10:1"
    assert later_cursor("10:1", "10:1") == "10:1"
    assert later_cursor(None, "1:1") == "1:1"
    # an order it cannot read: the second (the newer answer), as without marks
    assert later_cursor("99", "7") == "7"
    assert later_cursor("10:1", "7") == "7"


def test_marks_need_a_count_and_ascending_cursors_no_more_than_the_count_allows() -> None:
    body = {"count": 25, "marks": ["3:10", "4:2"]}
    assert check_marks(body, 10) == PullMarks(25, ("3:10", "4:2"))
    assert check_marks({"count": 0, "marks": []}, 10) == PullMarks(0, ())
    bad: list[Any] = [
        [],
        {"count": -1, "marks": []},
        {"count": True, "marks": []},
        {"count": 25, "marks": "3:10"},
        {"count": 25, "marks": ["3:10", "4:2", "5:1"]},  # 3 pages of 10 need 25 rows+
        {"count": 25, "marks": ["4:2", "3:10"]},  # not ascending
        {"count": 25, "marks": ["3:10", "3:10"]},
        {"count": 25, "marks": ["3:10", 7]},
        {"count": 25, "marks": ["3:10", "x"]},
        {"count": 25, "marks": ["", "3:10"]},
    ]
    for body in bad:
        with pytest.raises(ValueError, match="sync_pull_marks"):
            check_marks(body, 10)


def test_no_page_starts_at_the_last_row() -> None:
    marks = PullMarks(30, ("1:10", "1:20", "1:30"))
    assert marks.page_starts(10) == ("1:10", "1:20")  # the third page ends at row 30
    assert PullMarks(31, marks.marks).page_starts(10) == marks.marks  # row 31 after it
    assert PullMarks(0, ()).page_starts(10) == ()


def test_marks_seen_from_the_end_of_a_first_page() -> None:
    """Marks of every 10th row after a cursor, read from the 10th or 20th row (where a first
    page of that many rows ends) as marks of every 40th row after it."""
    marks = PullMarks(95, tuple(f"1:{p}" for p in range(10, 91, 10)))
    assert marks.seen_from(10, 10, 40) == ("1:10", PullMarks(85, ("1:50", "1:90")))
    assert marks.seen_from(10, 20, 40) == ("1:20", PullMarks(75, ("1:60",)))
    assert marks.seen_from(10, 10, 10) == ("1:10", PullMarks(85, marks.marks[1:]))
    assert marks.seen_from(10, 90, 40) == ("1:90", PullMarks(5, ()))
    # not marked: past the marked rows, or off the step; pages that are no multiple of it
    assert marks.seen_from(10, 100, 40) is None
    assert marks.seen_from(10, 15, 40) is None
    assert marks.seen_from(10, 10, 45) is None
    assert marks.seen_from(10, 0, 40) is None
    assert PullMarks(0, ()).seen_from(10, 10, 40) is None


def test_push_results_need_one_valid_status_per_change() -> None:
    ok = [
        {"id": WS, "table": "workspaces", "status": "applied"},
        {"id": WS, "table": "messages", "status": "rejected", "reason": "forbidden"},
        {"id": WS, "table": "tasks", "status": "superseded"},
    ]
    assert check_push_results(ok, 3) == ok
    for bad, sent in [
        (ok, 2),
        ({"results": ok}, 3),
        ([*ok[:2], {"id": WS, "status": "maybe"}], 3),
        ([*ok[:2], "applied"], 3),
    ]:
        with pytest.raises(ValueError):
            check_push_results(bad, sent)


def test_pull_pages() -> None:
    page: dict[str, Any] = {
        "changes": [{"table": "workspaces", "id": WS, "workspace_id": WS, "row": {"id": WS}}],
        "cursor": "812:44",
        "has_more": False,
    }
    assert check_pull_page(page) is page
    assert check_pull_page({"changes": [], "cursor": None, "has_more": False})
    for bad in [
        [],
        {**page, "changes": None},
        {**page, "changes": ["row"]},
        {**page, "cursor": 812},
        {**page, "has_more": "no"},
        {"changes": [], "cursor": None},
    ]:
        with pytest.raises(ValueError):
            check_pull_page(bad)


def test_a_pull_answer_head_is_read_off_its_first_bytes() -> None:
    """syncd's sync_pull puts cursor and has_more first (as PostgreSQL's json_build_object
    writes them); anything else is left to the whole answer's decoding (None)."""
    rows = b'[{"table" : "messages", "id" : "x", "row" : {"cursor" : "9:9"}}]'
    assert pull_head(b'{"cursor" : "812:44", "has_more" : true, "changes" : ' + rows + b"}") == (
        "812:44",
        True,
    )
    assert pull_head(b'{"cursor":null,"has_more":false,"changes":[]}') == (None, False)
    assert pull_head(b' \n{ "cursor" :"", "has_more": false , "changes": []}') == ("", False)
    for other in [
        b'{"changes" : [], "cursor" : "812:44", "has_more" : true}',  # another key order
        b'{"has_more" : true, "cursor" : "812:44", "changes" : []}',
        b'{"cursor" : "8\\u0031:44", "has_more" : true, "changes" : []}',  # an escape
        '{"cursor" : "812:44\u00e9", "has_more" : true, "changes" : []}'.encode(),  # not ASCII
        b'{"cursor" : 812, "has_more" : true, "changes" : []}',
        b'{"cursor" : "812:44", "has_more" : 1, "changes" : []}',
        b'{"cursor" : "812:44", "has_more" : true}',  # nothing after: not the head of a page
        b'{"cursor" : "' + b"9" * 257 + b'", "has_more" : true, "changes" : []}',
        b"<html>",
        b"",
    ]:
        assert pull_head(other) is None, other


def test_a_pull_page_must_agree_with_its_head() -> None:
    page = {"changes": [], "cursor": "812:44", "has_more": True}
    assert check_pull_page(page, ("812:44", True)) is page
    assert check_pull_page({**page, "cursor": None}, (None, True))
    for head in [("812:45", True), ("812:44", False), (None, True)]:
        with pytest.raises(ValueError, match="differ"):
            check_pull_page(page, head)


@pytest.mark.parametrize(
    ("start", "head"),
    [(None, ("812:44", True)), ("812:44", ("812:45", True)), ("812:44", ("813:0", True)),
     ("a", ("b", True)),  # another form: another cursor is all that can be known
     ("812:44", ("812:44", False)), ("812:44", (None, False)), (None, (None, False))],
)  # fmt: skip
def test_a_pull_page_with_more_after_it_moves_the_cursor_on(
    start: str | None, head: tuple[str | None, bool]
) -> None:
    check_pull_progress(start, head)


@pytest.mark.parametrize(
    ("start", "head"),
    [("812:44", ("812:44", True)), ("812:44", ("812:43", True)), ("812:44", ("", True)),
     ("812:44", (None, True)), (None, (None, True)), ("a", ("a", True))],
)  # fmt: skip
def test_a_pull_page_with_more_after_it_that_stays_put_is_refused(
    start: str | None, head: tuple[str | None, bool]
) -> None:
    with pytest.raises(ValueError, match="sync_pull has_more"):
        check_pull_progress(start, head)


def test_uuids_are_canonical_or_refused() -> None:
    assert check_uuid(WS.upper()) == WS
    for bad in ["", "1 or 1=1", "eq.x", f"{WS},{WS}", WS[:-1]]:
        with pytest.raises(ValueError):
            check_uuid(bad)


def test_rows() -> None:
    assert parse_rows([]) == []
    with pytest.raises(ValueError):
        parse_rows({"id": WS})
    with pytest.raises(ValueError):
        parse_rows([WS])
    row = {"id": WS, "email": "a@b.co", "display_name": None, "avatar_url": 7}
    assert Profile.from_row(row) == Profile(WS, "a@b.co", None, None)
    workspace = {"id": WS, "org_id": WS, "name": None, "created_at": "2026-08-21T10:00:00Z"}
    assert CloudWorkspace.from_row(workspace) == CloudWorkspace(
        WS, WS, "", None, "2026-08-21T10:00:00Z", None
    )
    with pytest.raises(ValueError):
        CloudWorkspace.from_row({"id": WS})


def test_status_json() -> None:
    assert SessionStatus().to_json() == {
        "logged_in": False,
        "auth_required": False,
        "user": None,
        "expires_at": None,
        "secret_backend": "file",
        "last_error": None,
    }
    status = SessionStatus(True, False, CloudUser("u1", "a@b.co"), 1795245809.0, "keyring")
    assert status.to_json()["user"] == {"id": "u1", "email": "a@b.co"}
    with pytest.raises(AttributeError):
        status.logged_in = False  # type: ignore[misc]


def test_workspaces_oldest_first_then_by_id_unreadable_times_last() -> None:
    def ws(id_: str, created_at: str | None) -> CloudWorkspace:
        return CloudWorkspace(id_, WS, "w", None, created_at, None)

    a = ws("0194f3a2-0000-7000-8000-00000000000a", "2026-01-01T00:00:01+00:00")
    b = ws("0194f3a2-0000-7000-8000-00000000000b", "2026-01-01T00:00:00.5+00:00")
    c = ws("0194f3a2-0000-7000-8000-00000000000c", "2026-01-01T01:00:00.25+01:00")  # = 00:00:00.25
    d = ws("0194f3a2-0000-7000-8000-00000000000d", "2026-01-01T00:00:01+00:00")  # a's time
    e = ws("0194f3a2-0000-7000-8000-00000000000e", "2026-01-01T00:00:00.75")  # no zone: UTC
    f = ws("0194f3a2-0000-7000-8000-00000000000f", None)
    g = ws("0194f3a2-0000-7000-8000-000000000000", "yesterday")
    assert oldest_first([f, d, a, g, e, b, c]) == [c, b, e, a, d, g, f]
