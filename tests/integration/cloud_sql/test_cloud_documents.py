"""documents and doc_updates in the cloud: push (per-field metadata, append-only updates,
idempotent repeats), gap-free pull, row-level security between organisations."""

from __future__ import annotations

import base64
from typing import Any

import asyncpg
import pytest

from .kit import Cloud, change, new_id


@pytest.fixture
async def team(cloud: Cloud) -> dict[str, Any]:
    alice, bob = await cloud.user("alice@a.io"), await cloud.user("bob@b.io")
    org_a, org_b = await cloud.org("A", alice), await cloud.org("B", bob)
    ws_a, ws_b = await cloud.workspace(org_a, "ours"), await cloud.workspace(org_b, "theirs")
    return {"alice": alice, "bob": bob, "ws_a": ws_a, "ws_b": ws_b}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def doc_change(cloud: Cloud, doc: str, ws: str, name: str, counter: int) -> dict[str, Any]:
    fields = {"workspace_id": ws, "name": name, "created_at": "2026-11-21T07:00:00.000Z"}
    return change("documents", doc, ws, fields, cloud.clock(counter))


def update_change(
    cloud: Cloud, update: str, doc: str, ws: str, data: bytes, counter: int
) -> dict[str, Any]:
    fields = {"doc_id": doc, "workspace_id": ws, "data": b64(data)}
    fields["created_at"] = "2026-11-21T07:00:01.000Z"
    return change("doc_updates", update, ws, fields, cloud.clock(counter))


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["status"] if r["status"] != "rejected" else r["reason"] for r in results]


async def test_push_then_pull_documents_and_updates(cloud: Cloud, team: dict[str, Any]) -> None:
    alice, ws = team["alice"], team["ws_a"]
    doc, u1, u2 = new_id(), new_id(), new_id()
    batch = [
        doc_change(cloud, doc, ws, "notes", 1),
        update_change(cloud, u1, doc, ws, b"\x01\x02", 2),
        update_change(cloud, u2, doc, ws, b"\x03", 3),
    ]
    assert statuses(await cloud.push(alice, batch)) == ["applied"] * 3
    row = await cloud.row("documents", doc)
    assert row is not None and row["name"] == "notes" and row["created_by"] == alice
    # pushed again (a retried batch): every change is an idempotent success, nothing moves
    before = await cloud.row("doc_updates", u1)
    assert statuses(await cloud.push(alice, batch)) == ["applied"] * 3
    assert await cloud.row("doc_updates", u1) == before
    page = await cloud.pull(alice, workspace_id=ws)
    got = [(c["table"], c["id"]) for c in page["changes"] if c["table"] != "workspaces"]
    assert got == [("documents", doc), ("doc_updates", u1), ("doc_updates", u2)]
    update_row = page["changes"][2]["row"]
    assert base64.b64decode(update_row["data"]) == b"\x01\x02"
    assert update_row["hlc"] == cloud.clock(2) and update_row["origin"] == "dev1"
    # nothing new after the cursor
    assert (await cloud.pull(alice, cursor=page["cursor"], workspace_id=ws))["changes"] == []


async def test_document_metadata_merges_per_field(cloud: Cloud, team: dict[str, Any]) -> None:
    alice, ws = team["alice"], team["ws_a"]
    doc = new_id()
    await cloud.push(alice, [doc_change(cloud, doc, ws, "first", 1)])
    stale = change("documents", doc, ws, {"name": "stale"}, cloud.clock(0, "phone"))
    newer = change("documents", doc, ws, {"name": "renamed"}, cloud.clock(5, "phone"))
    assert statuses(await cloud.push(alice, [stale])) == ["superseded"]
    assert statuses(await cloud.push(alice, [newer])) == ["applied"]
    row = await cloud.row("documents", doc)
    assert row is not None and row["name"] == "renamed" and row["origin"] == "phone"


async def test_updates_are_append_only(cloud: Cloud, team: dict[str, Any]) -> None:
    alice, ws = team["alice"], team["ws_a"]
    doc, u1 = new_id(), new_id()
    await cloud.push(
        alice, [doc_change(cloud, doc, ws, "d", 1), update_change(cloud, u1, doc, ws, b"a", 2)]
    )
    # the same id with other data and a newer clock changes nothing
    other = update_change(cloud, u1, doc, ws, b"bbb", 9)
    assert statuses(await cloud.push(alice, [other])) == ["superseded"]
    row = await cloud.row("doc_updates", u1)
    assert row is not None and base64.b64decode(row["data"]) == b"a"
    # a plain UPDATE is refused, even by the superuser
    with pytest.raises(asyncpg.CheckViolationError):
        await cloud.pool.execute("UPDATE public.doc_updates SET data = 'eHg=' WHERE id = $1", u1)
    # not base64, or a document of another workspace: rejected, the batch goes on
    bad = update_change(cloud, new_id(), doc, ws, b"x", 3)
    bad["fields"]["data"] = "not base64!"
    orphan = update_change(cloud, new_id(), new_id(), ws, b"x", 4)
    good = update_change(cloud, new_id(), doc, ws, b"y", 5)
    assert statuses(await cloud.push(alice, [bad, orphan, good])) == [
        "invalid",
        "invalid",
        "applied",
    ]


async def test_another_organisation_sees_and_writes_nothing(
    cloud: Cloud, team: dict[str, Any]
) -> None:
    alice, bob, ws = team["alice"], team["bob"], team["ws_a"]
    doc, u1 = new_id(), new_id()
    await cloud.push(
        alice, [doc_change(cloud, doc, ws, "d", 1), update_change(cloud, u1, doc, ws, b"a", 2)]
    )
    # Bob (org B) reads nothing of it, by pull or by plain SELECT
    page = await cloud.pull(bob)
    assert not [c for c in page["changes"] if c["table"] in ("documents", "doc_updates")]
    assert await cloud.fetch_as(bob, "SELECT id FROM public.documents") == []
    assert await cloud.fetch_as(bob, "SELECT id FROM public.doc_updates") == []
    # ... and writes nothing into Alice's workspace
    results = await cloud.push(
        bob,
        [
            doc_change(cloud, new_id(), ws, "intruder", 3),
            update_change(cloud, new_id(), doc, ws, b"evil", 4),
            change("documents", doc, ws, {"name": "hijacked"}, cloud.clock(9, "bob")),
        ],
    )
    assert statuses(results) == ["forbidden"] * 3
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await cloud.execute_as(
            bob,
            "INSERT INTO public.doc_updates (doc_id, workspace_id, data) VALUES ($1, $2, 'eA==')",
            doc,
            ws,
        )
    row = await cloud.row("documents", doc)
    assert row is not None and row["name"] == "d"
    assert await cloud.pool.fetchval("SELECT count(*) FROM public.doc_updates") == 1
    # Alice's own plain insert gets cloud clocks and is pulled like any change
    await cloud.execute_as(
        alice,
        "INSERT INTO public.doc_updates (doc_id, workspace_id, data) VALUES ($1, $2, 'eA==')",
        doc,
        ws,
    )
    page = await cloud.pull(alice, workspace_id=ws)
    plain = [c["row"] for c in page["changes"] if c["table"] == "doc_updates"][-1]
    assert plain["origin"] == "cloud" and plain["field_hlc"]["data"] == plain["hlc"]
