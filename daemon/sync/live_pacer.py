"""Pacing of document broadcasts (pure: no I/O, time passed in as ``now``).

Supabase Realtime counts every broadcast a project's clients send and every delivery of one
(``max_events_per_second``, 100 by default, averaged over a minute) and, while the project is
above it, shuts every channel that is delivered a message ("Too many messages per second"; the
daemon rejoins 30 s later). An editor sends an update per keystroke: one broadcast each would
pass the limit with a single fast typist and two devices.

``DocPacer`` sends at most one broadcast per document every ``interval_s``: the first update of
a burst goes out at once (leading edge); those that come within the interval wait, and go out
together when it ends (``payloads_due``), as one payload (live_map.doc_batch; several when they
are larger than one broadcast may be). An update waits at most ``interval_s``.

``SendWindow`` bounds what UIs send themselves (``broadcast.send``): at most ``SENDS_PER_S`` in
any second from one daemon, realtime-js's own default (``eventsPerSecond``) for one client. A
send over it is refused (rate limited, with when one may go), not queued: a cursor is stale by
then, and a UI that streams must pace itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from daemon.sync.live_map import MAX_DOC_BROADCAST, doc_batch

__all__ = ["INTERVAL_S", "SENDS_PER_S", "DocPacer", "SendWindow"]

#: One broadcast per document every 100 ms: ≤ 10 a second, realtime-js's default
#: ``eventsPerSecond`` for a whole client.
INTERVAL_S: Final = 0.1
#: ``broadcast.send`` calls one daemon may make in any second (all workspaces together).
SENDS_PER_S: Final = 10
#: (workspace id, payload) to broadcast on that workspace's channel.
Outgoing = tuple[str, dict[str, Any]]


@dataclass
class _Doc:
    sent_at: float
    waiting: list[dict[str, Any]] = field(default_factory=list)


class DocPacer:
    """Per document (and workspace): a leading-edge send, then a batch per interval."""

    def __init__(self, interval_s: float = INTERVAL_S, max_chars: int = MAX_DOC_BROADCAST) -> None:
        self.interval_s = interval_s
        self.max_chars = max_chars
        self._docs: dict[tuple[str, str], _Doc] = {}

    def receive_update(
        self, workspace_id: str, payload: Mapping[str, Any], now: float
    ) -> list[Outgoing]:
        """A local update's broadcast payload (live_map.doc_broadcast): what to send now,
        either it or nothing (it waits for ``payloads_due``)."""
        key = (workspace_id, str(payload["id"]))
        doc = self._docs.get(key)
        if doc is None or (not doc.waiting and now >= doc.sent_at + self.interval_s):
            self._docs[key] = _Doc(now)
            return [(workspace_id, dict(payload))]
        doc.waiting.append(dict(payload))
        return []

    def next_due(self) -> float | None:
        """When ``payloads_due`` has something to do (send, or forget an idle document)."""
        return min((doc.sent_at + self.interval_s for doc in self._docs.values()), default=None)

    def payloads_due(self, now: float) -> list[Outgoing]:
        """The batches whose interval ended by ``now``, in the order their updates came."""
        out: list[Outgoing] = []
        for key, doc in list(self._docs.items()):
            if now < doc.sent_at + self.interval_s:
                continue
            if not doc.waiting:
                del self._docs[key]  # idle: its next update goes out at once
                continue
            out.extend((key[0], batch) for batch in self._batches(doc.waiting))
            self._docs[key] = _Doc(now)
        return out

    def _batches(self, waiting: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``waiting`` as payloads whose updates add up to at most ``max_chars`` each."""
        batches: list[list[dict[str, Any]]] = [[]]
        size = 0
        for payload in waiting:
            chars = len(payload["update"])
            if batches[-1] and size + chars > self.max_chars:
                batches.append([])
                size = 0
            batches[-1].append(payload)
            size += chars
        return [doc_batch(batch) for batch in batches]


class SendWindow:
    """At most ``limit`` sends in any ``window_s`` seconds (a sliding window)."""

    def __init__(self, limit: int = SENDS_PER_S, window_s: float = 1.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._sent: deque[float] = deque()

    def take(self, now: float) -> float:
        """0.0 when a send may go at ``now`` (it is counted); else the seconds until one may
        (nothing is counted)."""
        sent = self._sent
        while sent and sent[0] <= now - self.window_s:
            sent.popleft()
        if len(sent) < self.limit:
            sent.append(now)
            return 0.0
        return sent[0] + self.window_s - now
