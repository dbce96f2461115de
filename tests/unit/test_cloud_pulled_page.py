"""cloud.rest.PulledPage: a sync_pull answer read from its head, decoded by a record decoder
(sync.adapters.new_rows_as_is) or into dicts, and held to its head either way."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from daemon.jsonnumbers import too_deep
from daemon.sync.adapters import new_rows_as_is
from daemon.sync.cloud.errors import CloudProtocolError
from daemon.sync.cloud.rest import PulledPage
from daemon.sync.mapping import local_change

CLOCK = "1790000000000-000000-cloud"
STAMP = "2026-11-21T07:09:32.123456+00:00"


def message(n: int) -> dict[str, Any]:
    row = {
        "id": f"m{n}",
        "workspace_id": "w",
        "conversation_id": "c",
        "role": "user",
        "content": f"hello {n}",
        "created_at": STAMP,
        "updated_at": STAMP,
        "deleted_at": None,
        "hlc": CLOCK,
        "field_hlc": {},
        "_seq": n,
    }
    return {"table": "messages", "id": row["id"], "workspace_id": "w", "row": row}


def answer(*pairs: tuple[str, Any]) -> PulledPage:
    return PulledPage(httpx.Response(200, content=orjson.dumps(dict(pairs))))


def test_a_page_of_new_messages_is_decoded_into_stored_rows_and_agrees_with_its_head() -> None:
    changes = [message(1), message(2)]
    page = answer(("cursor", "7:2"), ("has_more", True), ("changes", changes))
    assert page.head == ("7:2", True)  # read off the first bytes
    new = page.decoded_by(new_rows_as_is)
    assert new is not None and [r["id"] for r in new.rows] == ["m1", "m2"]
    assert new.rows[0]["created_at"] == "2026-11-21T07:09:32.123Z"
    assert new.rows[0]["origin"] == "cloud"
    assert page.body["changes"] == changes  # the dicts, for the way of the merge


def test_another_key_order_takes_its_head_from_the_decoded_page() -> None:
    page = answer(("changes", [message(1)]), ("has_more", False), ("cursor", "7:1"))
    assert page.decoded_by(new_rows_as_is) is not None
    assert page.head == ("7:1", False)


def test_a_page_that_contradicts_its_head_is_refused_both_ways() -> None:
    """A repeated key: the head reader takes the first, the decoders the last."""
    changes = orjson.dumps([message(1)])
    for text in [
        b'{"cursor":"7:1","has_more":true,"changes":' + changes + b',"cursor":"7:9"}',
        b'{"cursor":"7:1","has_more":false,"changes":' + changes + b',"has_more":true}',
    ]:
        page = PulledPage(httpx.Response(200, content=text))
        assert page.head[0] == "7:1"
        with pytest.raises(CloudProtocolError):
            page.decoded_by(new_rows_as_is)
        with pytest.raises(CloudProtocolError):
            _ = page.body


def test_changes_of_other_tables_come_mapped_for_the_merge() -> None:
    """A clone's first page: its workspace and conversation, then messages."""
    workspace = {"table": "workspaces", "id": "w", "row": {"id": "w", "name": "W", "hlc": CLOCK}}
    conversation = {
        "table": "conversations",
        "id": "c",
        "row": {
            "id": "c",
            "workspace_id": "w",
            "name": "C",
            "hlc": CLOCK,
            "field_hlc": {"name": CLOCK},
        },
    }
    changes = [workspace, conversation, message(1), message(2)]
    page = answer(("cursor", "7:4"), ("has_more", True), ("changes", changes))
    new = page.decoded_by(new_rows_as_is)
    assert new is not None and new.size == 4
    assert [r["id"] for r in new.rows] == ["m1", "m2"]
    assert new.others == [local_change(workspace), local_change(conversation)]
    assert new.others[1]["row"]["field_hlc"] == {"name": CLOCK}


def test_other_pages_are_declined_by_the_record_decoder() -> None:
    conversation = {"table": "conversations", "id": "c", "row": {"id": "c", "hlc": CLOCK}}
    unsynced = {"table": "secrets", "id": "s", "row": {"id": "s"}}  # the merge's way skips it
    rowless = {"table": "conversations", "id": "c", "row": None}
    odd = message(2)
    odd["row"]["content"] = 5  # not text: the merge's way decides what it becomes
    for changes in [
        [conversation],  # no message: nothing to store as it is
        [message(1), unsynced],
        [message(1), rowless],
        [odd],
        [],
    ]:
        page = answer(("cursor", "7:1"), ("has_more", False), ("changes", changes))
        assert page.decoded_by(new_rows_as_is) is None
        assert page.body["changes"] == changes
    good = orjson.dumps({"cursor": "7:1", "has_more": False, "changes": [message(1)]})
    # not UTF-8; a lone surrogate
    for bad_text in [b'"\xed\xa0\x80"', b'"\\ud800"']:
        text = good.replace(b'"hello 1"', bad_text)
        assert text != good
        bad = PulledPage(httpx.Response(200, content=text))
        assert bad.decoded_by(new_rows_as_is) is None
        with pytest.raises(CloudProtocolError):
            _ = bad.body
    # nested deeper than orjson reads: decoded by the merge's way, cut at CUT_DEPTH (the pull
    # then sets the value aside as too_deep, and the rest of the change applies: dccc532)
    deep = b"[" * 100_000 + b"]" * 100_000
    cut = PulledPage(httpx.Response(200, content=good.replace(b'"hello 1"', b'"x","p":' + deep)))
    assert cut.decoded_by(new_rows_as_is) is None
    assert too_deep(cut.body["changes"][0]["row"]["p"])
    broken = PulledPage(
        httpx.Response(200, content=b'{"cursor":"7:1","has_more":false,"changes":[{')
    )
    assert broken.head == ("7:1", False)
    assert broken.decoded_by(new_rows_as_is) is None
    with pytest.raises(CloudProtocolError):
        _ = broken.body
