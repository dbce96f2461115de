"""The sync driver against devcloud: real SQLite stores, real HTTP, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import InvalidInput
from daemon.sync.cloud import SecretStore
from daemon.sync.cloud.errors import AuthRequired
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD, Device, MakeDevice
from .transports import TokenRefusal

CloudRows = Callable[..., Awaitable[list[Any]]]
EMAIL = "ada@example.com"


async def linked_device(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> tuple[Device, dict[str, Any], dict[str, Any]]:
    """Device A, logged in, with a linked workspace (folder tmp_path/ws-a) and a conversation."""
    await devcloud.create_user(EMAIL, PASSWORD, org="Acme")
    a = await make_device("a")
    await a.cloud.login(EMAIL, PASSWORD)
    folder = tmp_path / "ws-a"
    folder.mkdir()
    ws = await a.store.workspaces.create(name="notes", path=str(folder))
    conv = await a.store.conversations.create(workspace_id=ws["id"], name="chat")
    await a.cloud.link(workspace_id=ws["id"])
    return a, ws, conv


async def cloned_on_b(make_device: MakeDevice, tmp_path: Path, ws: dict[str, Any]) -> Device:
    """Device B of the same user, with ``ws`` cloned into tmp_path/ws-b and pulled."""
    b = await make_device("b")
    await b.cloud.login(EMAIL, PASSWORD)
    (tmp_path / "ws-b").mkdir()
    await b.cloud.link(cloud_workspace_id=ws["id"], path=str(tmp_path / "ws-b"))
    await b.cloud.sync_now("pull")
    return b


async def count(cloud_rows: CloudRows, table: str, row_id: str) -> int:
    rows = await cloud_rows(f"SELECT count(*) AS n FROM public.{table} WHERE id = $1", row_id)
    return int(rows[0]["n"])


async def test_a_local_write_reaches_the_cloud_in_bounded_time(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    await wait_for(lambda: count(cloud_rows, "conversations", conv["id"]), timeout=5_000 * MS)
    message = await a.store.messages.create(
        conversation_id=conv["id"], role="user", content="hello cloud"
    )
    await wait_for(
        lambda: count(cloud_rows, "messages", message["id"]),
        timeout=3_000 * MS,
        message="the message in the cloud",
    )
    [row] = await cloud_rows(
        "SELECT content, role FROM public.messages WHERE id = $1", message["id"]
    )
    assert (row["content"], row["role"]) == ("hello cloud", "user")
    [cloud_ws] = await cloud_rows(
        "SELECT name, org_id FROM public.workspaces WHERE id = $1", ws["id"]
    )
    assert cloud_ws["name"] == "notes"

    async def settled() -> bool:  # the cloud commits before the device settles its outbox
        status = await a.cloud.sync_status()
        return status["outbox"] == 0 and status["state"] in ("idle", "pulling", "pushing")

    await wait_for(settled, timeout=3_000 * MS, message="A's outbox to settle")
    link_file = json.loads((tmp_path / "ws-a" / ".cloud-link.json").read_text())
    assert link_file["cloudWorkspaceId"] == ws["id"] and link_file["version"] == 1
    assert link_file["orgId"] == str(cloud_ws["org_id"])


async def test_system_messages_never_leave_the_device(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    secret = await a.store.messages.create(conversation_id=conv["id"], role="system", content="s")
    after = await a.store.messages.create(conversation_id=conv["id"], role="user", content="u")
    await wait_for(lambda: count(cloud_rows, "messages", after["id"]), timeout=5_000 * MS)
    assert await count(cloud_rows, "messages", secret["id"]) == 0


async def test_a_local_only_write_starts_no_push(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """A system message writes no outbox entry: waking the push for it made a run that took
    nothing, and two sync.status events (pending, then not) for nothing."""
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    await a.cloud.sync_now("push")
    session = a.cloud.driver.syncs[ws["id"]].session
    await wait_for(lambda: session.snapshot.busy is None, timeout=5_000 * MS)
    before = session.snapshot
    await a.store.messages.create(conversation_id=conv["id"], role="system", content="s")
    after = session.snapshot  # the commit listener ran before create returned
    # (a realtime catch-up pull may run now: only the push side is this test's)
    assert (after.pending, after.push_due) == (False, None) and after.busy != "push"
    assert after.push_started_at == before.push_started_at
    await a.store.messages.create(conversation_id=conv["id"], role="user", content="u")
    assert session.snapshot.pending or session.snapshot.busy == "push"  # a pushed one does


async def test_a_cloud_write_arrives_and_an_echo_tells_no_ui(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    # A pushes the conversation after the link: wait until the cloud has it, so that B's pull
    # below surely brings it. Its counts are not checked: B's first pull (the link starts
    # it) may have brought both rows already.
    await wait_for(lambda: count(cloud_rows, "conversations", conv["id"]), timeout=5_000 * MS)
    folder_b = tmp_path / "ws-b"
    folder_b.mkdir()
    b = await make_device("b")
    await b.cloud.login(EMAIL, PASSWORD)
    await b.cloud.link(cloud_workspace_id=ws["id"], path=str(folder_b))
    pulled = await b.cloud.sync_now("pull")
    assert pulled["error"] is None
    assert (await b.store.workspaces.get(ws["id"]))["name"] == "notes"
    assert (await b.store.conversations.get(conv["id"]))["name"] == "chat"

    seen = len(b.topics("message."))
    message = await a.store.messages.create(conversation_id=conv["id"], role="user", content="hi")
    pushed = await a.cloud.sync_now("push")
    assert pushed["error"] is None and pushed["outbox"] == 0
    await b.cloud.sync_now("pull")  # (the realtime hint may have brought it first: one event)
    page = await b.store.messages.list(conversation_id=conv["id"])
    assert [m["content"] for m in page.items] == ["hi"]
    assert b.topics("message.")[seen:] == ["message.created"]

    # A's own message comes back in A's pull: merged, but no new UI event (no echo).
    before = len(a.events)
    result = await a.cloud.sync_now("pull")
    assert result["error"] is None
    entity_topics = [e.topic for e in a.events[before:] if not e.topic.endswith(".status")]
    assert entity_topics == []
    # ...and a second pull on B is an echo too.
    before_b = len(b.events)
    await b.cloud.sync_now("pull")
    assert [e.topic for e in b.events[before_b:] if not e.topic.endswith(".status")] == []
    assert (await a.store.messages.get(message["id"]))["updated_at"] == message["updated_at"]


async def test_edits_converge_both_ways(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    b = await cloned_on_b(make_device, tmp_path, ws)
    await b.store.workspaces.update(ws["id"], shared_memory={"b": 1}, current_step="from b")
    await a.store.workspaces.update(ws["id"], shared_memory={"a": 1}, task_goal="from a")
    task = await a.store.tasks.create(workspace_id=ws["id"], kind="build", payload={"n": 1})
    for device in (a, b, a, b):
        result = await device.cloud.sync_now("push")
        assert result["error"] is None
        await device.cloud.sync_now("pull")
    row_a = await a.store.workspaces.get(ws["id"])
    row_b = await b.store.workspaces.get(ws["id"])
    for name in ("task_goal", "current_step", "shared_memory", "name", "updated_at"):
        assert row_a[name] == row_b[name], name
    assert row_a["task_goal"] == "from a" and row_a["current_step"] == "from b"
    clocks_a = {k: v for k, v in row_a["field_hlc"].items() if k != "path"}
    clocks_b = {k: v for k, v in row_b["field_hlc"].items() if k != "path"}
    assert clocks_a == clocks_b  # the same clocks too, not only the same values
    conv_a = await a.store.conversations.get(conv["id"])
    conv_b = await b.store.conversations.get(conv["id"])
    assert conv_a == conv_b
    assert (await b.store.tasks.get(task["id"]))["payload"] == {"n": 1}
    # path is local-only: each device keeps its own folder (B's clone gets the one it links)
    assert row_b["path"] == str(tmp_path / "ws-b") and row_a["path"] == str(tmp_path / "ws-a")


async def test_a_task_cancelled_on_one_device_stays_cancelled_on_both(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """A cancels a task; B, not having pulled that yet, marks it running, later. Last writer
    wins made it running on both devices and in the cloud: the cancel was lost and the task
    ran. A final status wins (merge rule R8), on both devices and in the cloud."""
    a, ws, _ = await linked_device(devcloud, make_device, tmp_path)
    task = await a.store.tasks.create(workspace_id=ws["id"], kind="build")
    assert (await a.cloud.sync_now("push"))["error"] is None
    b = await cloned_on_b(make_device, tmp_path, ws)
    assert (await b.store.tasks.get(task["id"]))["status"] == "queued"

    cancelled = await a.store.tasks.cancel(task["id"])
    running = await b.store.tasks.update(task["id"], status="running", priority=3)
    assert running["field_hlc"]["status"] > cancelled["field_hlc"]["status"]  # B's is later
    for device in (a, b, a, b):
        assert (await device.cloud.sync_now("push"))["error"] is None
        await device.cloud.sync_now("pull")
    on_a, on_b = await a.store.tasks.get(task["id"]), await b.store.tasks.get(task["id"])
    assert (on_a["status"], on_a["priority"]) == ("cancelled", 3)  # B's priority stands
    for name in ("status", "priority", "updated_at"):
        assert on_b[name] == on_a[name], name
        assert on_b["field_hlc"][name] == on_a["field_hlc"][name], name
    assert on_a["field_hlc"]["status"] == cancelled["field_hlc"]["status"]  # A's cancel, as made
    for device in (a, b):  # nothing left behind to push
        status = await device.cloud.sync_status()
        assert (status["outbox"], status["rejected"], status["last_error"]) == (0, 0, None)


async def test_a_rejected_row_is_kept_and_blocks_nothing(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    await a.cloud.sync_now("push")
    task = await a.store.tasks.create(workspace_id=ws["id"], kind="k")
    await a.store.tasks.update(task["id"], priority=2**40)  # the cloud's is a 32-bit integer
    message = await a.store.messages.create(conversation_id=conv["id"], role="user", content="m")
    result = await a.cloud.sync_now("push")
    assert result["rejected"] == 1 and result["applied"] >= 1
    assert await count(cloud_rows, "messages", message["id"]) == 1
    assert await count(cloud_rows, "tasks", task["id"]) == 0
    [rejected] = (await a.cloud.rejected()).items
    assert rejected["row_id"] == task["id"] and rejected["reason"] == "invalid"
    status = await a.cloud.sync_status()
    assert status["rejected"] == 1 and status["outbox"] == 0
    assert "sync.rejected" in a.topics("sync.")
    later = await a.store.messages.create(conversation_id=conv["id"], role="user", content="n")
    await wait_for(lambda: count(cloud_rows, "messages", later["id"]), timeout=3_000 * MS)


async def test_unlink_stops_syncing_and_keeps_local_data(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    await a.cloud.sync_now("push")
    result = await a.cloud.unlink(ws["id"])
    assert result == {"workspace_id": ws["id"], "unlinked": True, "link_file_removed": True}
    assert not (tmp_path / "ws-a" / ".cloud-link.json").exists()
    message = await a.store.messages.create(conversation_id=conv["id"], role="user", content="x")
    assert (await a.cloud.sync_now("push"))["workspaces"] == 0
    assert await count(cloud_rows, "messages", message["id"]) == 0
    assert (await a.store.messages.get(message["id"]))["content"] == "x"
    assert a.cloud.cloud_status()["linked_workspaces"] == []


async def test_status_events_and_logout(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    await a.cloud.sync_now("push")
    await wait_for(lambda: "cloud.status" in a.topics() and "sync.status" in a.topics())
    last_cloud = [e.data for e in a.events if e.topic == "cloud.status"][-1]
    assert last_cloud["logged_in"] is True and last_cloud["user"]["email"] == EMAIL
    assert last_cloud["organization"]["name"] == "Acme" and last_cloud["role"] == "owner"
    assert [w["workspace_id"] for w in last_cloud["linked_workspaces"]] == [ws["id"]]
    status = await a.cloud.logout()
    assert status["logged_in"] is False and status["user"] is None
    assert (await a.cloud.sync_status())["state"] == "offline"
    with pytest.raises(AuthRequired):
        await a.cloud.sync_now("pull")
    await wait_for(
        lambda: [e.data for e in a.events if e.topic == "cloud.status"][-1]["logged_in"] is False
    )
    for event in a.events:  # I8: no token in any event
        assert "access_token" not in json.dumps(event.data)


async def test_a_restarted_device_logs_in_silently_and_keeps_its_links(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    await a.cloud.sync_now("push")
    await a.cloud.stop()
    message = await a.store.messages.create(conversation_id=conv["id"], role="user", content="o")
    await a.store.close()
    again = await make_device("a")  # the same data dir: store, links and refresh token
    await wait_for(lambda: again.cloud.cloud_status()["logged_in"], timeout=5_000 * MS)
    status = again.cloud.cloud_status()
    assert [w["workspace_id"] for w in status["linked_workspaces"]] == [ws["id"]]
    assert status["linked_workspaces"][0]["cloud_workspace_name"] == "notes"
    await wait_for(lambda: count(cloud_rows, "messages", message["id"]), timeout=5_000 * MS)


async def test_a_first_sync_goes_page_by_page_and_shows_progress(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    for n in range(300):
        await a.store.messages.create(conversation_id=conv["id"], role="user", content=f"m{n}")
    assert (await a.cloud.sync_now("push"))["error"] is None
    b = await make_device("b", pull_limit=50, bulk_pull_limit=50)
    await b.cloud.login(EMAIL, PASSWORD)

    def shown() -> list[Any]:
        return [e.data["progress"] for e in b.events if e.topic == "sync.status"]

    # The pages after the first are answered only once progress was shown: the whole pull
    # could otherwise end within one status period (sync progress is published at most every
    # STATUS_EVERY_S) and show none.
    progress_shown = asyncio.Event()
    real_pull_page = b.cloud.api.pull_page

    async def pull_page(*, cursor: str | None, limit: int, workspace_id: str | None) -> Any:
        answer = await real_pull_page(cursor=cursor, limit=limit, workspace_id=workspace_id)
        if cursor is not None:
            await progress_shown.wait()
        return answer

    b.cloud.api.pull_page = pull_page  # type: ignore[method-assign]
    (tmp_path / "ws-b").mkdir()
    await b.cloud.link(cloud_workspace_id=ws["id"], path=str(tmp_path / "ws-b"))
    await wait_for(lambda: any(p is not None and p["rows"] for p in shown()))
    assert b.cloud.driver.syncs[ws["id"]].status.last_pull_at is None  # still pulling
    progress_shown.set()
    await wait_for(lambda: b.cloud.driver.syncs[ws["id"]].status.last_pull_at is not None)
    page = await b.store.messages.list(conversation_id=conv["id"], limit=1000)
    assert len(page.items) == 300

    await wait_for(lambda: shown()[-1] is None)  # done: no progress left
    rows = [p["rows"] for p in shown() if p is not None]
    # status events coalesce, but the first page showed, and the rest in order
    assert rows and rows == sorted(rows) and all(r % 50 == 0 for r in rows)
    # the total, once the cloud counted it (sync_pull_marks): the workspace, its
    # conversation and the 300 messages
    assert {p["total"] for p in shown() if p is not None} <= {None, 302}


async def test_a_user_of_another_organisation_holds_the_link_and_a_member_resumes_it(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    """Logged in as a user who is not a member of a linked workspace's organisation, the
    device neither pushes it (each change would be rejected as forbidden, for good) nor pulls
    it: the link is held and says why. The member's next login syncs what was written."""
    a, ws, conv = await linked_device(devcloud, make_device, tmp_path)
    await a.cloud.sync_now("push")
    await devcloud.create_user("stranger@example.com", PASSWORD, org="Elsewhere")
    await a.cloud.logout()
    await a.cloud.login("stranger@example.com", PASSWORD)
    message = await a.store.messages.create(conversation_id=conv["id"], role="user", content="m")
    result = await a.cloud.sync_now("push")
    assert (result["applied"], result["rejected"], result["error"]) == (0, 0, "not_a_member")
    [held] = [
        w for w in (await a.cloud.sync_status())["workspaces"] if w["workspace_id"] == ws["id"]
    ]
    assert held["state"] == "error" and held["last_error"].startswith("not_a_member")
    assert (await a.cloud.rejected()).items == []
    assert await count(cloud_rows, "messages", message["id"]) == 0

    await a.cloud.logout()
    await a.cloud.login(EMAIL, PASSWORD)
    result = await a.cloud.sync_now("push")
    assert result["error"] is None and result["rejected"] == 0
    assert await count(cloud_rows, "messages", message["id"]) == 1
    [resumed] = [
        w for w in (await a.cloud.sync_status())["workspaces"] if w["workspace_id"] == ws["id"]
    ]
    assert resumed["state"] != "error" and resumed["last_error"] is None


async def test_a_workspace_is_linked_in_its_own_folder(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    """A link names the workspace's folder (or none): linked elsewhere, the link file went
    there while the workspace's path, and `syncd link`/`unlink` of it, stayed with the first."""
    await devcloud.create_user(EMAIL, PASSWORD, org="Acme")
    a = await make_device("a")
    await a.cloud.login(EMAIL, PASSWORD)
    home, elsewhere = tmp_path / "p1", tmp_path / "p2"
    home.mkdir()
    elsewhere.mkdir()
    ws = await a.store.workspaces.create(name="notes", path=str(home))

    async def refused_elsewhere(**link: str) -> None:
        with pytest.raises(InvalidInput) as refused:
            await a.cloud.link(path=str(elsewhere), **link)
        assert refused.value.field == "path" and str(home) in refused.value.message
        assert not (elsewhere / ".cloud-link.json").exists()
        assert a.cloud.cloud_status()["linked_workspaces"] == []

    await refused_elsewhere(workspace_id=ws["id"])  # publish
    assert await count(cloud_rows, "workspaces", ws["id"]) == 0  # refused before any request
    await a.cloud.link(workspace_id=ws["id"], path=f"{home}/")  # its folder, as typed
    assert (home / ".cloud-link.json").exists()
    await a.cloud.unlink(ws["id"])
    await refused_elsewhere(cloud_workspace_id=ws["id"])  # cloned again: it keeps its folder
    await a.cloud.link(cloud_workspace_id=ws["id"], path=str(home))
    assert (await a.store.workspaces.get(ws["id"]))["path"] == str(home)
    assert (home / ".cloud-link.json").exists()


async def test_a_renamed_workspace_renames_its_links(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """cloud.status and the link files name the cloud workspace as it is now, wherever it was
    renamed (was: the name it had when linked, for ever)."""
    a, ws, _ = await linked_device(devcloud, make_device, tmp_path)
    b = await cloned_on_b(make_device, tmp_path, ws)

    def names(device: Device, folder: str) -> tuple[Any, Any]:
        [link] = device.cloud.cloud_status()["linked_workspaces"]
        document = json.loads((tmp_path / folder / ".cloud-link.json").read_text())
        return link["cloud_workspace_name"], document["cloudWorkspaceName"]

    assert names(a, "ws-a") == names(b, "ws-b") == ("notes", "notes")
    await b.store.workspaces.update(ws["id"], name="renamed on b")
    await b.cloud.sync_now("push")
    await a.cloud.sync_now("pull")
    for device, folder in ((a, "ws-a"), (b, "ws-b")):
        await wait_for(
            lambda d=device, f=folder: names(d, f) == ("renamed on b",) * 2,
            timeout=5_000 * MS,
            message=f"{folder}'s name",
        )


async def test_a_folder_whose_link_file_names_another_cloud_workspace_is_not_published(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, cloud_rows: CloudRows
) -> None:
    await devcloud.create_user(EMAIL, PASSWORD, org="Acme")
    a = await make_device("a")
    await a.cloud.login(EMAIL, PASSWORD)
    folder = tmp_path / "copied"
    folder.mkdir()
    other = str(uuid.uuid4())
    original = json.dumps({"version": 1, "cloudWorkspaceId": other, "cloudWorkspaceName": "x"})
    (folder / ".cloud-link.json").write_text(original)
    ws = await a.store.workspaces.create(name="copy", path=str(folder))
    with pytest.raises(InvalidInput) as info:
        await a.cloud.link(workspace_id=ws["id"])
    assert info.value.field == "path" and other in info.value.message
    assert (folder / ".cloud-link.json").read_text() == original
    assert await count(cloud_rows, "workspaces", ws["id"]) == 0
    assert a.cloud.cloud_status()["linked_workspaces"] == []
    (folder / ".cloud-link.json").unlink()  # the way out the message names
    await a.cloud.link(workspace_id=ws["id"])
    assert await count(cloud_rows, "workspaces", ws["id"]) == 1


async def test_a_token_refused_right_after_its_refresh_keeps_the_session_and_retries(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path
) -> None:
    """The data API refuses the access token, and again the one the refresh then granted:
    GoTrue took the refresh token, so the session stands. The sync fails as a transient error
    (token_rejected, retried with backoff; that token is not refreshed again at every retry)
    and recovers by itself (was: auth_required, as if GoTrue had refused the refresh token)."""
    await devcloud.create_user(EMAIL, PASSWORD, org="Acme")
    gate = TokenRefusal()
    a = await make_device("a", gate)
    await a.cloud.login(EMAIL, PASSWORD)
    ws = await a.store.workspaces.create(name="notes")
    await a.cloud.link(workspace_id=ws["id"])
    assert (await a.cloud.sync_now("push"))["error"] is None
    stored = SecretStore(a.data_dir, devcloud.url, use_keyring=False).load()
    assert stored is not None

    gate.refusing = True
    result = await a.cloud.sync_now("pull")
    assert result["error"] == "token_rejected"
    assert gate.refreshes == 1  # the first refusal refreshed the session once
    session = a.cloud.session.status
    assert session.logged_in and not session.auth_required
    assert SecretStore(a.data_dir, devcloud.url, use_keyring=False).load() is not None
    status = await a.cloud.sync_status()
    assert status["state"] != "auth_required" and status["last_error"] == "token_rejected"

    seen = gate.refused
    await wait_for(lambda: gate.refused >= seen + 2, message="the retries with backoff")
    assert gate.refreshes == 1  # not refreshed again before it is due
    status = await a.cloud.sync_status()
    assert status["state"] == "error" and status["workspaces"][0]["retry_at"] is not None
    assert a.cloud.cloud_status()["auth_required"] is False

    gate.refusing = False  # the data API takes the token again: the retries get through

    async def recovered() -> bool:
        status = await a.cloud.sync_status()
        return status["state"] == "idle" and status["last_error"] is None

    await wait_for(recovered, message="the sync to recover without a login")
    await a.store.conversations.create(workspace_id=ws["id"], name="after")
    assert (await a.cloud.sync_now("push"))["applied"] == 1
