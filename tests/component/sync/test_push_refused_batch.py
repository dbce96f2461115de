"""A ``sync_push`` refused as a whole for a value one row carries (PostgreSQL's 22P05 while it
parses the request's JSON, a 22xxx/23xxx/54xxx of the whole statement) must not block the
rows behind it for ever: the batch is sent again in parts until that row is alone, which is
then rejected (``sync.rejected``), and every other row reaches the cloud (workspace.py
``_bisect``, push_batch.py ``Bisection``).

Against the in-process devcloud (real HTTP, real PostgreSQL). The daemon's input checks keep
out the values PostgreSQL refuses that way (U+0000), so ``Refuser``, an httpx transport in
front of the real one, answers a push holding the poisoned message as PostgREST answers such
a request (the real cloud never sees it, as it never stores a request it cannot parse); every
other request goes to devcloud."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, MakeDevice

CloudRows = Callable[..., Awaitable[list[Any]]]
POISON = "the value the cloud cannot take"
WITHIN = 20_000 * MS


class Refuser(httpx.AsyncBaseTransport):
    """The real transport, except that a ``sync_push`` holding a message whose content is
    POISON is refused as a whole with ``status`` and PostgREST's error body for ``code``."""

    def __init__(self, status: int, code: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.status, self.code = status, code
        self.pushes: list[int] = []  # rows per push request, as sent
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/rpc/sync_push"):
            changes = orjson.loads(request.content)["changes"]
            self.pushes.append(len(changes))
            if any(c["fields"].get("content") == POISON for c in changes):
                self.refused += 1
                body = {
                    "code": self.code,
                    "details": "\\u0000 cannot be converted to text.",
                    "hint": None,
                    "message": "unsupported Unicode escape sequence",
                }
                return httpx.Response(self.status, json=body)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize(("status", "code"), [(400, "22P05"), (500, "54000")])
async def test_the_row_that_fails_the_whole_batch_is_rejected_and_the_others_arrive(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    cloud_rows: CloudRows,
    status: int,
    code: str,
) -> None:
    refuser = Refuser(status, code)
    a = await make_device("a", refuser, pull_interval_s=3600.0)
    await devcloud.create_user("ada@example.com", PASSWORD, org="Acme")
    await a.cloud.login("ada@example.com", PASSWORD)
    ws = await a.store.workspaces.create(name="notes")
    conv = await a.store.conversations.create(workspace_id=ws["id"], name="chat")
    ids = []
    for n in range(40):
        content = POISON if n == 23 else f"message {n}"
        message = await a.store.messages.create(
            conversation_id=conv["id"], role="user", content=content
        )
        ids.append(message["id"])
    bad = ids[23]
    await a.cloud.link(workspace_id=ws["id"])

    async def in_cloud() -> set[str]:
        rows = await cloud_rows(
            "SELECT id::text FROM public.messages WHERE workspace_id = $1::uuid", ws["id"]
        )
        return {r["id"] for r in rows}

    async def settled() -> bool:
        return bool((await a.cloud.sync_status())["outbox"] == 0)

    # before: the same batch was sent again for ever (slow retries) and nothing arrived
    await wait_for(settled, timeout=WITHIN, message="the outbox drained")
    assert await in_cloud() == set(ids) - {bad}
    [conversation] = await cloud_rows(
        "SELECT name FROM public.conversations WHERE id = $1::uuid", conv["id"]
    )
    assert conversation["name"] == "chat"
    [rejected] = (await a.store.sync.rejected()).items  # what sync.rejected lists
    assert (rejected["row_id"], rejected["table"], rejected["reason"]) == (bad, "messages", code)
    assert rejected["detail"] == "unsupported Unicode escape sequence"
    assert rejected["change"]["fields"]["content"] == POISON
    assert a.topics("sync.rejected") == ["sync.rejected"]
    # (the first push creates the cloud workspace) the history went as the rows others
    # reference (workspace, conversation), then one batch of the 40 messages, refused; then
    # the parts holding the row, halved down to it alone
    assert refuser.pushes[:3] == [1, 2, 40]
    assert 2 <= refuser.refused <= 1 + 6  # ceil(log2(40)) = 6
    status_now = await a.cloud.sync_status()
    assert status_now["rejected"] == 1 and status_now["last_error"] is None
    # the rows behind it are not held: a new message goes out at once
    later = await a.store.messages.create(conversation_id=conv["id"], role="user", content="next")
    await wait_for(
        lambda: _has(in_cloud, later["id"]), timeout=WITHIN, message="the next row pushed"
    )


async def _has(rows: Callable[[], Awaitable[set[str]]], row_id: str) -> bool:
    return row_id in await rows()
