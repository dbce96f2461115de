"""`syncd login/link/push/pull/status/unlink/logout` against a real `syncd run` subprocess that
syncs with the in-process devcloud (the CLI runs as subprocesses too, awaited, so the devcloud
in this event loop keeps serving)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.sync.cloud.secrets import SecretStore
from devcloud.context import DevcloudConfig
from devcloud.server import RunningDevcloud, running_devcloud
from tests.helpers import MS, wait_for
from ui_bridge.client import connect

from .conftest import PASSWORD, MakeDevice

ROOT = Path(__file__).resolve().parents[3]


def environment(devcloud: RunningDevcloud, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env.update(
        SYNCD_DATA_DIR=str(data_dir),
        SYNCD_CLOUD_URL=devcloud.url,
        SYNCD_CLOUD_ANON_KEY=devcloud.anon_key,
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",  # never the machine's keyring
    )
    return env


@contextlib.asynccontextmanager
async def running_daemon(env: dict[str, str], log_path: Path) -> AsyncIterator[dict[str, str]]:
    """A `syncd run` subprocess on ``env``'s data dir; yields ``env``."""
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "run", "--port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    discovery = Path(env["SYNCD_DATA_DIR"]) / "daemon.json"
    try:
        await wait_for(discovery.exists, timeout=20_000 * MS)
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        log.close()


@pytest.fixture
async def daemon_env(devcloud: RunningDevcloud, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    env = environment(devcloud, tmp_path / "data")
    async with running_daemon(env, tmp_path / "daemon.log"):
        yield env


async def syncd(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", *args,
        cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_cloud_commands_end_to_end(
    devcloud: RunningDevcloud, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    env = daemon_env
    await devcloud.create_user("eve@example.com", PASSWORD, org="Delta")
    code, out = await syncd(env, "push")
    assert code == 1 and "log in" in out  # -32004 with a hint
    code, out = await syncd(env, "login", "--email", "eve@example.com", "--password-stdin",
                            stdin="Tr0ub4dor-nope\n")  # fmt: skip
    assert code == 1 and "invalid_credentials" in out and "Tr0ub4dor-nope" not in out
    assert "hint: the email or the password is wrong" in out and "syncd login" not in out
    code, out = await syncd(env, "login", "--email", "eve@example.com", "--password-stdin",
                            stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0 and "logged in as eve@example.com (Delta, owner)" in out, out

    folder = tmp_path / "project"
    folder.mkdir()
    code, out = await syncd(env, "link", str(folder))
    assert code == 0 and "linked" in out, out
    link_file = json.loads((folder / ".cloud-link.json").read_text())
    assert link_file["cloudWorkspaceName"] == "project"
    code, out = await syncd(env, "push")
    assert code == 0 and out.startswith("pushed"), out
    code, out = await syncd(env, "pull")
    assert code == 0 and "pulled" in out, out
    code, out = await syncd(env, "status", "--json")
    status = json.loads(out)
    assert status["cloud"]["logged_in"] and status["sync"]["state"] in ("idle", "pushing")
    assert [w["path"] for w in status["cloud"]["linked_workspaces"]] == [str(folder)]
    rows = await devcloud_rows(devcloud, link_file["cloudWorkspaceId"])
    assert rows == ["project"]
    code, out = await syncd(env, "status")
    assert code == 0 and "logged in as eve@example.com" in out and str(folder) in out

    code, out = await syncd(env, "unlink", str(folder))
    assert code == 0 and not (folder / ".cloud-link.json").exists(), out
    code, out = await syncd(env, "unlink", str(folder))
    assert code == 2 and "not linked" in out
    code, out = await syncd(env, "logout")
    assert code == 0 and "logged out" in out


async def devcloud_rows(devcloud: RunningDevcloud, workspace_id: str) -> list[str]:
    async with devcloud.ctx.pool.acquire() as conn:
        found = await conn.fetch("SELECT name FROM public.workspaces WHERE id = $1", workspace_id)
    return [r["name"] for r in found]


async def test_no_daemon_no_password_prompt(tmp_path: Path, devcloud: RunningDevcloud) -> None:
    code, out = await syncd(environment(devcloud, tmp_path), "login", "--email", "a@b.c")
    assert code == 3 and "no daemon" in out and "Password" not in out


async def login(env: dict[str, str], email: str) -> None:
    code, out = await syncd(env, "login", "--email", email, "--password-stdin",
                            stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0, out


async def call(env: dict[str, str], method: str, params: Any = None) -> Any:
    """One `syncd call`; its result."""
    args = [method] if params is None else [method, json.dumps(params)]
    code, out = await syncd(env, "call", *args)
    assert code == 0, out
    return json.loads(out)


async def workspace_ids_at(env: dict[str, str], folder: Path) -> list[str]:
    page = await call(env, "workspace.list", {"limit": 1000})
    return [w["id"] for w in page["items"] if w["path"] == str(folder)]


async def test_a_failed_link_leaves_no_workspace(
    devcloud: RunningDevcloud,
    daemon_env: dict[str, str],
    make_device: MakeDevice,
    tmp_path: Path,
) -> None:
    env = daemon_env
    folder = tmp_path / "project"
    folder.mkdir()
    code, out = await syncd(env, "link", str(folder))  # logged out: -32004
    assert code == 1 and "log in" in out, out
    assert await workspace_ids_at(env, folder) == []

    # Logged in, but the cloud refuses the link (no organisation): created, then removed.
    await devcloud.create_user("lone@example.com", PASSWORD)
    await login(env, "lone@example.com")
    code, out = await syncd(env, "link", str(folder))
    assert code == 1 and "no_organization" in out, out
    assert await workspace_ids_at(env, folder) == []

    # A folder linked already (here a clone of another device's workspace) links nothing
    # new and creates nothing; the clone has the folder as its path.
    await devcloud.create_user("org@example.com", PASSWORD, org="Kappa")
    other = await make_device("other")
    await other.cloud.login("org@example.com", PASSWORD)
    published = await other.store.workspaces.create(name="elsewhere")
    await other.cloud.link(workspace_id=published["id"])
    assert (await other.cloud.sync_now("push"))["error"] is None
    await login(env, "org@example.com")
    code, out = await syncd(env, "link", str(folder), "--cloud-workspace", published["id"])
    assert code == 0 and f"cloned 1 rows into {folder}" in out, out  # the workspace's row

    async def placed() -> bool:
        return await workspace_ids_at(env, folder) == [published["id"]]

    await wait_for(placed, message="the clone's path")
    code, out = await syncd(env, "link", str(folder))
    assert code == 0 and published["id"] in out, out
    live = (await call(env, "workspace.list", {"limit": 1000}))["items"]
    assert [(w["id"], w["path"]) for w in live] == [(published["id"], str(folder))]


async def test_link_without_cloud_settings_creates_nothing(
    devcloud: RunningDevcloud, tmp_path: Path
) -> None:
    env = environment(devcloud, tmp_path / "data")
    del env["SYNCD_CLOUD_URL"], env["SYNCD_CLOUD_ANON_KEY"]
    folder = tmp_path / "project"
    folder.mkdir()
    async with running_daemon(env, tmp_path / "daemon.log"):
        code, out = await syncd(env, "link", str(folder))
        assert code == 1 and "SYNCD_CLOUD_URL" in out, out
        assert await workspace_ids_at(env, folder) == []


async def test_link_picks_the_folders_workspace(
    devcloud: RunningDevcloud, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    env = daemon_env
    await devcloud.create_user("pi@example.com", PASSWORD, org="Pi")
    await login(env, "pi@example.com")
    folder = tmp_path / "mine"
    folder.mkdir()
    mine = await call(env, "workspace.create", {"name": "my work", "path": str(folder)})
    code, out = await syncd(env, "link", str(folder))
    assert code == 0 and mine["id"] in out, out
    assert await workspace_ids_at(env, folder) == [mine["id"]]

    # Two workspaces with one path: the CLI does not guess which to publish.
    shared = tmp_path / "shared"
    shared.mkdir()
    one = await call(env, "workspace.create", {"name": "one", "path": str(shared)})
    two = await call(env, "workspace.create", {"name": "two", "path": str(shared)})
    code, out = await syncd(env, "link", str(shared))
    assert code == 2 and one["id"] in out and two["id"] in out, out
    status = await call(env, "cloud.status")
    assert [w["workspace_id"] for w in status["linked_workspaces"]] == [mine["id"]]


async def test_link_and_unlink_of_a_missing_folder(
    devcloud: RunningDevcloud, daemon_env: dict[str, str], tmp_path: Path
) -> None:
    env = daemon_env
    missing = tmp_path / "missing"
    code, out = await syncd(env, "link", str(missing))
    assert code == 2 and "not a folder" in out and "Traceback" not in out, out
    code, out = await syncd(env, "unlink", str(missing))
    assert code == 2 and "not linked" in out and "Traceback" not in out, out

    # A linked folder the user deleted can still be unlinked (by the path stored).
    await devcloud.create_user("gone@example.com", PASSWORD, org="Omega")
    await login(env, "gone@example.com")
    folder = tmp_path / "doomed"
    folder.mkdir()
    code, out = await syncd(env, "link", str(folder))
    assert code == 0, out
    shutil.rmtree(folder)
    code, out = await syncd(env, "unlink", str(folder))
    assert code == 0 and "unlinked" in out, out
    assert (await call(env, "cloud.status"))["linked_workspaces"] == []


async def test_a_restart_while_the_cloud_is_down_keeps_the_session(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Restarted while the cloud cannot be reached, the daemon is logged in as the stored user
    and says the cloud is out of reach (not "log in"); when the cloud is back the session is
    granted and the account loaded without any user action."""
    async with running_devcloud(DevcloudConfig(port=0), database_url=fresh_database_url) as dc:
        await dc.create_user("eve@example.com", PASSWORD, org="Delta")
        env = environment(dc, tmp_path / "data")
        async with running_daemon(env, tmp_path / "daemon-1.log"):
            await login(env, "eve@example.com")
            folder = tmp_path / "project"
            folder.mkdir()
            code, out = await syncd(env, "link", str(folder))
            assert code == 0, out
        url, port = dc.url, dc.port
    token = SecretStore(tmp_path / "data", url, use_keyring=False).get()
    assert token is not None

    async with running_daemon(env, tmp_path / "daemon-2.log"):  # the cloud is down

        async def tried() -> bool:
            return (await call(env, "cloud.status"))["last_error"] == "connect"

        await wait_for(tried, message="the restore to meet the outage")
        state = await call(env, "cloud.status")
        assert state["logged_in"] is True and state["auth_required"] is False
        assert state["user"]["email"] == "eve@example.com"
        assert token not in json.dumps(state)
        code, out = await syncd(env, "status")
        assert code == 0 and "logged in as eve@example.com" in out, out
        assert "the cloud cannot be reached" in out and "logged out" not in out, out
        code, out = await syncd(env, "pull")
        assert code == 1 and "the cloud cannot be reached" in out and "log in" not in out, out
        assert "pulled" not in out, out  # a failed pull's counts are no result

        # The same cloud comes back: the stored session is granted, the account loaded.
        config = DevcloudConfig(port=port)
        async with running_devcloud(config, database_url=fresh_database_url):

            async def back() -> bool:
                state = await call(env, "cloud.status")
                return state["last_error"] is None and state["organization"] is not None

            await wait_for(back, timeout=60_000 * MS, message="the session back by itself")
            state = await call(env, "cloud.status")
            assert state["organization"]["name"] == "Delta" and state["role"] == "owner"
            code, out = await syncd(env, "push")
            assert code == 0 and out.startswith("pushed"), out


async def test_a_clone_creates_its_folder_and_names_what_it_cannot_find(
    devcloud: RunningDevcloud,
    daemon_env: dict[str, str],
    make_device: MakeDevice,
    tmp_path: Path,
) -> None:
    env = daemon_env
    await devcloud.create_user("org@example.com", PASSWORD, org="Kappa")
    await devcloud.create_user("far@example.com", PASSWORD, org="Zeta")
    ours, theirs = await make_device("ours"), await make_device("theirs")
    await ours.cloud.login("org@example.com", PASSWORD)
    await theirs.cloud.login("far@example.com", PASSWORD)
    published = {}
    for device, name in ((ours, "ours"), (theirs, "theirs")):
        ws = await device.store.workspaces.create(name=name)
        await device.cloud.link(workspace_id=ws["id"])
        assert (await device.cloud.sync_now("push"))["error"] is None
        published[name] = ws["id"]
    await login(env, "org@example.com")

    # Another organisation's workspace: named, and where to look; no folder is made for it.
    existing = tmp_path / "existing"
    existing.mkdir()
    code, out = await syncd(env, "link", str(existing), "--cloud-workspace", published["theirs"])
    assert code == 1, out
    assert f"cloud workspace {published['theirs']} not found in your organisation" in out, out
    new = tmp_path / "new"
    code, out = await syncd(
        env, "link", str(new / "clone"), "--cloud-workspace", published["theirs"]
    )
    assert code == 1, out
    assert f"cloud workspace {published['theirs']} not found in your organisation" in out, out
    assert "cloud.workspaces" in out and not new.exists(), out

    # A file is no folder to clone into.
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, out = await syncd(env, "link", str(a_file), "--cloud-workspace", published["ours"])
    assert code == 2 and "not a folder" in out, out

    # A folder that does not exist yet is created, as git clone does.
    code, out = await syncd(env, "link", str(new / "clone"), "--cloud-workspace", published["ours"])
    assert code == 0 and f"cloned 1 rows into {new / 'clone'}" in out, out
    link_file = json.loads((new / "clone" / ".cloud-link.json").read_text())
    assert link_file["cloudWorkspaceId"] == published["ours"]

    async def placed() -> bool:
        return await workspace_ids_at(env, new / "clone") == [published["ours"]]

    await wait_for(placed, message="the clone's path")

    # The same workspace again, elsewhere: refused, naming where it is (was: exit 0, the old
    # link answered as if this clone were made); no folder is made. The same path again is
    # that link.
    other = tmp_path / "other"
    code, out = await syncd(env, "link", str(other), "--cloud-workspace", published["ours"])
    assert code == 1, out  # (the daemon's refusal)
    assert f"already linked at {new / 'clone'}" in out and not other.exists(), out
    code, out = await syncd(env, "link", str(new / "clone"), "--cloud-workspace", published["ours"])
    assert code == 0, out


async def test_a_ui_of_a_fresh_daemon_gets_the_cloud_status_when_it_subscribes(
    daemon_env: dict[str, str],
) -> None:
    """Pushed on connect: a daemon that holds no session and no link still publishes its
    first snapshots at start, so a UI subscribing without ``since`` gets them first (was:
    nothing until the first login or link)."""
    client = await connect(data_dir=Path(daemon_env["SYNCD_DATA_DIR"]))
    try:
        stream = await client.subscribe(["cloud.status", "sync.status"])
        first = await asyncio.wait_for(anext(stream), 10)
        second = await asyncio.wait_for(anext(stream), 10)
        await stream.close()
    finally:
        await client.close()
    statuses = {e.topic: e.data for e in (first, second)}
    assert statuses["cloud.status"]["configured"] is True
    assert statuses["cloud.status"]["logged_in"] is False
    assert statuses["sync.status"]["state"] == "offline"
    assert first.seq < second.seq <= stream.last_seq
