"""daemon/sync/push_batch.py: a push batch's payload, its results, where the next one starts."""

from __future__ import annotations

import pytest

from daemon.store.sync_types import OutboxChange
from daemon.sync.push_batch import OutgoingBatch

CLOCK = "1790000000000-000000-dev"


def change(table: str, row_id: str, ids: tuple[int, ...], **fields: object) -> OutboxChange:
    return OutboxChange(
        outbox_ids=ids,
        table=table,
        row_id=row_id,
        workspace_id="ws",
        fields=dict(fields),
        field_hlc=dict.fromkeys(fields, CLOCK),
        hlc=CLOCK,
        origin="dev",
    )


def test_local_only_changes_are_not_sent_and_settle_as_applied() -> None:
    batch = OutgoingBatch.of(
        [
            change("conversations", "c1", (3, 9), name="n"),
            change("workspaces", "ws", (4,), path="/home/me"),  # local-only column only
            change("conversations", "c2", (7,), type="chat"),
        ],
        "org",
    )
    assert [m["id"] for m in batch.payload] == ["c1", "c2"]
    assert batch.payload[1]["fields"] == {"conversation_type": "chat"}
    assert batch.last_outbox_id == 9
    answers = [{"id": "c1", "status": "applied"}, {"id": "c2", "status": "rejected"}]
    assert batch.results(answers) == [
        answers[0],
        {"id": "ws", "table": "workspaces", "status": "applied", "reason": "local_only"},
        answers[1],
    ]


def test_an_answer_count_that_does_not_match_is_refused() -> None:
    batch = OutgoingBatch.of([change("conversations", "c1", (1,), name="n")], None)
    with pytest.raises(ValueError, match="one answer per change"):
        batch.results([])
    with pytest.raises(ValueError, match="one answer per change"):
        batch.results([{"status": "applied"}, {"status": "applied"}])


def test_an_empty_batch() -> None:
    batch = OutgoingBatch.of([], None)
    assert batch.payload == [] and batch.last_outbox_id == 0 and batch.results([]) == []


def test_only_a_batch_of_leaf_rows_lets_the_next_one_go_out_beside_it() -> None:
    def batch(*changes: OutboxChange) -> OutgoingBatch:
        return OutgoingBatch.of(list(changes), "org")

    message = change("messages", "m1", (1,), content="hi", role="user", conversation_id="c1")
    assert batch(message, change("tasks", "t1", (2,), kind="k")).leaves_only
    assert batch().leaves_only
    # a workspace change of which nothing leaves is not sent: it creates nothing there
    assert batch(message, change("workspaces", "ws", (4,), path="/home/me")).leaves_only
    assert not batch(message, change("conversations", "c1", (3,), name="n")).leaves_only
    assert not batch(change("workspaces", "ws", (4,), name="w")).leaves_only
