"""Small shared types: id aliases, clock strings and the value sets the store accepts."""

from __future__ import annotations

from typing import Final, NewType

WorkspaceId = NewType("WorkspaceId", str)
RowId = NewType("RowId", str)
TaskId = NewType("TaskId", str)
ClientId = NewType("ClientId", str)
Cursor = NewType("Cursor", str)
#: A hybrid logical clock encoded as ``f"{wall_ms:013d}-{counter:06d}-{device_id}"``.
Hlc = NewType("Hlc", str)

MESSAGE_ROLES: Final = frozenset({"user", "assistant", "system", "tool"})
#: Roles whose messages never leave the device (invariant I6): they get no outbox entry.
LOCAL_ONLY_ROLES: Final = frozenset({"system", "tool"})
TASK_STATUSES: Final = frozenset(
    {"queued", "running", "paused", "succeeded", "failed", "cancelled"}
)
#: The statuses a task's status never leaves: the local API refuses to (daemon/store/tasks.py)
#: and the merge keeps them over any other (daemon/sync/merge.py R8; the cloud's
#: sync_is_final, migrations/cloud/0003).
FINAL_TASK_STATUSES: Final = frozenset({"succeeded", "failed", "cancelled"})
