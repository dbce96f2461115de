"""A create the cloud rejects, made acceptable by a later local edit, reaches every device
whole (two ``syncd run`` of one user through a real devcloud).

The cloud's refusal is a CHECK constraint the test adds to the cloud's table: it stands for
any rule of the cloud a new row can break and a later edit can mend (a stricter cloud, a
policy). The later edit's own outbox entry holds only the fields it changed; were that pushed
alone, the cloud would create the row from its column defaults (``conversation_type`` 'chat',
its own ``created_at``) and the second device would get that other row, for good.
"""

from __future__ import annotations

from typing import Any

from sync_checks import assert_same, snapshot, sync_all
from sync_kit import CloudProcess

EMAIL = "ria@example.com"
BAD = "refused by the cloud"
REFUSE_BAD = f"ALTER TABLE public.conversations ADD CONSTRAINT refused CHECK (name <> '{BAD}')"


async def test_a_rejected_create_fixed_by_an_edit_reaches_both_devices_whole(
    lab: Any, cloud: CloudProcess
) -> None:
    a, b = await lab.two_devices(EMAIL)
    ws_id = await a.publish("shared")
    await a.push()
    await b.clone(ws_id, lab.root / "b-folder")
    await b.pull()
    await cloud.fetch(REFUSE_BAD)

    conv = await a.call(
        "conversation.create", {"workspace_id": ws_id, "name": BAD, "type": "agent"}
    )
    msg = await a.send(conv["id"], "written in the refused conversation")
    await a.push()
    rejected = (await a.call("sync.rejected"))["items"]
    assert {(r["table"], r["row_id"]) for r in rejected} == {
        ("conversations", conv["id"]),
        ("messages", msg["id"]),
    }, rejected
    assert await cloud.count("conversations", ws_id) == 0

    # The user mends the row: a rename, whose outbox entry holds the name (and updated_at).
    await a.call("conversation.update", {"id": conv["id"], "name": "accepted"})
    await a.push()
    await sync_all([a, b])

    on_a, on_b = await snapshot(a, ws_id), await snapshot(b, ws_id)
    assert_same(on_a, on_b)
    [row] = on_b["conversations"]
    assert (row["id"], row["name"], row["type"], row["created_at"]) == (
        conv["id"], "accepted", "agent", conv["created_at"],
    )  # fmt: skip
    assert [m["id"] for m in on_b["messages"][conv["id"]]] == [msg["id"]]
    [cloud_row] = await cloud.fetch(
        "SELECT conversation_type, created_at FROM public.conversations WHERE id = $1::uuid",
        conv["id"],
    )
    assert cloud_row["conversation_type"] == "agent"
    # The rejections are settled: the rows they refused are in the cloud now.
    assert (await a.call("sync.rejected"))["items"] == []
    assert (await a.status())["rejected"] == 0
