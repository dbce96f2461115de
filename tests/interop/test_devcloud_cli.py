"""``python -m devcloud`` as a real process on an embedded PostgreSQL: it prints its URL and
keys, ``user create`` works against the same data dir while it runs, and SIGINT stops it
cleanly (exit 0, PostgreSQL stopped)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from devcloud.context import DevcloudConfig
from devcloud.keys import DEFAULT_ANON_KEY, DEFAULT_SERVICE_ROLE_KEY
from devcloud.server import running_devcloud
from tests.helpers import MS, wait_for

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60_000 * MS  # initdb of a fresh embedded PostgreSQL on a busy 2-core machine


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devcloud", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict, Path]]:
    data_dir = tmp_path / "devcloud"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devcloud", "--port", "0", "--data-dir", str(data_dir),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        printed = await asyncio.wait_for(read_banner(process), START_TIMEOUT)
        yield process, printed, data_dir
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_banner(process: asyncio.subprocess.Process) -> dict[str, str]:
    assert process.stdout is not None
    printed: dict[str, str] = {}
    while "service_role key" not in printed:
        line = (await process.stdout.readline()).decode()
        assert line, "devcloud exited before printing its keys"
        if ": " in line:
            key, value = line.strip().split(": ", 1)
            printed[key] = value
    return printed


async def test_devcloud_process_prints_keys_seeds_users_and_stops_cleanly(server):
    process, printed, data_dir = server
    assert printed["API URL"].startswith("http://127.0.0.1:")
    assert printed["anon key"] == DEFAULT_ANON_KEY
    assert printed["service_role key"] == DEFAULT_SERVICE_ROLE_KEY

    code, out, err = await run_cli(
        "user", "create", "--email", "zed@example.com", "--password", "s3cret-pw",
        "--org", "Acme", "--role", "member", "--data-dir", str(data_dir),
    )  # fmt: skip
    assert code == 0, err
    user_id = out.strip()

    async with httpx.AsyncClient(base_url=printed["API URL"]) as http:
        response = await http.post(
            "/auth/v1/token?grant_type=password",
            json={"email": "zed@example.com", "password": "s3cret-pw"},
            headers={"apikey": printed["anon key"]},
        )
    assert response.status_code == 200 and response.json()["user"]["id"] == user_id

    again = await run_cli(
        "user", "create", "--email", "zed@example.com", "--password", "s3cret-pw",
        "--data-dir", str(data_dir),
    )  # fmt: skip
    assert again[0] == 1 and "User already registered" in again[2]

    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), 20_000 * MS) == 0
    postmaster = data_dir / "pg" / "postmaster.pid"
    await wait_for(lambda: not postmaster.exists(), message="embedded PostgreSQL to stop")


@pytest.mark.parametrize(
    "args",
    [
        ["--jwt-secret", "too-short"],
        ["--port", "70000"],
        ["user", "create", "--email", "a@example.com", "--password", "pw", "--role", "king"],
        ["user", "create", "--email", "a@example.com"],
    ],
)
async def test_bad_arguments_exit_2(args: list[str], tmp_path: Path):
    code, _out, err = await run_cli(*args, "--data-dir", str(tmp_path))
    assert code == 2 and "error" in err
    assert not os.listdir(tmp_path)  # nothing was started or created


async def test_user_create_against_a_database_url(fresh_database_url: str):
    code, out, err = await run_cli(
        "user", "create", "--email", "Una@Example.com", "--password", "s3cret-pw",
        "--org", "Beta", "--database-url", fresh_database_url,
    )  # fmt: skip
    assert code == 0, err
    conn = await asyncpg.connect(fresh_database_url)
    try:
        row = await conn.fetchrow(
            "SELECT u.email, m.role, o.name FROM auth.users u"
            " JOIN public.org_memberships m ON m.user_id = u.id"
            " JOIN public.organizations o ON o.id = m.org_id WHERE u.id = $1",
            uuid.UUID(out.strip()),
        )
    finally:
        await conn.close()
    assert dict(row) == {"email": "una@example.com", "role": "owner", "name": "Beta"}


async def test_a_port_in_use_fails_startup_cleanly(fresh_database_url: str):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = DevcloudConfig(port=taken.getsockname()[1])
        with pytest.raises(OSError):
            async with running_devcloud(config, database_url=fresh_database_url):
                pass
