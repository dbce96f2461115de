-- The local store: synced entities, sync bookkeeping, meta.
-- Ids are UUIDv7 strings; timestamps ISO-8601 UTC strings; JSON columns hold JSON text (NULL = null);
-- hlc = clock of the last change (see daemon/hlc.py), field_hlc = JSON map field -> clock.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE workspaces (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    path          TEXT,
    description   TEXT,
    status        TEXT NOT NULL DEFAULT 'active',
    task_goal     TEXT,
    current_step  TEXT,
    progress_data TEXT,
    next_steps    TEXT,
    shared_memory TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deleted_at    TEXT,
    hlc           TEXT NOT NULL,
    field_hlc     TEXT NOT NULL DEFAULT '{}',
    origin        TEXT NOT NULL
);

CREATE TABLE conversations (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    name          TEXT NOT NULL,
    type          TEXT NOT NULL DEFAULT 'chat',
    is_archived   INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deleted_at    TEXT,
    hlc           TEXT NOT NULL,
    field_hlc     TEXT NOT NULL DEFAULT '{}',
    origin        TEXT NOT NULL
);
CREATE INDEX conversations_workspace ON conversations (workspace_id, id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY NOT NULL,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    content         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deleted_at      TEXT,
    hlc             TEXT NOT NULL,
    origin          TEXT NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY NOT NULL,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    kind             TEXT NOT NULL,
    payload          TEXT,
    status           TEXT NOT NULL DEFAULT 'queued',
    priority         INTEGER NOT NULL DEFAULT 0,
    progress         TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    deleted_at       TEXT,
    hlc              TEXT NOT NULL,
    field_hlc        TEXT NOT NULL DEFAULT '{}',
    origin           TEXT NOT NULL
);
CREATE INDEX tasks_workspace ON tasks (workspace_id, id);

-- One entry per local change, written in the same transaction as the change; drained by push.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    table_name   TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    workspace_id TEXT,
    op           TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    fields       TEXT NOT NULL,
    field_hlc    TEXT NOT NULL,
    hlc          TEXT NOT NULL,
    origin       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_row ON outbox (table_name, row_id);

-- One entry per visible change: the source of UI events and of replay (seq never reused).
CREATE TABLE changelog (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    workspace_id TEXT,
    data         TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE TABLE sync_state (
    scope        TEXT PRIMARY KEY NOT NULL,
    cursor       TEXT,
    last_pull_at TEXT,
    last_push_at TEXT,
    updated_at   TEXT NOT NULL
);

CREATE TABLE conflicts (
    id           TEXT PRIMARY KEY NOT NULL,
    table_name   TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    workspace_id TEXT,
    field        TEXT NOT NULL,
    local_value  TEXT,
    remote_value TEXT,
    local_hlc    TEXT NOT NULL,
    remote_hlc   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    resolved_at  TEXT
);

CREATE TABLE rejected (
    id           TEXT PRIMARY KEY NOT NULL,
    table_name   TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    workspace_id TEXT,
    change       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT,
    created_at   TEXT NOT NULL
);
