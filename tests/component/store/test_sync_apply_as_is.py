"""The pull's fast path for new rows stored as they are (``apply_pull``'s ``as_is``) against
its general path (the merge per row), on real SQLite files: same rows, same changelog, same
parked rows, same counts, for any page of message changes, good or bad."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.hlc import Clock
from daemon.store import migrate
from daemon.store.codec import RowCodec
from daemon.store.schema import ENTITY_TABLES
from daemon.store.sync_apply import apply_new_rows_op, apply_pull_op
from daemon.store.sync_types import ApplyOutcome, NewRows
from daemon.store.txn import BatchOutcome, WriteContext
from daemon.sync.adapters import NEW_ROWS_AS_IS, merge_pulled, new_rows_as_is
from daemon.sync.mapping import local_change

from .conftest import rows

TS = "2026-01-01T00:00:00.000Z"
CLOCK = "1767225600000-000000-dev"
LATER = "1767225600001-000003-other"


def stored(row_id: str, conversation: str = "c1", *, hlc: str = CLOCK) -> dict[str, Any]:
    return {
        "id": row_id,
        "workspace_id": "w1",
        "conversation_id": conversation,
        "role": "user",
        "content": f"text of {row_id}",
        "created_at": TS,
        "updated_at": TS,
        "deleted_at": None,
        "hlc": hlc,
        "origin": "dev",
        "field_hlc": {},
    }


@pytest.fixture(scope="module")
def template() -> Iterator[sqlite3.Connection]:
    """A migrated database holding workspace w1, conversation c1 and message m-stored."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate.migrate(conn)
    conn.execute(
        "INSERT INTO workspaces (id, name, created_at, updated_at, hlc, origin)"
        " VALUES ('w1', 'w', ?, ?, ?, 'dev')",
        (TS, TS, CLOCK),
    )
    conn.execute(
        "INSERT INTO conversations (id, workspace_id, name, created_at, updated_at, hlc, origin)"
        " VALUES ('c1', 'w1', 'c', ?, ?, ?, 'dev')",
        (TS, TS, CLOCK),
    )
    row = stored("m-stored")
    del row["field_hlc"]
    conn.execute(
        f"INSERT INTO messages ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        tuple(row.values()),
    )
    yield conn
    conn.close()


def as_change(row: dict[str, Any]) -> dict[str, Any]:
    return {"table": "messages", "id": row.get("id"), "workspace_id": "w1", "row": row}


def copy_of(template: sqlite3.Connection) -> tuple[sqlite3.Connection, WriteContext]:
    """A copy of ``template`` (foreign keys on) and a write context on it."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    template.backup(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    codecs = {t: RowCodec(t) for t in ENTITY_TABLES}
    ctx = WriteContext(
        conn, clock=Clock("dev"), codecs=codecs, changelog_retain=1000, last_seq=0, first_seq=0
    )
    return conn, ctx


def apply(
    template: sqlite3.Connection, changes: list[dict[str, Any]], as_is: frozenset[str]
) -> tuple[ApplyOutcome | Exception, dict[str, Any]]:
    """Apply one page to a copy of ``template``; (outcome or error, what the database holds)."""
    conn, ctx = copy_of(template)
    batch = ctx.run_batch([apply_pull_op("workspace:w1", changes, "9:9", merge_pulled, as_is)])
    return state_after(conn, batch)


def one_pass(changes: list[dict[str, Any]], *, here: str | None = None) -> NewRows | None:
    """``new_rows_as_is`` of the ``sync_pull`` answer holding ``changes`` (its text, as the
    cloud sends it); the cursor and has_more it reads must be the answer's."""
    answer = {"cursor": "9:9", "has_more": False, "changes": changes}
    found = new_rows_as_is(orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS), here=here)
    if found is None:
        return None
    new, cursor, has_more = found
    assert (cursor, has_more) == ("9:9", False)
    return new


def pull_cloud_page(
    template: sqlite3.Connection, changes: list[dict[str, Any]], *, fast: bool
) -> tuple[ApplyOutcome | Exception, dict[str, Any]]:
    """Apply one page of cloud changes (as they come out of the answer's JSON) to a copy of
    ``template`` as the pull does (``fast``: ``new_rows_as_is`` and ``apply_new_rows``, else
    the mapping and ``apply_pull``'s fast path), or through the mapping and the merge of
    each row."""
    changes = orjson.loads(orjson.dumps(changes, option=orjson.OPT_NON_STR_KEYS))
    conn, ctx = copy_of(template)
    new = one_pass(changes) if fast else None
    if new is not None:
        op = apply_new_rows_op("workspace:w1", new, "9:9", merge_pulled, NEW_ROWS_AS_IS)
        batch = ctx.run_batch([op])
        if batch.results != [(True, None)]:  # stored (or failed: the test then fails)
            return state_after(conn, batch)
    local = [c for c in map(local_change, changes) if c is not None]
    as_is = NEW_ROWS_AS_IS if fast else frozenset()
    batch = ctx.run_batch([apply_pull_op("workspace:w1", local, "9:9", merge_pulled, as_is)])
    return state_after(conn, batch)


def state_after(
    conn: sqlite3.Connection, batch: BatchOutcome
) -> tuple[ApplyOutcome | Exception, dict[str, Any]]:
    """(The outcome or error of ``batch``'s one op, what the database holds); closes ``conn``."""
    [(ok, result)] = batch.results
    state = {
        "messages": rows(conn, "SELECT * FROM messages ORDER BY id"),
        "changelog": rows(
            conn, "SELECT seq, topic, row_id, workspace_id, data FROM changelog ORDER BY seq"
        ),
        "parked": rows(
            conn, "SELECT table_name, row_id, parent_id, row FROM sync_parked ORDER BY row_id"
        ),
        "events": [(e.seq, e.topic, e.data) for e in batch.events],
    }
    conn.close()
    return (result if ok else repr(result)), state


#: Changes a stored row may get: valid ones (the fast path must take them the merge's way) and
#: bad ones (the page must go to the merge, which says why).
EDITS: list[tuple[str, Any]] = [
    ("hlc", LATER),
    ("hlc", "1767225600000-000000-dév"),  # the merge takes any device; origin_of does not
    ("hlc", "١٧٦٧٢٢٥٦٠٠٠٠٠-000000-dev"),  # Unicode digits: origin_of takes them, the merge does not
    ("hlc", "1767225600000-000000-dev\n"),
    ("hlc", "bad"),
    ("hlc", None),
    ("hlc", 7),
    ("role", "robot"),
    ("role", None),
    ("role", 3),
    ("content", None),
    ("content", {"a": 1}),
    ("content", True),
    ("deleted_at", TS),
    ("conversation_id", "c-new"),  # arrives in the page when the page brings it
    ("conversation_id", "c-gone"),
    ("conversation_id", None),
    ("field_hlc", None),
    ("field_hlc", "{}"),
    ("field_hlc", []),
    ("field_hlc", {"content": "<hlc>"}),
    ("field_hlc", {"content": LATER}),
    ("field_hlc", {"nope": "<hlc>"}),
    ("field_hlc", {"id": "<hlc>"}),
    ("field_hlc", {"content": "<hlc>", "role": "<hlc>", "created_at": "<hlc>"}),
    ("field_hlc", {"content": "<hlc>", "role": LATER}),
    ("-", "content"),
    ("-", "origin"),
    ("-", "deleted_at"),
    ("-", "workspace_id"),
    ("-", "hlc"),
    ("+", "a.b"),
    ("+", "_txid"),
    ("+", "extra"),
    ("id", "m-stored"),
    ("id", "m1"),  # a second change of one row in the page
]


def edited(row: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    row = dict(row)
    if key == "-":
        row.pop(value, None)
    elif key == "+":
        row[value] = 1
    elif key == "field_hlc" and isinstance(value, dict):
        row[key] = {k: row.get("hlc") if v == "<hlc>" else v for k, v in value.items()}
    else:
        row[key] = value
    return row


@st.composite
def message_page(draw: st.DrawFn) -> list[dict[str, Any]]:
    """New messages m1..mN, at most two of them edited (often none)."""
    count = draw(st.integers(1, 6))
    page = [stored(f"m{i}") for i in range(1, count + 1)]
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        at = draw(st.integers(0, count - 1))
        page[at] = edited(page[at], *draw(st.sampled_from(EDITS)))
    return [as_change(r) for r in page]


NEW_CONVERSATION = {
    "table": "conversations",
    "id": "c-new",
    "workspace_id": "w1",
    "row": {
        "id": "c-new",
        "workspace_id": "w1",
        "name": "new",
        "type": "chat",
        "is_archived": False,
        "created_at": TS,
        "updated_at": TS,
        "deleted_at": None,
        "hlc": CLOCK,
        "origin": "dev",
        "field_hlc": {},
    },
}


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=message_page(), with_parent=st.booleans())
def test_the_fast_path_stores_what_the_merge_would(
    template: sqlite3.Connection, changes: list[dict[str, Any]], with_parent: bool
) -> None:
    page = [NEW_CONVERSATION, *changes] if with_parent else changes
    assert apply(template, page, NEW_ROWS_AS_IS) == apply(template, page, frozenset())


def test_a_page_of_new_one_clock_messages_never_calls_the_merge(
    template: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def counted(table: str, *args: Any) -> Any:
        calls.append(table)
        return merge_pulled(table, *args)

    pushed = stored("m2")  # as another device pushed it: every field under the row clock
    pushed["field_hlc"] = dict.fromkeys(("content", "role", "conversation_id"), CLOCK)
    page = [as_change(r) for r in (stored("m1"), pushed, stored("m3") | {"deleted_at": TS})]
    conn, ctx = copy_of(template)
    op = apply_pull_op("workspace:w1", page, "9:9", counted, NEW_ROWS_AS_IS)
    [(ok, outcome)] = ctx.run_batch([op]).results
    assert ok and (outcome.applied, outcome.changed, outcome.skipped) == (3, 2, 0)
    assert calls == []
    assert rows(conn, "SELECT id, origin, deleted_at FROM messages ORDER BY id") == [
        ("m-stored", "dev", None),
        ("m1", "dev", None),
        ("m2", "dev", None),
        ("m3", "dev", TS),
    ]
    assert rows(conn, "SELECT topic, row_id FROM changelog ORDER BY seq") == [
        ("message.created", "m1"),
        ("message.created", "m2"),
    ]
    bad = stored("m9") | {"hlc": "bad"}  # a row the merge must judge: the page takes it
    page = [as_change(stored("m4")), as_change(bad)]
    [(ok, outcome)] = ctx.run_batch(
        [apply_pull_op("workspace:w1", page, "9:9", counted, NEW_ROWS_AS_IS)]
    ).results
    assert ok and (outcome.applied, outcome.skipped) == (1, 1)
    assert calls == ["messages", "messages"]
    conn.close()


#: What a cloud row may hold besides what a stored row does: the mapping's part of the way.
CLOUD_EDITS: list[tuple[str, Any]] = [
    ("created_at", "2026-01-01T00:00:00.12+00:00"),
    ("updated_at", "2026-01-01T00:00:00.123456+00:00"),
    ("created_at", "2026-01-01T00:00:00+00:00"),
    ("deleted_at", "2026-01-01T00:00:00.5+00:00"),
    ("created_at", 5),
    ("updated_at", "not a time"),
    ("field_hlc", {"content.x": "<hlc>"}),
    ("field_hlc", {"content": ["x"]}),
    ("field_hlc", {"sender_user_id": LATER, "content": "<hlc>"}),
    ("field_hlc", {"hlc": LATER, "origin": LATER}),
    ("+", "sender_user_id"),
    ("+", "_seq"),
    ("origin", None),
    ("id", 5),
    ("id", ""),
]


@st.composite
def cloud_page(draw: st.DrawFn) -> list[dict[str, Any]]:
    """``message_page``'s messages as the cloud may send them, with a conversation first, last
    or not at all."""
    changes = draw(message_page())
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        at = draw(st.integers(0, len(changes) - 1))
        changes[at] = {
            **changes[at],
            "row": edited(changes[at]["row"], *draw(st.sampled_from(CLOUD_EDITS))),
        }
    where = draw(st.sampled_from([None, None, 0, len(changes)]))
    if where is not None:
        changes.insert(where, NEW_CONVERSATION)
    return changes


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=cloud_page())
def test_a_cloud_page_in_one_pass_is_what_the_mapping_and_the_merge_store(
    template: sqlite3.Connection, changes: list[dict[str, Any]]
) -> None:
    assert pull_cloud_page(template, changes, fast=True) == pull_cloud_page(
        template, changes, fast=False
    )


def test_a_page_of_new_plain_messages_is_stored_in_one_pass(template: sqlite3.Connection) -> None:
    clocks = dict.fromkeys(("content", "role", "conversation_id"), CLOCK)
    pushed = stored("m2") | {
        "field_hlc": clocks | {"sender_user_id": LATER},  # (a column this device drops)
        "sender_user_id": None,
        "_seq": 2,
        "created_at": "2026-01-01T00:00:00.1+00:00",
    }
    ahead = f"{int(time.time() * 1000) + 600_000:013d}-000000-dev"  # ten minutes ahead
    new = one_pass([as_change(stored("m1", hlc=ahead)), as_change(pushed)])
    assert new is not None and [(r["id"], r["created_at"]) for r in new.rows] == [
        ("m1", TS),
        ("m2", "2026-01-01T00:00:00.100Z"),
    ]
    conn, ctx = copy_of(template)
    [(ok, outcome)] = ctx.run_batch([apply_new_rows_op("workspace:w1", new, "9:9")]).results
    assert ok and (outcome.applied, outcome.changed, outcome.skipped) == (2, 2, 0)
    assert ctx.clock.last > ahead  # it took the newest clock in: later local edits win
    # a page holding a row stored here writes nothing (not even its cursor): it takes the merge
    again = one_pass([as_change(stored("m3")), as_change(stored("m1"))])
    assert again is not None
    [(ok, outcome)] = ctx.run_batch([apply_new_rows_op("workspace:w1", again, "10:10")]).results
    assert ok and outcome is None
    assert rows(conn, "SELECT id FROM messages ORDER BY id") == [("m-stored",), ("m1",), ("m2",)]
    assert rows(conn, "SELECT cursor FROM sync_state") == [("9:9",)]
    conn.close()
    # an echo of this device's writes (its clock first): the store would find it stored
    assert one_pass([as_change(stored("m5"))], here="other") is not None
    assert one_pass([as_change(stored("m5"))], here="dev") is None
    # a clock of a JSON-map key: the page is mapped row by row
    assert one_pass([as_change(stored("m4") | {"field_hlc": {"content.a": CLOCK}})]) is None
    # a change of another table comes mapped, for the merge
    mixed = one_pass([as_change(stored("m4")), NEW_CONVERSATION])
    assert mixed is not None and mixed.others == [local_change(NEW_CONVERSATION)]


def test_a_page_with_a_new_parent_merges_only_the_parent(
    template: sqlite3.Connection,
) -> None:
    """A clone's pages bring a conversation among its messages: the conversation takes the
    merge, the messages are stored as they are, in one transaction; when the page releases
    a parked message (it came pages before its conversation), nothing is written and the
    whole page takes the merge."""
    calls: list[str] = []

    def counted(table: str, *args: Any) -> Any:
        calls.append(table)
        return merge_pulled(table, *args)

    def run(op: Any) -> Any:
        [(ok, outcome)] = ctx.run_batch([op]).results
        assert ok, outcome
        return outcome

    conn, ctx = copy_of(template)
    page = [NEW_CONVERSATION, as_change(stored("m1", "c-new")), as_change(stored("m2"))]
    new = one_pass(page)
    assert new is not None and [r["id"] for r in new.rows] == ["m1", "m2"]
    outcome = run(apply_new_rows_op("workspace:w1", new, "9:9", counted, NEW_ROWS_AS_IS))
    assert calls == ["conversations"]
    assert (outcome.applied, outcome.changed) == (3, 3)
    assert rows(conn, "SELECT topic, row_id FROM changelog ORDER BY seq") == [
        ("conversation.created", "c-new"),
        ("message.created", "m1"),
        ("message.created", "m2"),
    ]
    conn.close()

    conn, ctx = copy_of(template)
    orphan = as_change(stored("m-orphan", "c-new"))  # parked until its conversation comes
    run(apply_pull_op("workspace:w1", [orphan], "8:8", merge_pulled, NEW_ROWS_AS_IS))
    assert rows(conn, "SELECT row_id FROM sync_parked") == [("m-orphan",)]
    page = [NEW_CONVERSATION, as_change(stored("m3"))]
    new = one_pass(page)
    assert new is not None
    assert run(apply_new_rows_op("workspace:w1", new, "9:9", merge_pulled, NEW_ROWS_AS_IS)) is None
    assert rows(conn, "SELECT id FROM conversations WHERE id = 'c-new'") == []
    assert rows(conn, "SELECT row_id FROM sync_parked") == [("m-orphan",)]
    assert rows(conn, "SELECT cursor FROM sync_state") == [("8:8",)]
    local = [c for c in map(local_change, page) if c is not None]
    run(apply_pull_op("workspace:w1", local, "9:9", merge_pulled, NEW_ROWS_AS_IS))
    assert rows(conn, "SELECT id FROM messages ORDER BY id") == [
        ("m-orphan",),
        ("m-stored",),
        ("m3",),
    ]
    assert rows(conn, "SELECT row_id FROM sync_parked") == []
    conn.close()
