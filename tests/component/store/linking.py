"""Linking a workspace in tests: only a linked workspace's local changes get outbox entries
(an unlinked workspace is local-only data, I6), so a test that checks the entries of local
writes links its workspace first. No cloud is involved: the link is the store's row."""

from __future__ import annotations

from typing import Any

from daemon.store import Store
from daemon.store.sync_types import OutboxChange, resume_point
from daemon.store.txn import WriteContext

ORG = "org-test"


async def link(store: Store, workspace_id: str) -> None:
    await store.sync.link(workspace_id=workspace_id, org_id=ORG, path=None)


async def create_linked(store: Store, **fields: Any) -> dict[str, Any]:
    """A new workspace, linked (its link snapshot is its first outbox entry)."""
    ws = await store.workspaces.create(**fields)
    await link(store, ws["id"])
    return ws


def link_ids(ctx: WriteContext, *workspace_ids: str) -> None:
    """Link workspaces on a bare WriteContext's connection (outside a batch): their rows, then
    the context's set of linked workspaces read back from them."""
    ctx.conn.executemany(
        "INSERT INTO cloud_links (workspace_id, org_id, path, linked_at) VALUES (?, ?, NULL, ?)",
        [(ws, ORG, "2026-01-01T00:00:00.000Z") for ws in workspace_ids],
    )
    ctx.reload_links()


async def take_all(store: Store, workspace_id: str) -> list[OutboxChange]:
    """Every change the outbox of a workspace holds, take after take without completing any, as
    a push with batches in flight takes them (a link's messages, a snapshot range, come in
    takes of their own)."""
    taken: list[OutboxChange] = []
    after, within = 0, None
    while batch := await store.sync.take_outbox(
        workspace_ids=[workspace_id], after=after, within=within
    ):
        taken += batch
        after, within = resume_point(batch)
    return taken
