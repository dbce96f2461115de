"""What the benchmarks share. Each script still runs alone: ``python bench/X.py`` puts this
folder first on ``sys.path``, so ``import _common`` finds this file, which puts the checkout on
``sys.path`` (import it before ``daemon``/``devcloud``/``ui_bridge``).

``percentile``/``summary_us``    latency figures; ``process_cpu_s`` this process's CPU time.
``print_json_with_load``         run the measurement, print its figures as JSON with the 1-minute
                                 load average before and after and the machine's CPU time
                                 during the run by kind, steal included (the machine is
                                 shared: noisy).
``child_env``/``child``          child processes (``python -m …``) that never see our SYNCD_*
                                 variables nor the OS keyring.
``wait_until``                   poll a condition (sync or async) until a deadline.
``scratch_database``             a fresh PostgreSQL database (embedded pgserver unless a URL).
``devcloud_process``             ``python -m devcloud`` on a database; yields its API URL
                                 (``devcloud_child``: and its process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's packages, installed or not

from daemon import loop  # noqa: E402
from devcloud.postgres import random_database_name, start_embedded, with_database  # noqa: E402

T = TypeVar("T")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_us(samples: list[float]) -> dict[str, float]:
    return {
        "p50_us": round(percentile(samples, 0.50) * 1e6, 1),
        "p99_us": round(percentile(samples, 0.99) * 1e6, 1),
        "mean_us": round(statistics.fmean(samples) * 1e6, 1),
        "n": len(samples),
    }


def process_cpu_s() -> float:
    """CPU seconds of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_on_daemon_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the event loop ``syncd run`` uses (daemon/loop.py; ``SYNCD_EVENT_LOOP``
    picks another, as for the daemon), so in-process daemon parts and the raw baselines
    measured next to them run as they would in the daemon."""
    choice = os.environ.get("SYNCD_EVENT_LOOP", "auto").lower()
    if choice not in loop.EVENT_LOOPS:
        raise SystemExit(f"SYNCD_EVENT_LOOP must be one of {', '.join(loop.EVENT_LOOPS)}")
    global _LOOP_USED
    _LOOP_USED = "uvloop" if loop.loop_factory(choice) is not None else "asyncio"
    loop.tune_gc()  # as ``syncd run`` does
    return loop.run(main, choice)


_LOOP_USED: str | None = None


def print_json_with_load(measure: Callable[[], dict[str, Any]]) -> None:
    before, cpu_before = os.getloadavg()[0], _machine_cpu()
    figures = measure()
    figures["load_average_1m"] = {"before": before, "after": os.getloadavg()[0]}
    cpu_after = _machine_cpu()
    if cpu_before and cpu_after:  # (Linux only)
        used = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}
        total = sum(used.values()) or 1
        # the machine's CPU time during the run: steal = time the hypervisor gave our virtual
        # CPUs to others (a noisy neighbour), iowait = idle waiting for the disk
        figures["machine_cpu_share"] = {k: round(v / total, 3) for k, v in used.items()}
    if _LOOP_USED is not None:
        figures["event_loop"] = _LOOP_USED
    print(json.dumps(figures, indent=2))


def _machine_cpu() -> dict[str, int] | None:
    """The machine's CPU time so far (jiffies: busy, idle, iowait, steal), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return {"busy": busy, "idle": idle, "iowait": iowait, "steal": steal}


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # never the real keyring
    env.update(extra)
    return env


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, limit_s: float = 60.0
) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def child(
    args: list[str], log: Path, env: dict[str, str]
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python *args`` from the repository root, output to ``log``; SIGTERM at exit."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


@contextlib.asynccontextmanager
async def scratch_database(url: str | None) -> AsyncIterator[str]:
    """A new database on ``url``'s server (an embedded one in a temporary directory when None),
    dropped at exit; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="syncd-bench-pg-") as pg_dir:
        server = None
        if url is None:
            server = await asyncio.to_thread(start_embedded, Path(pg_dir) / "data")
            url = server.url
        name = random_database_name("syncd_bench")
        admin = await asyncpg.connect(url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            yield with_database(url, name)
        finally:
            admin = await asyncpg.connect(url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            if server is not None:
                await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def devcloud_child(
    database_url: str, log: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``python -m devcloud`` on ``database_url``; yields its API URL and its process (to
    stall it with SIGSTOP, or read its CPU time)."""
    args = ["-m", "devcloud", "--database-url", database_url, "--port", "0"]
    async with child(args, log, child_env()) as proc:
        await wait_until(
            lambda: proc.returncode is not None or "API URL:" in log.read_text(), "devcloud"
        )
        text = await asyncio.to_thread(log.read_text)
        found = re.search(r"API URL: (\S+)", text)
        if found is None:
            raise RuntimeError(f"devcloud did not start:\n{text}")
        yield found.group(1), proc


@contextlib.asynccontextmanager
async def devcloud_process(database_url: str, log: Path) -> AsyncIterator[str]:
    async with devcloud_child(database_url, log) as (url, _proc):
        yield url
