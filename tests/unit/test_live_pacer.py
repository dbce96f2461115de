"""Pacing of document broadcasts (daemon/sync/live_pacer.py, pure): a leading-edge send, then
at most one batch per document and interval, in order, split by size."""

from __future__ import annotations

from typing import Any

from daemon.sync.live_map import doc_updates_of
from daemon.sync.live_pacer import SENDS_PER_S, DocPacer, SendWindow

WS = "01900000-0000-7000-8000-000000000001"
DOC = "01900000-0000-7000-8000-0000000000d0"
DOC2 = "01900000-0000-7000-8000-0000000000d2"


def update(n: int, doc: str = DOC, size: int = 4) -> dict[str, Any]:
    return {
        "id": doc,
        "update_id": f"01900000-0000-7000-8000-{n:012x}",
        "update": "A" * size,
        "origin": "me",
    }


def ids(payload: dict[str, Any]) -> list[str]:
    return [found.update_id for found in doc_updates_of(payload)]


def test_the_first_update_goes_at_once_and_the_burst_after_it_together() -> None:
    pacer = DocPacer(interval_s=0.1)
    assert pacer.receive_update(WS, update(1), 10.0) == [(WS, update(1))]
    assert pacer.next_due() == 10.1
    assert pacer.receive_update(WS, update(2), 10.01) == []
    assert pacer.receive_update(WS, update(3), 10.05) == []
    assert pacer.payloads_due(10.09) == []
    [(ws, batch)] = pacer.payloads_due(10.1)
    assert ws == WS and ids(batch) == [update(2)["update_id"], update(3)["update_id"]]
    # the next interval starts at that send: an update now waits for it to end
    assert pacer.receive_update(WS, update(4), 10.15) == []
    assert pacer.next_due() == 10.2
    [(_, batch)] = pacer.payloads_due(10.2)
    assert ids(batch) == [update(4)["update_id"]]


def test_an_idle_document_is_forgotten_and_its_next_update_goes_at_once() -> None:
    pacer = DocPacer(interval_s=0.1)
    pacer.receive_update(WS, update(1), 10.0)
    assert pacer.payloads_due(10.1) == []
    assert pacer.next_due() is None
    assert pacer.receive_update(WS, update(2), 10.5) == [(WS, update(2))]


def test_an_update_after_a_quiet_interval_goes_at_once_without_a_tick() -> None:
    pacer = DocPacer(interval_s=0.1)
    pacer.receive_update(WS, update(1), 10.0)
    assert pacer.receive_update(WS, update(2), 10.3) == [(WS, update(2))]


def test_documents_are_paced_apart() -> None:
    pacer = DocPacer(interval_s=0.1)
    assert pacer.receive_update(WS, update(1), 10.0) != []
    assert pacer.receive_update(WS, update(2, DOC2), 10.01) != []
    assert pacer.receive_update(WS, update(3), 10.02) == []
    assert pacer.receive_update(WS, update(4, DOC2), 10.03) == []
    assert pacer.payloads_due(10.105) == [(WS, update(3))]
    assert pacer.payloads_due(10.11) == [(WS, update(4, DOC2))]


def test_a_batch_larger_than_a_broadcast_is_split_in_order() -> None:
    pacer = DocPacer(interval_s=0.1, max_chars=10)
    pacer.receive_update(WS, update(1), 10.0)
    for n in range(2, 7):
        pacer.receive_update(WS, update(n, size=4), 10.01)
    batches = [ids(batch) for _, batch in pacer.payloads_due(10.1)]
    expected = [update(n)["update_id"] for n in range(2, 7)]
    assert batches == [expected[0:2], expected[2:4], expected[4:5]]


def test_a_thousand_updates_a_second_make_ten_broadcasts() -> None:
    pacer = DocPacer(interval_s=0.1)
    sent: list[Any] = []
    for n in range(1000):
        now = 10.0 + n / 1000
        sent += pacer.payloads_due(now)
        sent += pacer.receive_update(WS, update(n), now)
    sent += pacer.payloads_due(11.1)
    assert len(sent) <= 11
    assert [i for _, p in sent for i in ids(p)] == [update(n)["update_id"] for n in range(1000)]


def test_ui_broadcasts_are_at_most_the_limit_in_any_window_and_a_refusal_says_when() -> None:
    window = SendWindow(limit=3, window_s=1.0)  # (times in binary fractions: exact sums)
    assert [window.take(t) for t in (0.0, 0.25, 0.5)] == [0.0, 0.0, 0.0]
    assert window.take(0.625) == 0.375  # the send at 0.0 leaves the window at 1.0
    assert window.take(0.875) == 0.125  # a refusal is not counted
    assert window.take(1.0) == 0.0
    assert window.take(1.125) == 0.125  # (0.25 leaves at 1.25)
    assert [window.take(t) for t in (1.25, 1.5)] == [0.0, 0.0]
    assert window.take(1.5) == 0.5  # 1.0, 1.25 and 1.5 fill it until 2.0
    assert window.take(5.0) == 0.0  # a quiet spell forgets everything


def test_the_default_is_realtime_js_own_rate() -> None:
    window = SendWindow()
    assert (window.limit, window.window_s) == (SENDS_PER_S, 1.0) == (10, 1.0)
    assert all(window.take(0.0) == 0.0 for _ in range(10)) and window.take(0.0) == 1.0
