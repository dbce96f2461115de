"""The local API server: one WebSocket at ``ws://127.0.0.1:<port>/`` speaking JSON-RPC 2.0.

``start()`` checks the data dir is free, listens on 127.0.0.1 only (compression off, frames
bounded by ``max_frame_bytes``), then writes the discovery file; ``stop()`` removes the file
first, then closes every connection (1001) and stops listening. A fresh random token per start
guards every connection (``access.check_handshake`` runs before the upgrade).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import time
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from daemon.config import BridgeSettings
from daemon.errors import ConfigError, PortInUse
from daemon.logs import RedactSecrets
from daemon.loop import running_loop_name
from ui_bridge.access import check_handshake
from ui_bridge.discovery import (
    DiscoveryInfo,
    claim_discovery,
    discovery_path,
    read_discovery,
    remove_discovery,
    write_discovery,
)
from ui_bridge.dispatch import Dispatcher
from ui_bridge.hot import HotLoop
from ui_bridge.hub import EventHub
from ui_bridge.methods import MethodTable, build_method_table
from ui_bridge.session import BridgeConnection, Session, SessionServices

if TYPE_CHECKING:
    from daemon.store import Store

__all__ = ["BridgeServer"]

logger = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
CLOSE_TIMEOUT: Final = 2.0  # websockets' own close handshake wait
#: How long ``stop`` lets running requests finish (each write takes milliseconds; the daemon's
#: whole stop has a few seconds: daemon/app.py).
STOP_DRAIN_TIMEOUT: Final = 0.5


class BridgeServer:
    """The local API. ``app.py`` builds it with the store and starts it after the store."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        store: Store,
        data_dir: Path,
        version: str,
        methods: MethodTable | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.data_dir = Path(data_dir)
        self.version = version
        self.methods = methods if methods is not None else build_method_table()
        self.token = secrets.token_urlsafe(32)
        self.hub = EventHub(store)
        self.sessions: set[Session] = set()
        self.started_at = ""
        self._started_monotonic = 0.0
        self._server: Server | None = None
        self._openrpc: dict[str, Any] | None = None
        self.hot: HotLoop | None = None  # the loop kept awake after replies (set by start)
        self._ws_logger = logging.getLogger("ui_bridge.websockets")
        self.port = 0

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/`` (the token is not part of it)."""
        return f"ws://{LOOPBACK}:{self.port}/"

    async def start(self) -> None:
        """Listen, then publish the discovery file. Raises ``DaemonAlreadyRunning``, or
        ``PortInUse`` when another program listens on the port."""
        if self.settings.host != LOOPBACK:
            raise ConfigError("bridge.host", "the local API listens on 127.0.0.1 only")
        claim_discovery(self.data_dir)
        if not any(isinstance(f, RedactSecrets) for f in self._ws_logger.filters):
            self._ws_logger.addFilter(RedactSecrets())
        await self.hub.start()
        self.hot = hot = HotLoop(asyncio.get_running_loop(), self.settings.spin_us / 1e6)
        services = SessionServices(
            store=self.store,
            hub=self.hub,
            dispatcher=Dispatcher(self.methods),
            send_queue_size=self.settings.send_queue_size,
            send_queue_bytes=self.settings.send_queue_bytes,
            status=self.status,
            describe=self.describe,
            hot=hot,
        )
        self._services = services
        try:
            self._server = await serve(
                self._handle,
                LOOPBACK,
                self.settings.port,
                process_request=self._process_request,
                compression=None,
                max_size=self.settings.max_frame_bytes,
                close_timeout=CLOSE_TIMEOUT,
                logger=self._ws_logger,
                create_connection=BridgeConnection,
            )
        except BaseException as exc:
            self.hub.stop()
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise PortInUse(self.settings.port) from exc
            raise
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        self.started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._started_monotonic = time.monotonic()
        try:
            write_discovery(self.data_dir, self._discovery_info())
        except BaseException:
            await self.stop()
            raise
        logger.info("bridge.started url=%s", self.url)

    def keep_discovery(self) -> bool:
        """Write the discovery file again if it is gone, damaged or not ours (someone deleted or
        overwrote it: clients could no longer find this daemon); ``True`` if it was rewritten."""
        if self._server is None:
            return False
        ours = self._discovery_info()
        if read_discovery(self.data_dir) == ours:
            return False
        write_discovery(self.data_dir, ours)
        logger.warning(
            "bridge.discovery_restored path=%s (it was missing, damaged or changed)",
            discovery_path(self.data_dir),
        )
        return True

    def _discovery_info(self) -> DiscoveryInfo:
        return DiscoveryInfo(
            pid=os.getpid(),
            port=self.port,
            url=self.url,
            token=self.token,
            version=self.version,
            started_at=self.started_at,
        )

    async def stop(self) -> None:
        """Remove the discovery file, stop listening, let each connection's running requests
        finish and their replies go out while new ones are refused (-32010; at most
        ``STOP_DRAIN_TIMEOUT``), then close every connection (1001)."""
        if self._server is None:
            return
        remove_discovery(self.data_dir, token=self.token)
        server, self._server = self._server, None
        server.close(close_connections=False)  # stop accepting; sessions are closed below
        sessions = list(self.sessions)
        await asyncio.gather(*(s.drain(STOP_DRAIN_TIMEOUT) for s in sessions))
        await asyncio.gather(*(s.close(1001, "daemon shutting down") for s in sessions))
        await server.wait_closed()
        self.hub.stop()
        logger.info("bridge.stopped")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        rejection = check_handshake(
            path=request.path,
            hosts=headers.get_all("Host"),
            origins=headers.get_all("Origin"),
            authorizations=headers.get_all("Authorization"),
            port=self.port,
            token=self.token,
            allowed_origins=self.settings.allowed_origins,
        )
        if rejection is None:
            return None
        response = connection.respond(HTTPStatus(rejection.status), rejection.reason + "\n")
        if rejection.status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="syncd"'
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        session = Session(ws, self._services)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    def status(self) -> dict[str, Any]:
        """What ``daemon.status`` answers."""
        return {
            "version": self.version,
            "pid": os.getpid(),
            "url": self.url,
            "port": self.port,
            "started_at": self.started_at,
            "uptime_s": round(time.monotonic() - self._started_monotonic, 3),
            "device_id": self.store.device_id,
            "event_loop": running_loop_name(),
            "connections": len(self.sessions),
            **self.hub.snapshot(),
        }

    def describe(self) -> dict[str, Any]:
        """The OpenRPC document (built once: the table does not change while serving)."""
        if self._openrpc is None:
            self._openrpc = self.methods.openrpc(title="syncd local API", version=self.version)
        return self._openrpc
