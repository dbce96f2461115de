"""The daemon's channels (pure): one per linked workspace, ``realtime:workspace:<id>``.

Its join payload asks for the postgres_changes of our synced tables, filtered to the workspace
(the server also applies row-level security with the channel's token), presence keyed by the
device id, and broadcast without ``self`` or ``ack`` (our own broadcasts are not echoed back, and
no reply is awaited: broadcasts are fire-and-forget hints such as cursors).

The channel is private: the server admits only the members of the workspace's organisation
(Realtime Authorization, the policies on ``realtime.messages`` in migrations/cloud/0009), so
nobody else receives its broadcasts and presence or can send into it. A refused join
(``Unauthorized: …``) is retried with the client's growing rejoin delays, never in a hot loop.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, Final

from daemon.errors import InvalidInput
from daemon.types import WorkspaceId

__all__ = [
    "SYNCED_TABLES",
    "WORKSPACE_TOPIC_PREFIX",
    "workspace_id_of",
    "workspace_join_payload",
    "workspace_topic",
]

WORKSPACE_TOPIC_PREFIX: Final = "realtime:workspace:"
#: Synced tables and the column that ties a row to its workspace.
SYNCED_TABLES: Final = (
    ("workspaces", "id"),
    ("conversations", "workspace_id"),
    ("messages", "workspace_id"),
    ("tasks", "workspace_id"),
    ("documents", "workspace_id"),
    ("doc_updates", "workspace_id"),
)


def check_workspace_id(workspace_id: str) -> WorkspaceId:
    """The canonical form of a cloud workspace id (a UUID); raises InvalidInput otherwise.

    The id goes into a filter string (``workspace_id=eq.<id>``): anything but a UUID could
    change the filter's meaning.
    """
    try:
        return WorkspaceId(str(uuid.UUID(str(workspace_id))))
    except ValueError:
        raise InvalidInput("workspace_id", "must be a UUID") from None


def workspace_topic(workspace_id: str) -> str:
    return WORKSPACE_TOPIC_PREFIX + check_workspace_id(workspace_id)


@functools.lru_cache(maxsize=1024)
def workspace_id_of(topic: str) -> WorkspaceId | None:
    """The workspace of a channel topic, or None for topics that are not workspace channels.

    Memoised: every postgres_changes frame asks, and parsing the UUID per row costs more."""
    if not topic.startswith(WORKSPACE_TOPIC_PREFIX):
        return None
    try:
        return check_workspace_id(topic[len(WORKSPACE_TOPIC_PREFIX) :])
    except InvalidInput:
        return None


def workspace_join_payload(workspace_id: str, device_id: str) -> dict[str, Any]:
    """The ``phx_join`` payload of a workspace channel (``access_token`` is added by the client)."""
    ws = check_workspace_id(workspace_id)
    if not isinstance(device_id, str) or not device_id.strip():
        raise InvalidInput("device_id", "must be a non-empty string")
    changes = [
        {"event": "*", "schema": "public", "table": table, "filter": f"{column}=eq.{ws}"}
        for table, column in SYNCED_TABLES
    ]
    return {
        "config": {
            "broadcast": {"self": False, "ack": False},
            "presence": {"key": device_id, "enabled": True},
            "private": True,
            "postgres_changes": changes,
        }
    }
