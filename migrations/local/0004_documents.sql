-- Collaborative documents (issue 6): a pycrdt/Yjs document is its snapshot plus the updates
-- stored after it. Loading = snapshot, then every remaining update in seq order. Compaction folds
-- updates into the snapshot and deletes them in ONE transaction (a crash before the commit leaves
-- the updates; applying an update twice changes nothing, so the order of steps is safe).

-- One row per document. workspace_id NULL: a local-only document (never pushed).
-- snapshot: a Yjs v1 update holding every update with seq <= snapshot_seq (NULL: empty document).
CREATE TABLE documents (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT REFERENCES workspaces (id),
    name          TEXT NOT NULL DEFAULT '',
    snapshot      BLOB,
    snapshot_seq  INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deleted_at    TEXT,
    hlc           TEXT NOT NULL,
    field_hlc     TEXT NOT NULL DEFAULT '{}',
    origin        TEXT NOT NULL
);
CREATE INDEX documents_workspace ON documents (workspace_id, id);

-- One row per Yjs update (v1 encoding) not yet folded into its document's snapshot.
-- id: the update's UUIDv7 (what sync pushes and dedupes on); seq: local apply order.
CREATE TABLE doc_updates (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    doc_id       TEXT NOT NULL REFERENCES documents (id),
    workspace_id TEXT,
    data         BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    hlc          TEXT NOT NULL,
    origin       TEXT NOT NULL
);
CREATE INDEX doc_updates_doc ON doc_updates (doc_id, seq);
