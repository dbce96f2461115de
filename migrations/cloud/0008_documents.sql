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
-- This file extends parts 3-7 with CREATE OR REPLACE (sync_tables, sync_field_kind,
-- sync_row_owners, sync_push_table, sync_pull) and generates sync_push_documents /
-- sync_push_doc_updates as 0005 does for the other tables. Parts 3 and 5 re-create their
-- four-table versions when applied again; applying every file in name order (as always) puts
-- this file's versions back.

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
-- The synced tables (parents first: a batch may create a document and then its updates) and
-- how their columns merge (0003). doc_updates are frozen: the first stored write is the truth.

CREATE OR REPLACE FUNCTION public.sync_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['workspaces', 'conversations', 'messages', 'tasks', 'documents', 'doc_updates']
$$;

CREATE OR REPLACE FUNCTION public.sync_field_kind(tbl text, col text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN col IN ('id', 'hlc', 'field_hlc', 'origin', '_txid', '_seq') THEN 'meta'
        WHEN tbl = 'messages' THEN CASE WHEN col = 'deleted_at' THEN 'lww' ELSE 'frozen' END
        WHEN tbl = 'doc_updates' THEN 'frozen'
        WHEN col IN ('created_at', 'created_by', 'started_by', 'workspace_id') THEN 'fww'
        WHEN tbl = 'workspaces' AND col = 'org_id' THEN 'fww'
        WHEN tbl = 'tasks' AND col = 'kind' THEN 'fww'
        WHEN tbl = 'workspaces' AND col IN ('shared_memory', 'progress_data') THEN 'map'
        WHEN tbl = 'tasks' AND col = 'progress' THEN 'map'
        ELSE 'lww'
    END
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
-- sync_push (0005): where rows live, and the generated fast path of the two tables.

CREATE OR REPLACE FUNCTION public.sync_row_owners(tbl text, ids uuid[])
RETURNS TABLE (id uuid, visible boolean, workspace_id uuid, org_id uuid, field_hlc jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    bypass boolean := public.sync_caller_bypasses_rls();
    orgs uuid[] := ARRAY(SELECT public.member_org_ids());
BEGIN
    RETURN QUERY
        WITH r AS (
            SELECT t.id, t.id AS ws, t.field_hlc FROM public.workspaces t
            WHERE tbl = 'workspaces' AND t.id = ANY (ids)
            UNION ALL
            SELECT t.id, t.workspace_id, t.field_hlc FROM public.conversations t
            WHERE tbl = 'conversations' AND t.id = ANY (ids)
            UNION ALL
            SELECT t.id, t.workspace_id, t.field_hlc FROM public.messages t
            WHERE tbl = 'messages' AND t.id = ANY (ids)
            UNION ALL
            SELECT t.id, t.workspace_id, t.field_hlc FROM public.tasks t
            WHERE tbl = 'tasks' AND t.id = ANY (ids)
            UNION ALL
            SELECT t.id, t.workspace_id, t.field_hlc FROM public.documents t
            WHERE tbl = 'documents' AND t.id = ANY (ids)
            UNION ALL
            SELECT t.id, t.workspace_id, t.field_hlc FROM public.doc_updates t
            WHERE tbl = 'doc_updates' AND t.id = ANY (ids)
        )
        SELECT r.id, v.ok, CASE WHEN v.ok THEN r.ws END, CASE WHEN v.ok THEN w.org_id END,
               CASE WHEN v.ok THEN r.field_hlc END
        FROM r
        JOIN public.workspaces w ON w.id = r.ws
        CROSS JOIN LATERAL (SELECT bypass OR w.org_id = ANY (orgs) AS ok) v;
END
$$;

-- The same generator as 0005's, for the two tables of this file.
DO $generate$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['documents', 'doc_updates'] LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS public.%I(jsonb)', 'sync_push_' || tbl);
        EXECUTE format($f$
CREATE FUNCTION public.%1$I(changes jsonb, OUT positions integer[], OUT answers jsonb)
LANGUAGE plpgsql AS $body$
BEGIN
    PERFORM set_config('syncd.in_push', 'on', true);
    WITH v AS MATERIALIZED (
        SELECT * FROM public.sync_push_classify(%2$L, changes, %4$L::text[], %5$L::text[])),
    %3$s
    SELECT coalesce(array_agg(v.idx ORDER BY v.idx), '{}'),
           coalesce(jsonb_agg(public.sync_push_result(
               %2$L, v.id_text, v.reason, v.detail, v.known, v.equal, w.id IS NOT NULL)
               ORDER BY v.idx), '[]'::jsonb)
    INTO positions, answers
    FROM v LEFT JOIN written w ON w.id = v.id;
END
$body$;
REVOKE EXECUTE ON FUNCTION public.%1$I(jsonb) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.%1$I(jsonb) TO authenticated, service_role;
$f$,
            'sync_push_' || tbl, tbl,
            public.sync_write_sql(tbl,
                'SELECT v.id, v.ws, v.known, v.fields, v.clocks, v.origin, v.hlc FROM v'
                ' WHERE v.reason = '''' ORDER BY v.idx'),
            (SELECT array_agg(c.col) FROM public.sync_columns(tbl) c),
            (SELECT coalesce(array_agg(c.col), '{}') FROM public.sync_columns(tbl) c
             WHERE c.kind = 'map')
        );
    END LOOP;
END
$generate$;

CREATE OR REPLACE FUNCTION public.sync_push_table(
    tbl text, changes jsonb, OUT positions integer[], OUT answers jsonb
)
LANGUAGE plpgsql AS $$
BEGIN
    CASE tbl
        WHEN 'workspaces' THEN
            SELECT * INTO positions, answers FROM public.sync_push_workspaces(changes);
        WHEN 'conversations' THEN
            SELECT * INTO positions, answers FROM public.sync_push_conversations(changes);
        WHEN 'messages' THEN
            SELECT * INTO positions, answers FROM public.sync_push_messages(changes);
        WHEN 'tasks' THEN
            SELECT * INTO positions, answers FROM public.sync_push_tasks(changes);
        WHEN 'documents' THEN
            SELECT * INTO positions, answers FROM public.sync_push_documents(changes);
        WHEN 'doc_updates' THEN
            SELECT * INTO positions, answers FROM public.sync_push_doc_updates(changes);
    END CASE;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- sync_pull (0006) with the two tables: the same gap-free (_txid, _seq) order across all of them.

CREATE OR REPLACE FUNCTION public.sync_pull(
    cursor text DEFAULT NULL, "limit" integer DEFAULT 1000, workspace_id uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $$
DECLARE
    after_txid xid8 := '0'::xid8;
    after_seq bigint := 0;
    horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    lim integer := least(coalesce("limit", 1000), 10000);
    ws uuid := workspace_id;
    page jsonb;
    n integer;
    last jsonb;
BEGIN
    IF lim < 1 THEN
        RAISE EXCEPTION 'sync_pull: limit must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(cursor, '') <> '' THEN
        IF cursor !~ '^[0-9]{1,20}:[0-9]{1,19}$' THEN
            RAISE EXCEPTION 'sync_pull: bad cursor %', cursor USING ERRCODE = 'invalid_parameter_value';
        END IF;
        after_txid := split_part(cursor, ':', 1)::xid8;
        after_seq := split_part(cursor, ':', 2)::bigint;
    END IF;

    IF ws IS NULL THEN
        WITH parts AS (
            (SELECT 'workspaces' AS tbl, t.id, t.id AS ws, t._txid, t._seq, to_jsonb(t) AS r
             FROM public.workspaces t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'conversations', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.conversations t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'messages', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.messages t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'tasks', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.tasks t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'documents', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.documents t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'doc_updates', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.doc_updates t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
             ORDER BY t._txid, t._seq LIMIT lim + 1)
        )
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'table', o.tbl, 'id', o.id, 'workspace_id', o.ws, 'row', o.r)
                   ORDER BY o._txid, o._seq), '[]'::jsonb)
        INTO page
        FROM (SELECT * FROM parts p ORDER BY p._txid, p._seq LIMIT lim + 1) o;
    ELSE
        WITH parts AS (
            (SELECT 'workspaces' AS tbl, t.id, t.id AS ws, t._txid, t._seq, to_jsonb(t) AS r
             FROM public.workspaces t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
               AND t.id = ws
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'conversations', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.conversations t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
               AND t.workspace_id = ws
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'messages', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.messages t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
               AND t.workspace_id = ws
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'tasks', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.tasks t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
               AND t.workspace_id = ws
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'documents', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.documents t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
               AND t.workspace_id = ws
             ORDER BY t._txid, t._seq LIMIT lim + 1)
            UNION ALL
            (SELECT 'doc_updates', t.id, t.workspace_id, t._txid, t._seq, to_jsonb(t)
             FROM public.doc_updates t
             WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon
               AND t.workspace_id = ws
             ORDER BY t._txid, t._seq LIMIT lim + 1)
        )
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'table', o.tbl, 'id', o.id, 'workspace_id', o.ws, 'row', o.r)
                   ORDER BY o._txid, o._seq), '[]'::jsonb)
        INTO page
        FROM (SELECT * FROM parts p ORDER BY p._txid, p._seq LIMIT lim + 1) o;
    END IF;

    n := jsonb_array_length(page);
    IF n > lim THEN
        page := page - lim;  -- the extra row only said there is more
    END IF;
    last := page -> -1 -> 'row';

    RETURN jsonb_build_object(
        'changes', page,
        'cursor', CASE WHEN last IS NULL THEN nullif(cursor, '')
                       ELSE (last ->> '_txid') || ':' || (last ->> '_seq') END,
        'has_more', n > lim);
END
$$;

REVOKE EXECUTE ON FUNCTION public.sync_pull(text, integer, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.sync_pull(text, integer, uuid) TO authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Realtime (0007): both tables in the publication, so devices get postgres_changes hints.

DO $$
DECLARE
    tbl text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        CREATE PUBLICATION supabase_realtime;
    END IF;
    IF (SELECT puballtables FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        RETURN;
    END IF;
    FOREACH tbl IN ARRAY ARRAY['documents', 'doc_updates'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_publication_tables
            WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = tbl
        ) THEN
            EXECUTE format('ALTER PUBLICATION supabase_realtime ADD TABLE public.%I', tbl);
        END IF;
    END LOOP;
END
$$;
