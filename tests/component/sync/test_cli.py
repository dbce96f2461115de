"""`syncd login/link/push/pull/status/unlink/logout` against a real `syncd run` subprocess that
syncs with the in-process devcloud (the CLI runs as subprocesses too, awaited, so the devcloud
in this event loop keeps serving)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devcloud.server import RunningDevcloud
from tests.helpers import MS, wait_for

from .conftest import PASSWORD

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


@pytest.fixture
async def daemon_env(devcloud: RunningDevcloud, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    env = environment(devcloud, tmp_path / "data")
    log = (tmp_path / "daemon.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "run", "--port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        await wait_for(lambda: (tmp_path / "data" / "daemon.json").exists(), timeout=20_000 * MS)
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        log.close()


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
                            stdin="wrong\n")  # fmt: skip
    assert code == 1 and "invalid_credentials" in out and "wrong" not in out
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
