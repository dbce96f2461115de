"""CloudApi against a real devcloud: sync_push / sync_pull as a user, the reads linking needs,
one refresh and one repeat after a 401, and bad input refused before any request."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from daemon.errors import InvalidInput
from daemon.sync.cloud.errors import AuthRequired
from daemon.sync.cloud.records import CloudWorkspace, Membership, Profile
from daemon.sync.cloud.rest import CloudApi
from daemon.sync.cloud.session import CloudSession
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

if TYPE_CHECKING:  # fixtures' types (conftest is not importable: this folder is no package)
    from conftest import LeakWatch, OpenSession, StartDevcloud

EMAIL, PASSWORD = "grace@example.com", "another good password"
DEVICE = "laptop01"


BASE_MS = int(time.time() * 1000) - 60_000  # clocks at least a minute old: never "ahead"


def clock(counter: int) -> str:
    """A hybrid logical clock: 13-digit wall ms, 6-digit counter, device id."""
    return f"{BASE_MS:013d}-{counter:06d}-{DEVICE}"


def change(table: str, row_id: str, ws: str, fields: dict[str, Any], hlc: str) -> dict[str, Any]:
    return {
        "table": table,
        "id": row_id,
        "workspace_id": ws,
        "fields": fields,
        "field_hlc": dict.fromkeys(fields, hlc),
        "origin": DEVICE,
    }


async def logged_in(
    dc: RunningDevcloud, open_session: OpenSession, data_dir: Path, leaks: LeakWatch, **kw: Any
) -> tuple[CloudSession, CloudApi, str]:
    user_id = await dc.create_user(EMAIL, PASSWORD, org="Acme")
    session = await open_session(dc, data_dir, **kw)
    await session.login(EMAIL, PASSWORD)
    leaks.secret(await session.access_token(), PASSWORD)
    return session, CloudApi(session), user_id


async def test_a_pushed_batch_comes_back_through_pull(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    _, api, _ = await logged_in(devcloud, open_session, tmp_path, leaks)
    [acme] = await api.memberships()
    ws, conv, msg = (str(uuid.uuid4()) for _ in range(3))
    batch = [
        change("workspaces", ws, ws, {"org_id": acme.org_id, "name": "Notes"}, clock(1)),
        change("conversations", conv, ws, {"name": "Ideas"}, clock(2)),
        change(
            "messages",
            msg,
            ws,
            {"conversation_id": conv, "role": "user", "content": "hello cloud"},
            clock(3),
        ),
    ]
    results = await api.push(batch)
    assert [(r["table"], r["id"], r["status"]) for r in results] == [
        ("workspaces", ws, "applied"),
        ("conversations", conv, "applied"),
        ("messages", msg, "applied"),
    ]
    assert [r["status"] for r in await api.push(batch)] == ["applied"] * 3  # a retry: no change

    page = (await api.pull_page(cursor=None, limit=100, workspace_id=ws)).body
    assert page["has_more"] is False and isinstance(page["cursor"], str)
    rows = {(c["table"], c["id"]): c["row"] for c in page["changes"]}
    assert set(rows) == {("workspaces", ws), ("conversations", conv), ("messages", msg)}
    assert rows[("messages", msg)]["content"] == "hello cloud"
    assert rows[("conversations", conv)]["hlc"] == clock(2)
    assert rows[("workspaces", ws)]["origin"] == DEVICE

    again = (await api.pull_page(cursor=page["cursor"], limit=100, workspace_id=ws)).body
    assert again == {"changes": [], "cursor": page["cursor"], "has_more": False}

    paged: list[str] = []
    cursor = None
    while True:  # one row per page, in the same order
        one = (await api.pull_page(cursor=cursor, limit=1, workspace_id=ws)).body
        paged += [c["id"] for c in one["changes"]]
        cursor = one["cursor"]
        if not one["has_more"]:
            break
    assert paged == [c["id"] for c in page["changes"]]
    assert await api.push([]) == []


async def test_refused_changes_are_results_not_errors(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    _, api, _ = await logged_in(devcloud, open_session, tmp_path, leaks)
    await devcloud.create_user("eve@example.com", "eves password", org="Other")
    [acme] = await api.memberships()
    foreign_org = await devcloud.ctx.pool.fetchval(
        "SELECT id::text FROM public.organizations WHERE name = 'Other'"
    )
    ws, other = str(uuid.uuid4()), str(uuid.uuid4())
    results = await api.push(
        [
            change("workspaces", ws, ws, {"org_id": acme.org_id, "name": "ok"}, clock(1)),
            change("workspaces", other, other, {"org_id": foreign_org, "name": "x"}, clock(2)),
            change("nonsense", ws, ws, {"a": 1}, clock(3)),
        ]
    )
    assert [(r["status"], r.get("reason")) for r in results] == [
        ("applied", None),
        ("rejected", "forbidden"),
        ("rejected", "unknown_table"),
    ]


async def test_the_reads_linking_needs(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    _, api, user_id = await logged_in(devcloud, open_session, tmp_path, leaks)
    profile = await api.profile()
    assert profile == Profile(user_id, EMAIL, profile.display_name if profile else None, None)
    [acme] = await api.memberships()
    assert isinstance(acme, Membership)
    assert (acme.org_name, acme.role) == ("Acme", "owner") and acme.joined_at
    assert await api.workspaces(acme.org_id) == []

    ws = str(uuid.uuid4())
    created = await api.create_workspace(id=ws, org_id=acme.org_id, name="Research")
    assert created == CloudWorkspace(ws, acme.org_id, "Research", None, created.created_at, None)
    assert created.created_at
    again = await api.create_workspace(id=ws, org_id=acme.org_id, name="Research")
    assert again == created  # a retried create returns the same workspace
    assert await api.get_workspace(ws) == created
    assert await api.workspaces(acme.org_id) == [created]
    assert await api.get_workspace(str(uuid.uuid4())) is None


async def test_a_rejected_token_is_refreshed_once_and_the_request_repeated(
    start_devcloud: StartDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    dc = await start_devcloud(jwt_expiry=1)
    # The session's clock stands still: it believes its 1 s token is still good, so the cloud
    # is the one to refuse it. (A clock that is merely off no longer does it: the token's
    # life is counted on the session's own clock, from expires_in.)
    frozen = time.time()
    session, api, _ = await logged_in(dc, open_session, tmp_path, leaks, clock=lambda: frozen)
    token = await session.access_token()
    expires_at = session.status.expires_at or 0
    await wait_for(lambda: time.time() > expires_at + 0.1, timeout=5_000 * MS)
    [acme] = await api.memberships()  # 401 PGRST303 -> refresh -> the same request again
    assert acme.org_name == "Acme"
    assert leaks.messages("rest.memberships.token_rejected")
    assert len(leaks.messages("auth.refreshed")) == 1
    assert await session.access_token() != token
    leaks.secret(await session.access_token())


async def test_calls_without_a_session_or_with_bad_input_send_nothing(
    devcloud: RunningDevcloud, open_session: OpenSession, tmp_path: Path, leaks: LeakWatch
) -> None:
    session = await open_session(devcloud, tmp_path)
    api = CloudApi(session)
    ws = str(uuid.uuid4())
    with pytest.raises(AuthRequired):
        await api.push([change("workspaces", ws, ws, {"name": "x"}, clock(1))])
    with pytest.raises(AuthRequired):
        await api.profile()
    await devcloud.create_user(EMAIL, PASSWORD, org="Acme")
    await session.login(EMAIL, PASSWORD)
    sent_before = len(leaks.messages("HTTP Request:"))
    assert sent_before == 1  # the login; the refused calls above sent nothing
    bad_calls = [
        api.pull_page(cursor=None, limit=0, workspace_id=None),
        api.pull_page(cursor=None, limit=10_001, workspace_id=None),
        api.pull_page(cursor=None, limit=10, workspace_id="not-a-uuid"),
        api.pull_marks(cursor=None, step=0, workspace_id=None),
        api.pull_marks(cursor=None, step=True, workspace_id=None),
        api.pull_marks(cursor=7, step=10, workspace_id=None),  # type: ignore[arg-type]
        api.pull_marks(cursor=None, step=10, workspace_id="not-a-uuid"),
        api.workspaces("1 or 1=1"),
        api.get_workspace(""),
        api.create_workspace(id=ws, org_id=ws, name="   "),
        api.push([{"table": "workspaces", "id": ws, "fields": {"x": object()}}]),
    ]
    for call in bad_calls:
        with pytest.raises(InvalidInput):
            await call
    # the field named is the one at fault
    for call, field in [
        (api.pull_page(cursor=None, limit=0, workspace_id=None), "limit"),
        (api.pull_marks(cursor=None, step=10_001, workspace_id=None), "step"),
        (api.pull_marks(cursor=1, step=10, workspace_id=None), "cursor"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(InvalidInput) as refused:
            await call
        assert refused.value.field == field
    assert len(leaks.messages("HTTP Request:")) == sent_before
