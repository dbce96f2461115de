"""The cloud.* and sync.* methods over the real local API (BridgeServer + ui_bridge.client)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.config import BridgeSettings, StoreSettings
from daemon.hlc import decode
from daemon.store import Store
from daemon.store.codec import now_ms
from daemon.sync.service import DisabledCloud
from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for
from ui_bridge.client import Client, connect
from ui_bridge.jsonrpc import ErrorCode, RpcError
from ui_bridge.methods import CloudFacade, build_method_table
from ui_bridge.server import BridgeServer

from .conftest import PASSWORD, MakeDevice

Serve = Callable[[Store, CloudFacade, Path], Awaitable[Client]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(store: Store, cloud: CloudFacade, data_dir: Path) -> Client:
            bridge = BridgeServer(
                BridgeSettings(port=0),
                store=store,
                data_dir=data_dir,
                version="test",
                methods=build_method_table(cloud),
            )
            await bridge.start()
            stack.push_async_callback(bridge.stop)
            client = await connect(data_dir=data_dir, reconnect=False)
            stack.push_async_callback(client.close)
            return client

        yield start


async def error_of(client: Client, method: str, params: Any = None) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await client.call(method, params)
    return caught.value


async def test_without_cloud_settings_cloud_calls_answer_32003(
    tmp_path: Path, serve: Serve
) -> None:
    store = await Store.open(tmp_path / "syncd.db", StoreSettings())
    try:
        client = await serve(store, DisabledCloud(store), tmp_path)
        status = await client.call("cloud.status")
        assert status["configured"] is False and status["logged_in"] is False
        assert "clock_ahead" in status and status["clock_ahead"] is None  # (as sync.status's)
        for method, params in (
            ("cloud.login", {"email": "a@b.c", "password": "x"}),
            ("cloud.logout", None),
            ("cloud.workspaces", None),
            ("cloud.link", {"workspace_id": "w"}),
            ("cloud.unlink", {"workspace_id": "w"}),
            ("sync.push", None),
            ("sync.pull", None),
        ):
            error = await error_of(client, method, params)
            assert error.code == ErrorCode.CLOUD_NOT_CONFIGURED, method
        sync = await client.call("sync.status")
        assert (sync["configured"], sync["state"], sync["outbox"]) == (False, "offline", 0)
        assert await client.call("sync.conflicts") == {"items": [], "next_cursor": None}
        assert await client.call("sync.rejected") == {"items": [], "next_cursor": None}
        for method in ("sync.rejected", "sync.conflicts"):  # pages, checked as every list's
            for params, field in (({"limit": 0}, "limit"), ({"cursor": "x"}, "cursor")):
                error = await error_of(client, method, params)
                assert error.code == ErrorCode.INVALID_PARAMS and error.data["field"] == field
        ws = await client.call("workspace.create", {"name": "local work goes on"})
        assert (await client.call("workspace.get", {"id": ws["id"]}))["name"] == ws["name"]
    finally:
        await store.close()


async def test_login_link_and_sync_through_the_methods(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, serve: Serve
) -> None:
    await devcloud.create_user("bo@example.com", PASSWORD, org="Beta")
    device = await make_device("a")
    client = await serve(device.store, device.cloud, device.data_dir)
    events = await client.subscribe(["cloud.status", "sync.status"])
    assert (await error_of(client, "sync.pull")).code == ErrorCode.LOGIN_REQUIRED
    bad = await error_of(client, "cloud.login", {"email": "bo@example.com", "password": "no"})
    assert bad.code == ErrorCode.LOGIN_REQUIRED and bad.data["reason"] == "invalid_credentials"
    assert "no" not in str(bad.data.values())

    state = await client.call("cloud.login", {"email": "bo@example.com", "password": PASSWORD})
    assert state["logged_in"] and state["organization"]["name"] == "Beta"
    seen: list[dict[str, Any]] = []
    async for event in events:
        seen.append(event.data)
        if event.topic == "cloud.status" and event.data["logged_in"]:
            break
    assert all(PASSWORD not in str(data) for data in seen)

    ws = await client.call("workspace.create", {"name": "shared"})
    for params in ({}, {"workspace_id": ws["id"], "cloud_workspace_id": ws["id"]},
                   {"workspace_id": ws["id"], "path": "relative/dir"},
                   {"cloud_workspace_id": ws["id"]}):  # fmt: skip
        assert (await error_of(client, "cloud.link", params)).code == ErrorCode.INVALID_PARAMS
    missing = await error_of(client, "cloud.link", {"workspace_id": "01a1fd09-0000-7000-8000-0"})
    assert missing.code == ErrorCode.NOT_FOUND
    folder = tmp_path / "shared"
    folder.mkdir()
    linked = await client.call("cloud.link", {"workspace_id": ws["id"], "path": str(folder)})
    assert linked["workspace_id"] == ws["id"] and linked["path"] == str(folder)
    listed = await client.call("cloud.workspaces")
    assert [(w["id"], w["linked"]) for w in listed["items"]] == [(ws["id"], True)]
    pushed = await client.call("sync.push")
    assert pushed["error"] is None and pushed["outbox"] == 0
    # A published workspace joins its realtime channel once its history is pushed; the join
    # asks for a catch-up pull (state "connecting" until it is done): the pull below follows it.
    subscribed = device.cloud.live.status
    await wait_for(lambda: ws["id"] in subscribed()["subscribed"], timeout=10_000 * MS)
    pulled = await client.call("sync.pull")
    assert pulled["error"] is None and pulled["changed"] == 0
    status = await client.call("sync.status")
    assert status["state"] == "idle" and status["last_pull_at"] is not None
    assert (await error_of(client, "cloud.unlink", {"workspace_id": "nope"})).code == -32001
    assert (await client.call("cloud.unlink", {"workspace_id": ws["id"]}))["unlinked"] is True
    out = await client.call("cloud.logout")
    assert out["logged_in"] is False and out["user"] is None
    await wait_for(lambda: device.cloud.cloud_status()["logged_in"] is False, timeout=1_000 * MS)


async def test_a_lost_manual_edit_is_a_conflict_resolved_by_a_call(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, serve: Serve
) -> None:
    await devcloud.create_user("cy@example.com", PASSWORD, org="Gamma")
    a = await make_device("a", push_delay_s=60.0)  # A's edit stays pending until A pulls
    b = await make_device("b")
    for device in (a, b):
        await device.cloud.login("cy@example.com", PASSWORD)
    ws = await a.store.workspaces.create(name="plan")
    await a.cloud.link(workspace_id=ws["id"])
    assert (await a.cloud.sync_now("push"))["error"] is None
    (tmp_path / "b-plan").mkdir()
    await b.cloud.link(cloud_workspace_id=ws["id"], path=str(tmp_path / "b-plan"))
    await b.cloud.sync_now("pull")
    # A realtime (re)subscribe pushes pending edits at once after its catch-up pull (as a
    # reconnect does): A's must come after it, or A's edit would reach the cloud before B's.
    for device in (a, b):
        status = device.cloud.live.status
        await wait_for(
            lambda status=status: ws["id"] in status()["subscribed"],
            timeout=10_000 * MS,
            message="subscribed to the workspace's changes",
        )

    edited = await a.store.workspaces.update(ws["id"], task_goal="ship it")
    # B's edit must be later than A's: within one millisecond the device ids would decide
    shipped_ms = decode(edited["field_hlc"]["task_goal"]).wall_ms
    await wait_for(lambda: now_ms() > shipped_ms, message="the next millisecond")
    await b.store.workspaces.update(ws["id"], task_goal="polish it")  # later: it wins
    assert (await b.cloud.sync_now("push"))["applied"] == 1
    # The conflict is recorded by whichever brings B's edit first: the pull, or the realtime
    # hint that may arrive before it.
    assert (await a.cloud.sync_now("pull"))["error"] is None
    assert len((await a.store.sync.conflicts()).items) == 1
    client = await serve(a.store, a.cloud, a.data_dir)
    [conflict] = (await client.call("sync.conflicts"))["items"]
    assert (conflict["field"], conflict["local_value"], conflict["remote_value"]) == (
        "task_goal",
        "ship it",
        "polish it",
    )
    assert "sync.conflict" in a.topics("sync.")
    assert (await a.store.workspaces.get(ws["id"]))["task_goal"] == "polish it"
    both = {"conflict_id": conflict["id"], "choice": "local", "value": "x"}
    assert (await error_of(client, "sync.resolve", both)).code == ErrorCode.INVALID_PARAMS
    await client.call("sync.resolve", {"conflict_id": conflict["id"], "choice": "local"})
    assert (await client.call("sync.conflicts"))["items"] == []
    assert (await a.cloud.sync_now("push"))["applied"] >= 1
    await b.cloud.sync_now("pull")
    assert (await b.store.workspaces.get(ws["id"]))["task_goal"] == "ship it"
    assert (await a.store.workspaces.get(ws["id"]))["task_goal"] == "ship it"


async def test_link_params_are_checked_and_named(
    devcloud: RunningDevcloud, make_device: MakeDevice, tmp_path: Path, serve: Serve
) -> None:
    await devcloud.create_user("di@example.com", PASSWORD, org="Delta")
    device = await make_device("a")
    client = await serve(device.store, device.cloud, device.data_dir)
    await client.call("cloud.login", {"email": "di@example.com", "password": PASSWORD})
    for params, field in (
        ({"workspace_id": ""}, "workspace_id"),
        ({"cloud_workspace_id": "not-a-uuid", "path": str(tmp_path)}, "cloud_workspace_id"),
        ({"cloud_workspace_id": ""}, "cloud_workspace_id"),
    ):
        error = await error_of(client, "cloud.link", params)
        assert (error.code, error.data["field"]) == (ErrorCode.INVALID_PARAMS, field), params
    assert device.cloud.cloud_status()["linked_workspaces"] == []


async def test_a_clone_gets_its_folder_as_local_path(
    devcloud: RunningDevcloud,
    make_device: MakeDevice,
    tmp_path: Path,
    serve: Serve,
    cloud_rows: Callable[..., Awaitable[list[Any]]],
) -> None:
    await devcloud.create_user("ed@example.com", PASSWORD, org="Echo")
    a, b = await make_device("a"), await make_device("b")
    for device in (a, b):
        await device.cloud.login("ed@example.com", PASSWORD)
    ws = await a.store.workspaces.create(name="notes", path=str(tmp_path / "on-a"))
    await a.cloud.link(workspace_id=ws["id"])
    assert (await a.cloud.sync_now("push"))["error"] is None

    folder = tmp_path / "on-b"
    folder.mkdir()
    client = await serve(b.store, b.cloud, b.data_dir)
    linked = await client.call("cloud.link", {"cloud_workspace_id": ws["id"], "path": str(folder)})
    assert linked["path"] == str(folder)
    assert (await client.call("sync.pull"))["error"] is None

    async def placed() -> bool:  # the row came with the pull; its path is set right after
        return bool((await client.call("workspace.get", {"id": ws["id"]}))["path"] == str(folder))

    await wait_for(placed, message="the clone's path")
    # The path is local: no outbox entry, nothing pushed, the cloud row has none of B's.
    assert (await client.call("sync.status"))["outbox"] == 0
    assert (await b.cloud.sync_now("push"))["applied"] == 0
    [row] = await cloud_rows("SELECT to_jsonb(w) AS w FROM workspaces w WHERE id = $1", ws["id"])
    assert str(folder) not in str(row["w"])
    assert [e.data["path"] for e in b.events if e.topic == "workspace.updated"] == [str(folder)]
    # A later change pulled from A keeps B's path; A's stays A's.
    await a.store.workspaces.update(ws["id"], description="edited on a")
    assert (await a.cloud.sync_now("push"))["error"] is None
    assert (await b.cloud.sync_now("pull"))["error"] is None
    row_b = await b.store.workspaces.get(ws["id"])
    assert (row_b["description"], row_b["path"]) == ("edited on a", str(folder))
    assert (await a.store.workspaces.get(ws["id"]))["path"] == str(tmp_path / "on-a")
