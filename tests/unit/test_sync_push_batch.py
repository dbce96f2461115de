"""daemon/sync/push_batch.py: a push batch's payload, its results, where the next one starts."""

from __future__ import annotations

import pytest

from daemon.store.sync_types import OutboxChange
from daemon.sync.push_batch import Bisection, OutgoingBatch

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
    assert batch.resume == (9, None)
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
    assert batch.payload == [] and batch.resume == (0, None) and batch.results([]) == []


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


# A batch refused as a whole for a value one change carries --------------------------------


def messages(n: int) -> list[OutboxChange]:
    return [
        change("messages", f"m{i}", (i + 1,), content=f"text {i}", role="user") for i in range(n)
    ]


def run_bisection(
    batch: OutgoingBatch, bad: set[str], reason: str = "22P05"
) -> tuple[list[dict[str, object]], list[list[str]]]:
    """Feed a cloud that refuses as a whole any request holding a change of ``bad``; the
    results, and the ids of each request sent (the first one being the refused batch)."""
    bisection = Bisection(batch)
    sent = [[m["id"] for m in batch.payload]]
    bisection.refused(reason, "unsupported Unicode escape sequence")
    while (part := bisection.next_part()) is not None:
        ids = [m["id"] for m in part.payload]
        sent.append(ids)
        if bad & set(ids):
            bisection.refused(reason, "unsupported Unicode escape sequence")
        else:
            bisection.answered([{"id": i, "status": "applied"} for i in ids])
    return bisection.results(), sent


@pytest.mark.parametrize("at", [0, 1, 250, 498, 499])
def test_one_bad_change_of_500_is_rejected_alone_in_about_2_log_n_requests(at: int) -> None:
    batch = OutgoingBatch.of(messages(500), "org")
    results, sent = run_bisection(batch, {f"m{at}"})
    assert [r["id"] for r in results] == [f"m{i}" for i in range(500)]
    rejected = [r for r in results if r["status"] == "rejected"]
    assert rejected == [
        {
            "id": f"m{at}",
            "table": "messages",
            "status": "rejected",
            "reason": "22P05",
            "detail": "unsupported Unicode escape sequence",
        }
    ]
    assert sum(r["status"] == "applied" for r in results) == 499
    assert len(sent) <= 1 + 2 * 9  # ceil(log2(500)) = 9 levels, two requests each
    # the parts answered went in the batch's order: a row before any row after it
    applied = [i for ids in sent[1:] for i in ids if f"m{at}" not in ids]
    assert applied == [f"m{i}" for i in range(500) if i != at]


def test_several_bad_changes_and_local_only_changes_between_them() -> None:
    changes = [
        change("conversations", "c1", (1,), name="n"),
        change("workspaces", "ws", (2,), path="/home/me"),  # nothing of it leaves
        *messages(6)[1:],
        change("workspaces", "ws", (9,), path="/elsewhere"),
    ]
    batch = OutgoingBatch.of(changes, "org")
    results, _ = run_bisection(batch, {"m2", "m5"}, reason="23514")
    assert [(r["id"], r["status"], r.get("reason")) for r in results] == [
        ("c1", "applied", None),
        ("ws", "applied", "local_only"),
        ("m1", "applied", None),
        ("m2", "rejected", "23514"),
        ("m3", "applied", None),
        ("m4", "applied", None),
        ("m5", "rejected", "23514"),
        ("ws", "applied", "local_only"),
    ]


def test_a_batch_of_one_change_is_rejected_at_once() -> None:
    batch = OutgoingBatch.of([change("workspaces", "ws", (1,), path="/p"), *messages(1)], "org")
    bisection = Bisection(batch)
    bisection.refused("54000", "x" * 5000)
    assert bisection.next_part() is None
    results = bisection.results()
    assert [r["status"] for r in results] == ["applied", "rejected"]
    assert results[1]["reason"] == "54000" and len(results[1]["detail"]) == 1000
    assert "detail" not in OutgoingBatch.of(messages(1), None).refused("http_413")[0]


def test_halves_split_the_changes_sent_and_need_two() -> None:
    batch = OutgoingBatch.of([change("workspaces", "ws", (1,), path="/p"), *messages(3)], "org")
    first, second = batch.halves()
    assert [m["id"] for m in first.payload] == ["m0"] and len(first.changes) == 2
    assert [m["id"] for m in second.payload] == ["m1", "m2"]
    with pytest.raises(ValueError, match="two changes or more"):
        first.halves()
    with pytest.raises(ValueError, match="one change"):
        second.refused("22P05")


def test_a_bisection_under_way_has_no_results() -> None:
    bisection = Bisection(OutgoingBatch.of(messages(2), None))
    bisection.refused("22P05")
    with pytest.raises(ValueError, match="not finished"):
        bisection.results()
    with pytest.raises(ValueError, match="one answer per change"):
        bisection.answered([])
