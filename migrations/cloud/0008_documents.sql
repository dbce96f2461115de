-- syncd cloud schema, part 8: collaborative documents (pycrdt/Yjs).
--
-- Two synced tables:
--   documents    a document's metadata (name, tombstone), merged per field like every mutable
--                row: workspace_id, created_by, created_at first-writer-wins, the rest LWW. Its
--                content is NOT here: it is the sum of its doc_updates (a CRDT: applying the
--                same updates in any order, any number of times, gives the same document).
--   doc_updates  one Yjs update (v1 encoding) per row, append-only: a row is never changed (the
--                trigger refuses any UPDATE); pushing the same id again is an idempotent
--                success, like a message. No DELETE policy: an update is never removed.
-- `data` is the update as base64 TEXT, not bytea: it travels inside JSON everywhere (sync_push's
-- changes, sync_pull's pages, realtime records, the daemon's outbox), and base64 is how JSON
-- carries bytes (PostgreSQL renders bytea in JSON as '\x' hex, twice the size, and
-- jsonb_populate_record would read a base64 string as an escaped bytea literal). The CHECK keeps
-- anything but base64 out.
--
-- This file adds both tables to sync_tables (0003; their merge rules are in sync_field_kind
-- there) and calls the generators of parts 5-7 again (sync_define_push, sync_define_pull,
-- sync_define_publication), which build sync_push's, sync_pull's and the publication's
-- per-table parts from sync_tables(). Part 3 puts back its four-table sync_tables when applied
-- again, and parts 5-7 generate for those; applying every file in name order (as always)
-- puts this file's versions back.

CREATE TABLE IF NOT EXISTS public.documents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    created_by uuid DEFAULT auth.uid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    hlc text COLLATE "C" NOT NULL DEFAULT '',
    field_hlc jsonb NOT NULL DEFAULT '{}'::jsonb,
    origin text,
    _txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    _seq bigint NOT NULL DEFAULT nextval('public.sync_seq'),
    CONSTRAINT documents_id_workspace_id_key UNIQUE (id, workspace_id)
);
CREATE INDEX IF NOT EXISTS documents_sync_idx ON public.documents (_txid, _seq);
CREATE INDEX IF NOT EXISTS documents_ws_sync_idx ON public.documents (workspace_id, _txid, _seq);

CREATE TABLE IF NOT EXISTS public.doc_updates (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL,
    doc_id uuid NOT NULL,
    data text NOT NULL CHECK (length(data) > 0 AND data ~ '^[A-Za-z0-9+/]+={0,2}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    hlc text COLLATE "C" NOT NULL DEFAULT '',
    field_hlc jsonb NOT NULL DEFAULT '{}'::jsonb,
    origin text,
    _txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    _seq bigint NOT NULL DEFAULT nextval('public.sync_seq'),
    -- an update lives in its document's workspace (one key check per insert)
    CONSTRAINT doc_updates_document_fkey FOREIGN KEY (doc_id, workspace_id)
        REFERENCES public.documents (id, workspace_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS doc_updates_doc_idx ON public.doc_updates (doc_id, _txid, _seq);
CREATE INDEX IF NOT EXISTS doc_updates_sync_idx ON public.doc_updates (_txid, _seq);
CREATE INDEX IF NOT EXISTS doc_updates_ws_sync_idx
    ON public.doc_updates (workspace_id, _txid, _seq);

GRANT SELECT, INSERT, UPDATE, DELETE ON public.documents, public.doc_updates
    TO anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Row-level security: the members of the workspace's organisation read and insert; documents'
-- metadata is updated by them too; doc_updates are never updated (no policy, and the trigger
-- below refuses it even to roles that bypass RLS); neither is ever deleted (no DELETE policy).

ALTER TABLE public.documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.doc_updates ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS documents_select ON public.documents;
CREATE POLICY documents_select ON public.documents FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS documents_insert ON public.documents;
CREATE POLICY documents_insert ON public.documents FOR INSERT TO authenticated
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS documents_update ON public.documents;
CREATE POLICY documents_update ON public.documents FOR UPDATE TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()))
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));

DROP POLICY IF EXISTS doc_updates_select ON public.doc_updates;
CREATE POLICY doc_updates_select ON public.doc_updates FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS doc_updates_insert ON public.doc_updates;
CREATE POLICY doc_updates_insert ON public.doc_updates FOR INSERT TO authenticated
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));

-- ---------------------------------------------------------------------------------------------
-- The synced tables (parents first: a batch may create a document and then its updates). How
-- their columns merge is in 0003's sync_field_kind (doc_updates are frozen: the first stored
-- write is the truth).

CREATE OR REPLACE FUNCTION public.sync_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['workspaces', 'conversations', 'messages', 'tasks', 'documents', 'doc_updates']
$$;

-- doc_updates are append-only, whoever writes (plain REST, the SQL editor, service_role).
CREATE OR REPLACE FUNCTION public.sync_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME USING ERRCODE = 'check_violation';
END
$$;

-- The clock triggers (as 0003 installs them on the other tables; neither table has map columns).
DROP TRIGGER IF EXISTS sync_row_stamp ON public.documents;
DROP TRIGGER IF EXISTS sync_row_stamp_insert ON public.documents;
CREATE TRIGGER sync_row_stamp BEFORE UPDATE ON public.documents
    FOR EACH ROW EXECUTE FUNCTION public.sync_row_stamp();
CREATE TRIGGER sync_row_stamp_insert BEFORE INSERT ON public.documents FOR EACH ROW
    WHEN (current_setting('syncd.in_push', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION public.sync_row_stamp();

DROP TRIGGER IF EXISTS sync_row_stamp ON public.doc_updates;
DROP TRIGGER IF EXISTS sync_row_stamp_insert ON public.doc_updates;
CREATE TRIGGER sync_row_stamp BEFORE UPDATE ON public.doc_updates
    FOR EACH ROW EXECUTE FUNCTION public.sync_refuse_update();
CREATE TRIGGER sync_row_stamp_insert BEFORE INSERT ON public.doc_updates FOR EACH ROW
    WHEN (current_setting('syncd.in_push', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION public.sync_row_stamp();

-- ---------------------------------------------------------------------------------------------
-- sync_push (0005: sync_row_owners, sync_push_<table>, sync_push_table), sync_pull (0006) and the
-- realtime publication (0007) for all of sync_tables(), these two included.

SELECT public.sync_define_push();
SELECT public.sync_define_pull();
SELECT public.sync_define_publication();
