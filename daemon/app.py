"""Composition root: builds every component from Settings and owns the start/stop order.

Start: take the data dir's lock (one daemon per data dir), open the store (migrates), start the
cloud (only when configured: session restore and sync run in the background, nothing waits for
the cloud), start the local API, then check the database in the background (``PRAGMA
quick_check``: store/integrity.py; damage is logged and published as ``daemon.status``).
Stop (SIGINT/SIGTERM or leaving ``async with``): interrupt that check, stop the local API (no
new work), stop the cloud, let the store commit what is queued and close it, release the lock
— all within ~5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.config import FILE_MODE, Settings, make_private_dir
from daemon.errors import AlreadyRunning, ConfigError, DaemonError, FileFailed
from daemon.store import Store
from daemon.store.integrity_report import ADVICE
from daemon.watch import WATCH_EVERY_S, FileWatch
from ui_bridge.discovery import COMPACT_ROLE, DAEMON_ROLE, LOCK_FILE, parse_lock_owner

if TYPE_CHECKING:
    from daemon.sync.service import CloudService, DisabledCloud
    from ui_bridge.server import BridgeServer

logger = logging.getLogger(__name__)

DB_FILE = "syncd.db"
# Shutdown budget (the whole stop must fit in 5 s)
BRIDGE_STOP_TIMEOUT = 2.0
CLOUD_STOP_TIMEOUT = 0.5
STORE_CLOSE_TIMEOUT = 2.0


class DataDirLock:
    """An exclusive ``flock`` on ``<data-dir>/syncd.lock`` holding the owner's pid."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, data_dir: Path, role: str = DAEMON_ROLE) -> DataDirLock:
        """Take the lock, writing ``"<pid> <role>"`` into it (``role``: what holds it, said to
        whoever finds it taken). Raises AlreadyRunning when another process holds it."""
        path = data_dir / LOCK_FILE
        try:
            make_private_dir(data_dir)
            # never through a symbolic link: the pid would be written into its target
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        except OSError as exc:
            why = f"{path} is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise ConfigError("data_dir", f"cannot use {data_dir}: {why}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, owner = _read_owner(fd)
            os.close(fd)
            raise AlreadyRunning(pid, str(data_dir), compacting=owner == COMPACT_ROLE) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        except OSError as exc:  # a full disk: the error names no file
            os.close(fd)
            raise FileFailed.from_os_error(exc, "write", path) from exc
        return cls(fd, path)

    def release(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing drops the flock
        self._fd = -1


def _read_owner(fd: int) -> tuple[int | None, str]:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace")
    except OSError:
        return None, DAEMON_ROLE
    return parse_lock_owner(text)


class Daemon:
    """``async with Daemon(settings) as daemon:`` runs the daemon until the block exits."""

    def __init__(self, settings: Settings, *, version: str = __version__) -> None:
        self.settings = settings
        self.version = version
        self.store: Store | None = None
        self.bridge: BridgeServer | None = None
        self.cloud: CloudService | DisabledCloud | None = None
        self._lock: DataDirLock | None = None
        #: set when a file the daemon depends on was deleted or replaced under it (``lost_why``
        #: says which): ``run_daemon`` then stops it (watch.py)
        self.lost = asyncio.Event()
        self.lost_why = ""
        self._watch: asyncio.Task[None] | None = None
        self._integrity: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Daemon:
        data_dir = self.settings.data_dir
        self._lock = DataDirLock.acquire(data_dir)
        try:
            self.store = await Store.open(data_dir / DB_FILE, self.settings.store)
            self.cloud = await _start_cloud(self.settings, self.store)
            self.bridge = _build_bridge(self.settings, self.store, self.version, self.cloud)
            await self.bridge.start()
            files = FileWatch(
                {  # the data dir first: when it is gone, that is what happened
                    "the data dir": data_dir,
                    "the database": data_dir / DB_FILE,
                    "its write-ahead log": data_dir / f"{DB_FILE}-wal",
                }
            )
            self._watch = asyncio.create_task(self._watch_files(files), name="watch")
            self._integrity = asyncio.create_task(self._check_integrity(), name="integrity")
        except BaseException as exc:
            error = _start_failure(exc)
            if error is not None:  # (a daemon started at login has no terminal)
                logger.error("daemon.start.failed %s", error)
            await self.stop()
            if error is not None and error is not exc:
                raise error from exc
            raise
        logger.info(
            "daemon.started pid=%d version=%s data_dir=%s url=%s",
            os.getpid(),
            self.version,
            data_dir,
            self.bridge.url,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _watch_files(self, files: FileWatch) -> None:
        """Every ``WATCH_EVERY_S``: stop (``lost``) if a watched file is gone, else restore
        the discovery file if someone removed or changed it."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            problem = files.problem()
            if problem is not None:
                self.lost_why = problem
                logger.error(
                    "daemon.files_lost %s while the daemon ran: stopping (what is written now"
                    " would be lost); start it again",
                    problem,
                )
                self.lost.set()
                return
            if self.bridge is not None:
                try:
                    self.bridge.keep_discovery()
                except OSError as exc:
                    logger.warning("bridge.discovery_not_restored error=%s", exc)

    async def _check_integrity(self) -> None:
        """Check the database once, in the background (store/integrity.py): its report is in
        ``daemon.status``; damage (or a check that cannot run) is also an ERROR (WARNING) line
        and a ``daemon.status`` event to the UIs."""
        store = self.store
        assert store is not None
        started = time.perf_counter()
        report = await store.integrity.run()
        elapsed_ms = (time.perf_counter() - started) * 1e3
        if report.state == "ok":
            logger.info("store.integrity.ok path=%s elapsed_ms=%.0f", store.path, elapsed_ms)
        elif report.state == "damaged":
            logger.error(
                "store.integrity.damaged path=%s problems=%s: %s", store.path, report.detail, ADVICE
            )
        elif report.state == "failed":
            logger.warning("store.integrity.unchecked path=%s error=%s", store.path, report.detail)
        if report.state in ("damaged", "failed"):
            await self._publish_status({"store": report.as_status()})

    async def _publish_status(self, part: dict[str, Any]) -> None:
        """A ``daemon.status`` event (``part`` of the status, plus ``id``) as the cloud's status
        events are: a changelog entry; only to the UIs listening now if it cannot be stored (a
        damaged database may refuse it)."""
        data = {"id": "daemon.status", **part}
        store, bridge = self.store, self.bridge
        assert store is not None
        try:
            await store.sync.publish("daemon.status", data)
        except DaemonError as exc:
            logger.warning("daemon.status.unstored error=%s (sent to the UIs listening)", exc)
            if bridge is not None:
                bridge.hub.publish_live("daemon.status", data)

    async def stop(self) -> None:
        """Stop accepting work, finish in-flight writes, close the store, release the lock."""
        for task in (self._watch, self._integrity):
            if task is not None:  # (the integrity check is interrupted: store/integrity.py)
                await _cancelled(task)
        self._watch = self._integrity = None
        bridge, self.bridge = self.bridge, None
        cloud, self.cloud = self.cloud, None
        store, self.store = self.store, None
        try:
            if bridge is not None:
                await _bounded(bridge.stop(), BRIDGE_STOP_TIMEOUT, "bridge.stop")
            if cloud is not None:
                await _bounded(cloud.stop(), CLOUD_STOP_TIMEOUT, "cloud.stop")
            if store is not None:
                await _bounded(store.close(), STORE_CLOSE_TIMEOUT, "store.close")
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
        logger.info("daemon.stopped pid=%d", os.getpid())


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it; a failure it ended with is logged."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:  # supervisor boundary: the stop must go on
        logger.exception("%s.failed", task.get_name())


def _start_failure(exc: BaseException) -> Exception | None:
    """What a start that failed with ``exc`` says: a DaemonError as it is, an OSError on a
    file as a FileFailed naming it, any other OSError (the socket) as it is; None for the
    others (a bug, a cancellation: their traceback says more)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return FileFailed.from_os_error(exc, "use")
    if isinstance(exc, DaemonError | OSError):
        return exc
    return None


async def _start_cloud(settings: Settings, store: Store) -> CloudService | DisabledCloud:
    """The cloud service when the cloud is configured, else the stub answering -32003."""
    from daemon.sync.service import CloudService, DisabledCloud, store_publisher

    cloud: CloudService | DisabledCloud
    if settings.cloud.configured:
        cloud = CloudService(
            settings.cloud, store=store, data_dir=settings.data_dir, publish=store_publisher(store)
        )
    else:
        logger.info("cloud.off (set SYNCD_CLOUD_URL and SYNCD_CLOUD_ANON_KEY to sync)")
        cloud = DisabledCloud(store, store_publisher(store))
    await cloud.start()
    return cloud


def _build_bridge(
    settings: Settings, store: Store, version: str, cloud: CloudService | DisabledCloud
) -> BridgeServer:
    from daemon.sync.live import DisabledLive
    from daemon.sync.service import CloudService
    from ui_bridge.methods import build_method_table
    from ui_bridge.server import BridgeServer

    live = cloud.live if isinstance(cloud, CloudService) else DisabledLive()
    bridge = BridgeServer(
        settings.bridge,
        store=store,
        data_dir=settings.data_dir,
        version=version,
        methods=build_method_table(cloud, live),
    )
    if isinstance(cloud, CloudService):  # presence and broadcasts reach the UIs, unstored
        cloud.live.publisher = bridge.hub.publish_live
        cloud.live.max_frame_bytes = settings.bridge.max_frame_bytes  # presence fits a frame
    return bridge


async def _bounded(step: Coroutine[Any, Any, None], limit_s: float, name: str) -> None:
    """Run one shutdown step; a failure or a timeout is logged and the shutdown goes on."""
    try:
        await asyncio.wait_for(step, limit_s)
    except TimeoutError:
        logger.error("%s.timeout after %.1fs", name, limit_s)
    except Exception:  # supervisor boundary: the remaining steps must still run
        logger.exception("%s.failed", name)


async def run_daemon(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; return the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Daemon(settings) as daemon:
            # What startup allocated (schemas, caches, connections) lives as long as the daemon:
            # frozen too (see loop.tune_gc), full collections no longer walk it (45-80 ms).
            gc.collect()
            gc.freeze()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(daemon.lost.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
            if daemon.lost.is_set():
                print(f"syncd: {daemon.lost_why} while the daemon ran: stopped", file=sys.stderr)
                return 1
            logger.info("daemon.stopping (signal received)")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0
