"""Helpers for the end-to-end sync tests (imported by conftest.py and the tests; a module name
no other test directory uses — this folder has no ``__init__.py``, like tests/integration/realtime).

Everything here drives the public interface only: ``syncd run`` subprocesses configured by
``SYNCD_CLOUD_URL``/``SYNCD_CLOUD_ANON_KEY``, their JSON-RPC API through ``ui_bridge.client``,
and ``python -m devcloud`` subprocesses. The cloud database is read directly (asyncpg) only to
count what really arrived there.

``CloudProcess``   a devcloud subprocess on one database; ``stop()``/``start()`` bring the same
                   cloud back on the same port (an outage); ``create_user`` seeds users/orgs.
``DaemonProcess``  one ``syncd run --data-dir D --port 0`` with a connected client; ``kill()``
                   (SIGKILL), ``stop()`` (SIGTERM), ``start()`` again on the same data dir.
``SyncLab``        every process of one test (the ``lab`` fixture); ``two_devices(email)``
                   starts daemons a and b logged in as one new user.

sync_checks.py compares replicas and waits for sync.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Self

import asyncpg

from daemon.sync.cloud.secrets import StoredSession
from devcloud import _seed
from devcloud.context import DevcloudConfig
from tests.helpers import MS, wait_for
from ui_bridge.client import Client, connect

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery 1"
START_TIMEOUT = 30_000 * MS


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: no SYNCD_* of the caller, never the OS keyring."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    # The daemon must not store test refresh tokens in the keyring of the machine running the
    # tests: keyring's fail backend makes SecretStore use its 0600 file in the data dir.
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env.update(extra)
    return env


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class CloudProcess:
    """``python -m devcloud --database-url URL --port P`` as a child process."""

    def __init__(self, database_url: str, log: Path, *, jwt_expiry: int | None = None) -> None:
        self.database_url = database_url
        self.log = log
        self.jwt_expiry = jwt_expiry
        self.port = 0
        self.url = ""
        config = DevcloudConfig()
        self.anon_key = config.anon_key
        self.service_role_key = config.service_role_key
        self.proc: asyncio.subprocess.Process | None = None
        self.pool: asyncpg.Pool | None = None
        self._starts = 0

    async def start(self) -> None:
        assert not self.running, "devcloud is already running"
        self._starts += 1
        log = self.log.with_name(f"{self.log.name}.{self._starts}")
        args = ["--database-url", self.database_url, "--port", str(self.port)]
        if self.jwt_expiry is not None:
            args += ["--jwt-expiry", str(self.jwt_expiry)]
        with log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "devcloud",
                *args,
                cwd=ROOT,
                env=child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc
        await wait_for(
            lambda: proc.returncode is not None or "API URL:" in log.read_text(errors="replace"),
            timeout=START_TIMEOUT,
            message="devcloud to start",
        )
        assert proc.returncode is None, f"devcloud exited:\n{tail(log)}"
        found = re.search(r"API URL: (http://127\.0\.0\.1:(\d+))", log.read_text())
        assert found is not None, tail(log)
        self.url, self.port = found.group(1), int(found.group(2))
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=4)

    async def stop(self) -> None:
        """SIGTERM and wait: from now on the cloud refuses connections (an outage)."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), START_TIMEOUT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def _log_files(self) -> list[Path]:
        """One log per start (``devcloud.log.1``, ``.2``, …)."""
        return [self.log.with_name(f"{self.log.name}.{n}") for n in range(1, self._starts + 1)]

    def logs(self) -> str:
        return "\n".join(tail(path) for path in self._log_files())

    def log_text(self) -> str:
        """Every start's whole log."""
        return "\n".join(path.read_text(errors="replace") for path in self._log_files())

    # The database, read directly -----------------------------------------------------------

    def _pool(self) -> asyncpg.Pool:
        assert self.pool is not None, "start() first"
        return self.pool

    async def create_user(
        self, email: str, password: str = PASSWORD, *, org: str | None = None, role: str = "owner"
    ) -> str:
        async with self._pool().acquire() as conn:
            return await _seed.create_user(conn, email, password, org=org, role=role)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._pool().acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._pool().acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def ids(self, table: str, workspace_id: str) -> list[str]:
        """Ids of ``table``'s rows in that workspace (every row: duplicates would show twice)."""
        assert table in ("conversations", "messages", "tasks")
        rows = await self.fetch(
            f"SELECT id::text FROM public.{table} WHERE workspace_id = $1", uuid.UUID(workspace_id)
        )
        return [r[0] for r in rows]

    async def count(self, table: str, workspace_id: str) -> int:
        assert table in ("conversations", "messages", "tasks", "documents", "doc_updates")
        return int(
            await self.fetchval(
                f"SELECT count(*) FROM public.{table} WHERE workspace_id = $1",
                uuid.UUID(workspace_id),
            )
        )


class DaemonProcess:
    """One ``syncd run`` on ``data_dir``, configured for ``cloud``, with a client."""

    def __init__(self, name: str, data_dir: Path, cloud: CloudProcess | None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.cloud = cloud
        self.stderr = data_dir.parent / f"{name}.stderr"
        self.proc: asyncio.subprocess.Process | None = None
        self._client: Client | None = None
        self.secrets: set[str] = set()  # values that must never appear in the daemon's logs
        self.stopping = False  # set before a kill or stop: calls failing now are expected

    @property
    def client(self) -> Client:
        assert self._client is not None, f"daemon {self.name} is not running"
        return self._client

    def env(self) -> dict[str, str]:
        if self.cloud is None:
            return child_env()
        assert self.cloud.url, "start the cloud before the daemons"
        return child_env(SYNCD_CLOUD_URL=self.cloud.url, SYNCD_CLOUD_ANON_KEY=self.cloud.anon_key)

    async def start(self) -> DaemonProcess:
        assert not self.running, f"{self.name} already runs"
        self.stopping = False
        with self.stderr.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "daemon", "run", "--data-dir", str(self.data_dir)),
                *("--port", "0"),
                cwd=ROOT,
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        proc = self.proc
        await wait_for(
            lambda: proc.returncode is not None or self._discovered_pid() == proc.pid,
            timeout=START_TIMEOUT,
            message=f"daemon {self.name} to publish daemon.json",
        )
        assert proc.returncode is None, f"{self.name} exited ({proc.returncode}):\n{self.logs()}"
        self._client = await connect(data_dir=self.data_dir, reconnect=False)
        return self

    def _discovered_pid(self) -> object:
        try:
            return json.loads((self.data_dir / "daemon.json").read_text()).get("pid")
        except (FileNotFoundError, ValueError):
            return None

    async def call(self, method: str, params: Any = None) -> Any:
        return await self.client.call(method, params)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        proc = self.proc
        assert proc is not None
        self.stopping = True
        proc.kill()
        await asyncio.wait_for(proc.wait(), START_TIMEOUT)
        await self._close_client()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> None:
        """SIGTERM: a clean shutdown."""
        await self._close_client()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self.stopping = True
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), START_TIMEOUT)
        assert proc.returncode == 0, self.logs()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def close(self) -> None:
        await self._close_client()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def log_text(self) -> str:
        text = ""
        log_dir = self.data_dir / "logs"
        if log_dir.is_dir():
            text = "\n".join(p.read_text(errors="replace") for p in sorted(log_dir.iterdir()))
        if self.stderr.exists():
            text += "\n" + self.stderr.read_text(errors="replace")
        return text

    def logs(self) -> str:
        return tail(self.stderr, 80)

    def refresh_token(self) -> str | None:
        """The refresh token the daemon stored (file backend), if any."""
        try:
            data = json.loads((self.data_dir / "cloud-credentials.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        # (an entry is the token, or JSON text holding it and the user: StoredSession)
        found = [e.refresh_token for e in map(StoredSession.decode, _strings(data)) if e]
        return max(found, key=len) if found else None

    # Public-API helpers ----------------------------------------------------------------------

    async def login(self, email: str, password: str = PASSWORD) -> Any:
        self.secrets.add(password)
        return await self.call("cloud.login", {"email": email, "password": password})

    async def publish(self, name: str) -> str:
        """Create a workspace and link it to the cloud (publish); its id."""
        ws = await self.call("workspace.create", {"name": name})
        await self.call("cloud.link", {"workspace_id": ws["id"]})
        return str(ws["id"])

    async def clone(self, workspace_id: str, path: Path) -> Any:
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return await self.call(
            "cloud.link", {"cloud_workspace_id": workspace_id, "path": str(path)}
        )

    async def push(self) -> Any:
        return await self.call("sync.push")

    async def pull(self) -> Any:
        return await self.call("sync.pull")

    async def status(self) -> dict[str, Any]:
        return dict(await self.call("sync.status"))

    async def send(self, conversation_id: str, content: str, role: str = "user", **kw: Any) -> Any:
        params = {"conversation_id": conversation_id, "role": role, "content": content, **kw}
        return await self.call("message.send", params)

    async def all_pages(self, method: str, params: dict[str, Any], cursor: str = "cursor") -> list:
        items: list[Any] = []
        page: dict[str, Any] = await self.call(method, {**params, "limit": 1000})
        items.extend(page["items"])
        while page["next_cursor"] is not None:
            page = await self.call(method, {**params, "limit": 1000, cursor: page["next_cursor"]})
            items.extend(page["items"])
        return items

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        return await self.all_pages(
            "message.list", {"conversation_id": conversation_id}, cursor="after"
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


class SyncLab:
    """Every process of one test (see conftest.py); ``async with`` stops them all at exit,
    prints their logs, and checks that no daemon logged a password or token it was given."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self._cloud: CloudProcess | None = None
        self.daemons: list[DaemonProcess] = []

    @property
    def cloud(self) -> CloudProcess:
        assert self._cloud is not None, "await lab.start_cloud() first"
        return self._cloud

    async def start_cloud(self, *, jwt_expiry: int | None = None) -> CloudProcess:
        assert self._cloud is None, "one cloud per test"
        self._cloud = CloudProcess(
            self.database_url, self.root / "devcloud.log", jwt_expiry=jwt_expiry
        )
        await self._cloud.start()
        return self._cloud

    async def daemon(self, name: str) -> DaemonProcess:
        daemon = DaemonProcess(name, self.root / name, self._cloud)
        self.daemons.append(daemon)
        return await daemon.start()

    async def two_devices(self, email: str) -> tuple[DaemonProcess, DaemonProcess]:
        """Daemons ``a`` and ``b``, both logged in as ``email`` (a new owner of org acme)."""
        await self.cloud.create_user(email, org="acme")
        a, b = await self.daemon("a"), await self.daemon("b")
        await a.login(email)
        await b.login(email)
        return a, b

    async def close(self) -> None:
        for daemon in self.daemons:
            await daemon.close()
        if self._cloud is not None:
            await self._cloud.close()

    def report(self) -> None:
        for daemon in self.daemons:
            print(f"===== daemon {daemon.name} =====\n{daemon.logs()}")
        if self._cloud is not None:
            print(f"===== devcloud =====\n{self._cloud.logs()}")

    def check_no_secret_logged(self) -> None:
        for daemon in self.daemons:
            token = daemon.refresh_token()
            secrets = daemon.secrets | ({token} if token else set())
            text = daemon.log_text()
            for secret in secrets:
                assert secret not in text, f"a password or token leaked into {daemon.name}'s logs"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
        self.report()
        if exc[0] is None:
            self.check_no_secret_logged()
