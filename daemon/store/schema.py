"""SQLAlchemy Core definitions of the local tables (statement building only).

The DDL lives in ``migrations/local``; these definitions must match it column for column
(tests/component/store/test_migrations.py checks). JSON columns are stored as text that this
package encodes and decodes itself (see codec.py), so they are declared as ``Text`` here.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

metadata = sa.MetaData()

#: The synced entity tables, parents before children.
ENTITY_TABLES: Final = ("workspaces", "conversations", "messages", "tasks")


def _clocked() -> list[sa.Column[object]]:
    """Columns every synced row carries."""
    return [
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("deleted_at", sa.Text),
        sa.Column("hlc", sa.Text, nullable=False),
    ]


meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("path", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("task_goal", sa.Text),
    sa.Column("current_step", sa.Text),
    sa.Column("progress_data", sa.Text),
    sa.Column("next_steps", sa.Text),
    sa.Column("shared_memory", sa.Text),
    *_clocked(),
    sa.Column("field_hlc", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("is_archived", sa.Integer, nullable=False),
    *_clocked(),
    sa.Column("field_hlc", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    *_clocked(),
    sa.Column("origin", sa.Text, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("progress", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", sa.Text),
    *_clocked(),
    sa.Column("field_hlc", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("row_id", sa.Text, nullable=False),
    sa.Column("workspace_id", sa.Text),
    sa.Column("op", sa.Text, nullable=False),
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("field_hlc", sa.Text, nullable=False),
    sa.Column("hlc", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
)

changelog = sa.Table(
    "changelog",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("row_id", sa.Text, nullable=False),
    sa.Column("workspace_id", sa.Text),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("cursor", sa.Text),
    sa.Column("last_pull_at", sa.Text),
    sa.Column("last_push_at", sa.Text),
    sa.Column("updated_at", sa.Text, nullable=False),
)

conflicts = sa.Table(
    "conflicts",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("row_id", sa.Text, nullable=False),
    sa.Column("workspace_id", sa.Text),
    sa.Column("field", sa.Text, nullable=False),
    sa.Column("local_value", sa.Text),
    sa.Column("remote_value", sa.Text),
    sa.Column("local_hlc", sa.Text, nullable=False),
    sa.Column("remote_hlc", sa.Text, nullable=False),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("resolved_at", sa.Text),
)

rejected = sa.Table(
    "rejected",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("row_id", sa.Text, nullable=False),
    sa.Column("workspace_id", sa.Text),
    sa.Column("change", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
    #: when a ``clock_skew`` refusal's row is sent again (0010; null: never)
    sa.Column("retry_at", sa.Text),
)

#: Columns holding JSON text, per table (decoded on read, encoded on write).
JSON_COLUMNS: Final[dict[str, frozenset[str]]] = {
    "workspaces": frozenset({"progress_data", "next_steps", "shared_memory", "field_hlc"}),
    "conversations": frozenset({"field_hlc"}),
    "messages": frozenset(),
    "tasks": frozenset({"payload", "progress", "field_hlc"}),
}
#: JSON maps that merge key by key (rule R3 of daemon/sync/merge.py, whose RULES name the same
#: columns ``merge``): a local edit writes only the keys it changes, each under its own clock.
MAP_COLUMNS: Final[dict[str, frozenset[str]]] = {
    "workspaces": frozenset({"progress_data", "shared_memory"}),
    "tasks": frozenset({"progress"}),
}
#: Integer columns exposed as booleans.
BOOL_COLUMNS: Final[dict[str, frozenset[str]]] = {
    "workspaces": frozenset(),
    "conversations": frozenset({"is_archived"}),
    "messages": frozenset(),
    "tasks": frozenset(),
}
#: Bookkeeping columns that are not fields of the synced row (no per-field clock).
CLOCK_COLUMNS: Final = frozenset({"hlc", "field_hlc", "origin"})
