-- Cloud sync (issue 5): which workspaces are linked, rows waiting for their parent, indexes.

-- One row per workspace linked to the cloud; only these workspaces push and pull.
CREATE TABLE cloud_links (
    workspace_id TEXT PRIMARY KEY NOT NULL,
    org_id       TEXT NOT NULL,
    path         TEXT,
    linked_at    TEXT NOT NULL
);

-- Pulled rows whose parent (workspace or conversation) is not here yet: a pull serves each row
-- at its LATEST write, so a child can arrive pages before a parent that was updated after it.
-- The row (local-shaped JSON, field_hlc included) is applied as soon as the parent arrives.
CREATE TABLE sync_parked (
    table_name   TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    workspace_id TEXT,
    parent_id    TEXT NOT NULL,
    row          TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (table_name, row_id)
);
CREATE INDEX sync_parked_parent ON sync_parked (parent_id);
CREATE INDEX sync_parked_workspace ON sync_parked (workspace_id);

-- take_outbox reads a linked workspace's entries oldest first; unlink drops them.
CREATE INDEX outbox_workspace ON outbox (workspace_id, id);
-- Open conflicts are listed and counted often; resolved ones pile up.
CREATE INDEX conflicts_open ON conflicts (resolved_at, created_at);
