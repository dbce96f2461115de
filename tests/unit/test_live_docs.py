"""Documents in realtime (daemon/sync/live_map.py, pure): the broadcast of a local update, the
checks on a received one, and postgres_changes records of the document tables."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from daemon.realtime.frames import PostgresChange
from daemon.sync.live_map import (
    MAX_DOC_BROADCAST,
    doc_batch,
    doc_broadcast,
    doc_update_of,
    doc_updates_of,
    remote_change,
)

WS = "01900000-0000-7000-8000-000000000001"
DOC = "01900000-0000-7000-8000-0000000000d0"
UPD = "01900000-0000-7000-8000-0000000000e0"
ME = "dev-me"
DATA = base64.b64encode(b"\x01\x02\x03").decode()


def event(**overrides: Any) -> dict[str, Any]:
    base = {"id": DOC, "workspace_id": WS, "update_id": UPD, "update": DATA, "origin": ME}
    return {**base, **overrides}


def test_a_local_update_is_broadcast_with_its_ids() -> None:
    assert doc_broadcast(event(), ME) == {
        "id": DOC,
        "update_id": UPD,
        "update": DATA,
        "origin": ME,
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"origin": "another-device"},  # a pulled update: not ours to broadcast
        {"workspace_id": None},  # a local-only document
        {"update": "A" * (MAX_DOC_BROADCAST + 4)},  # too large: the pull carries it
    ],
)
def test_updates_that_are_not_broadcast(overrides: dict[str, Any]) -> None:
    assert doc_broadcast(event(**overrides), ME) is None


def test_a_received_update_is_decoded() -> None:
    found = doc_update_of(doc_broadcast(event(), ME))
    assert found is not None
    assert (found.doc_id, found.update_id, found.update, found.origin) == (
        DOC,
        UPD,
        b"\x01\x02\x03",
        ME,
    )


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "text",
        {"id": DOC, "update_id": UPD, "update": DATA},  # no origin
        {"id": "x", "update_id": UPD, "update": DATA, "origin": "d"},
        {"id": DOC, "update_id": UPD.upper(), "update": DATA, "origin": "d"},
        {"id": DOC, "update_id": UPD, "update": "not base64!", "origin": "d"},
        {"id": DOC, "update_id": UPD, "update": "", "origin": "d"},
        {"id": DOC, "update_id": UPD, "update": 5, "origin": "d"},
    ],
)
def test_malformed_payloads_are_refused(payload: Any) -> None:
    assert doc_update_of(payload) is None


UPD2 = "01900000-0000-7000-8000-0000000000e2"
UPD3 = "01900000-0000-7000-8000-0000000000e3"


def test_several_updates_go_in_one_broadcast_in_order() -> None:
    payloads = [doc_broadcast(event(update_id=u), ME) for u in (UPD, UPD2, UPD3)]
    batch = doc_batch([p for p in payloads if p is not None])
    assert batch == {
        "id": DOC,
        "update_id": UPD,
        "update": DATA,
        "origin": ME,
        "more": [{"update_id": UPD2, "update": DATA}, {"update_id": UPD3, "update": DATA}],
    }
    found = doc_updates_of(batch)
    assert [(f.doc_id, f.update_id, f.origin) for f in found] == [
        (DOC, UPD, ME),
        (DOC, UPD2, ME),
        (DOC, UPD3, ME),
    ]
    # a daemon that predates ``more`` reads the first update and ignores the rest
    old = doc_update_of(batch)
    assert old is not None and old.update_id == UPD


def test_a_single_update_is_its_own_batch() -> None:
    single = doc_broadcast(event(), ME)
    assert single is not None
    assert doc_batch([single]) == single
    assert [f.update_id for f in doc_updates_of(single)] == [UPD]


@pytest.mark.parametrize(
    "more",
    [
        "not a list",
        [5],
        [{"update_id": UPD2}],  # no update
        [{"update_id": UPD2, "update": "not base64!"}],
        [{"update_id": UPD2, "update": DATA}, {"update_id": "x", "update": DATA}],
    ],
)
def test_a_batch_with_anything_malformed_is_refused(more: Any) -> None:
    assert doc_updates_of({**event(), "more": more}) == []


def test_a_batch_entry_cannot_name_another_document_or_origin() -> None:
    other = "01900000-0000-7000-8000-0000000000d9"
    more = [{"update_id": UPD2, "update": DATA, "id": other, "origin": "someone"}]
    found = doc_updates_of({**event(), "more": more})
    assert [(f.doc_id, f.origin) for f in found] == [(DOC, ME), (DOC, ME)]


def test_a_doc_update_record_is_applied_in_local_terms() -> None:
    record = {
        "id": UPD,
        "doc_id": DOC,
        "workspace_id": WS,
        "data": DATA,
        "created_at": "2026-08-21T12:00:00.123+00:00",
        "hlc": "1763700000000-000001-dev-a",
        "field_hlc": {"data": "1763700000000-000001-dev-a"},
        "origin": "dev-a",
        "_txid": "7",
        "_seq": 3,
    }
    found = remote_change(
        PostgresChange(
            topic=f"realtime:workspace:{WS}",
            schema="public",
            table="doc_updates",
            type="INSERT",
            record=record,
            old_record=None,
            commit_timestamp="2026-08-21T12:00:00Z",
        ),
        WS,
        ME,
    )
    assert found.verdict == "apply" and found.change is not None
    row = found.change["row"]
    assert (row["doc_id"], row["data"], row["created_at"]) == (
        DOC,
        DATA,
        "2026-08-21T12:00:00.123Z",
    )
    assert "_txid" not in row and "seq" not in row
