"""What devcloud's realtime writes for values orjson cannot take (it falls back to json): the
same JSON, sizes in UTF-8 bytes. (Pure; kept next to the change capture tests.)"""

from __future__ import annotations

import json

import pytest

from devcloud.realtime import changes
from devcloud.realtime.changes import Change, Column, build_payload
from devcloud.realtime.serializer import Frame, Vsn, encode_text

BIG = 2**70  # a numeric column's value: beyond orjson's 64-bit integers


def test_frames_with_huge_integers_and_text_encode_as_json() -> None:
    frame = Frame("realtime:t", "postgres_changes", {"record": {"n": BIG, "t": "é€"}}, ref="1")
    for vsn in (Vsn.V1, Vsn.V2):
        text = encode_text(vsn, frame)
        assert "é€" in text and " " not in text  # compact, not ASCII-escaped
        decoded = json.loads(text)
        payload = decoded["payload"] if vsn is Vsn.V1 else decoded[4]
        assert payload == {"record": {"n": BIG, "t": "é€"}}


def test_record_size_counts_utf8_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    change = Change("public", "notes", "INSERT", "2026-11-21T07:00:00Z", {"id": 1})
    columns = [Column("id", "int8"), Column("n", "numeric"), Column("t", "text")]
    record = {"id": 1, "n": BIG, "t": "€" * 30}  # 30 characters, 90 bytes
    monkeypatch.setattr(changes, "MAX_RECORD_BYTES", 100)
    payload = build_payload(change, [1], columns, record)
    assert payload["data"]["record"] == {"id": 1, "n": BIG}  # t is over the 64 bytes of a field
    assert payload["data"]["errors"] == [changes.TOO_LARGE]
    monkeypatch.setattr(changes, "MAX_RECORD_BYTES", 200)
    assert build_payload(change, [1], columns, record)["data"]["record"] == record
