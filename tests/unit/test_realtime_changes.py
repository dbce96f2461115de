"""postgres_changes payloads: notification parsing, binding ids, Realtime's payload shape."""

from __future__ import annotations

import json

import pytest

from devcloud.realtime import changes
from devcloud.realtime.changes import Change, Column, build_payload, matching_ids
from devcloud.realtime.channel import parse_binding

COLUMNS = [Column("id", "int8"), Column("org", "text"), Column("title", "text")]


def change(kind: str = "INSERT", **row: object) -> Change:
    """The one change of a capture notification (capture.sql's shape) of one row."""
    head = {
        "schema": "public",
        "table": "todos",
        "type": kind,
        "commit_timestamp": "2026-08-21T12:00:00.123Z",
    }
    found, problems = changes.parse_notifications(
        json.dumps({**head, "rows": [{"pk": {"id": 1}, **row}]})
    )
    assert problems == []
    [parsed] = found
    return parsed


def test_parse_notification() -> None:
    parsed = change("UPDATE", old_pk={"id": 0}, new={"id": 1, "title": "x"})
    assert parsed.type == "UPDATE" and parsed.pk == {"id": 1} and parsed.old_pk == {"id": 0}
    assert parsed.new == {"id": 1, "title": "x"} and parsed.old is None


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"type":"INSERT","pk":{"id":1}}',  # no rows: not a capture notification
        '{"schema":"s","table":"t","type":"INSERT","commit_timestamp":"x","rows":{}}',
    ],
)
def test_parse_notification_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        changes.parse_notifications(text)


@pytest.mark.parametrize(
    "head, row",
    [
        ({"type": "TRUNCATE"}, {"pk": {"id": 1}}),
        ({"type": "INSERT"}, {"pk": {}}),
        ({"type": "INSERT"}, {}),
        ({"type": "INSERT"}, "not a row"),
    ],
)
def test_a_bad_row_is_reported_and_its_neighbours_kept(head: dict[str, str], row: object) -> None:
    base = {"schema": "s", "table": "t", "commit_timestamp": "x", **head}
    good = {"pk": {"id": 2}} if head["type"] == "INSERT" else None
    rows = [row] + ([good] if good else [])
    found, problems = changes.parse_notifications(json.dumps({**base, "rows": rows}))
    assert len(problems) == 1
    assert [c.pk for c in found] == ([{"id": 2}] if good else [])


def test_insert_payload_matches_capture_shape() -> None:
    record = {"id": 1, "org": "a", "title": "hi"}
    payload = build_payload(change(), [1000], COLUMNS, record)
    assert payload == {
        "ids": [1000],
        "data": {
            "schema": "public",
            "table": "todos",
            "commit_timestamp": "2026-08-21T12:00:00.123Z",
            "type": "INSERT",
            "columns": [
                {"name": "id", "type": "int8"},
                {"name": "org", "type": "text"},
                {"name": "title", "type": "text"},
            ],
            "record": record,
            "errors": None,
        },
    }


def test_update_and_delete_payloads() -> None:
    update = build_payload(change("UPDATE", old_pk={"id": 1}), [1], COLUMNS, {"id": 1})
    assert update["data"]["old_record"] == {"id": 1} and update["data"]["record"] == {"id": 1}
    delete = build_payload(change("DELETE", old={"id": 1, "org": "a"}), [1], COLUMNS, None)
    assert "record" not in delete["data"] and delete["data"]["old_record"] == {"id": 1}


def test_select_projects_columns_plus_primary_key() -> None:
    record = {"id": 1, "org": "a", "title": "hi"}
    payload = build_payload(change(), [1], COLUMNS, record, select=["title"])
    assert payload["data"]["record"] == {"id": 1, "title": "hi"}
    assert [c["name"] for c in payload["data"]["columns"]] == ["id", "title"]


def test_oversized_record_keeps_small_fields_and_reports_413(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(changes, "MAX_RECORD_BYTES", 100)
    record = {"id": 1, "org": "a", "title": "x" * 200}
    payload = build_payload(change(), [1], COLUMNS, record)
    assert payload["data"]["record"] == {"id": 1, "org": "a"}
    assert payload["data"]["errors"] == ["Error 413: Payload Too Large"]


def test_matching_ids_by_event_table_and_filter() -> None:
    bindings = [
        parse_binding({"event": "*", "schema": "public", "table": "todos", "filter": "org=eq.a"}),
        parse_binding({"event": "INSERT", "schema": "public", "table": "todos"}),
        parse_binding({"event": "*", "schema": "public", "table": "other"}),
        parse_binding({"event": "*", "schema": "public", "table": "todos", "filter": "org=eq.b"}),
        parse_binding({"event": "*", "schema": "public", "table": "todos", "filter": "x=eq.1"}),
    ]
    record = {"id": 1, "org": "a", "title": "t"}
    assert matching_ids(bindings, change(), record, COLUMNS) == [bindings[0].id, bindings[1].id]
    assert matching_ids(bindings, change("UPDATE"), record, COLUMNS) == [bindings[0].id]


def test_delete_filters_run_on_the_old_row() -> None:
    binding = parse_binding({"event": "DELETE", "table": "todos", "filter": "org=eq.a"})
    with_old = change("DELETE", old={"id": 1, "org": "a"})
    key_only = change("DELETE")
    assert matching_ids([binding], with_old, None, COLUMNS) == [binding.id]
    assert matching_ids([binding], key_only, None, COLUMNS) == []


def test_duplicate_bindings_give_one_id() -> None:
    raw = {"event": "*", "schema": "public", "table": "todos"}
    bindings = [parse_binding(raw), parse_binding(dict(raw))]
    assert matching_ids(bindings, change(), {"id": 1}, COLUMNS) == [bindings[0].id]


BIG = 2**64 + 1  # beyond 64 bits: orjson would round it to a float


@pytest.mark.parametrize(
    "text",
    [
        f'{{"n": {BIG}}}',
        f'{{"n" : -{BIG}}}',
        f'{{"a": [1, {BIG}]}}',
        f'{{"a": [{BIG}]}}',
        f'{{"a":\n\t{BIG}}}',
        f"{BIG}",
        f" -{BIG}",
    ],
)
def test_loads_exact_keeps_integers_beyond_64_bits(text: str) -> None:
    value = changes.loads_exact(text)
    assert value == json.loads(text)
    assert BIG in (abs(v) for v in _numbers(value))


def test_loads_exact_reads_digit_runs_in_strings_and_ordinary_numbers() -> None:
    # HLCs and other long digit runs inside strings are not numbers (the fast path reads them).
    value = {"hlc": "1795265533202-000011-dev", "s": "12345678901234567890", "n": 2**63 - 1}
    text = json.dumps(value)
    assert changes.loads_exact(text) == value
    assert changes.loads_exact(json.dumps([1.5, -2, "x", None, True])) == [1.5, -2, "x", None, True]
    assert changes.loads_exact('{"f": 1e19}') == {"f": 1e19}  # a large float stays a float


def test_loads_exact_reads_integers_beyond_a_double() -> None:
    huge = 10**400  # orjson refuses it outright
    assert changes.loads_exact(f'{{"n": [{huge}]}}') == {"n": [huge]}
    with pytest.raises(ValueError):
        changes.loads_exact('{"n": 1')


def _numbers(value: object) -> list[int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, int) else []
