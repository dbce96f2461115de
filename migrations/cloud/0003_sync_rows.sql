-- syncd cloud schema, part 3: clocks, field kinds, and the trigger that keeps every synced row
-- pullable (_txid/_seq) and mergeable (hlc/field_hlc) whoever writes it.

-- ---------------------------------------------------------------------------------------------
-- Hybrid logical clocks: '<wall ms, 13 digits>-<counter, 6 digits>-<device id>'. Compared as
-- bytes (COLLATE "C"), which orders them like the tuple (wall, counter, device).

-- Well-formed (as daemon/sync/merge.py is_clock): 13 digits, '-', 6 digits, '-', a device id;
-- at most 200 characters. (LIKE first: it is nearly free and rejects most malformed values;
-- translate, which checks the digits, costs more than everything else here.)
CREATE OR REPLACE FUNCTION public.sync_is_hlc(h text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT h LIKE '_____________-______-_%' AND length(h) <= 200
       AND translate(left(h, 21), '0123456789', '') = '--'
$$;

-- The clock of a write the cloud itself makes (a plain REST write by an app that knows nothing of
-- clocks): the current time, but always after `prev` (the row's clock), device id "cloud".
CREATE OR REPLACE FUNCTION public.sync_next_clock(prev text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
    wall bigint := now_ms;
    counter integer := 0;
BEGIN
    IF public.sync_is_hlc(prev) AND left(prev, 13)::bigint >= now_ms THEN
        wall := left(prev, 13)::bigint;
        counter := substr(prev, 15, 6)::integer + 1;
        IF counter > 999999 THEN
            wall := wall + 1;
            counter := 0;
        END IF;
    END IF;
    RETURN lpad(wall::text, 13, '0') || '-' || lpad(counter::text, 6, '0') || '-cloud';
END
$$;

-- ---------------------------------------------------------------------------------------------
-- How each column of a synced table merges: the rules R0-R8 of the daemon's pure merge
-- (daemon/sync/merge.py, module docstring). sync_push applies the SAME rules; keep them in step.
--   meta    bookkeeping, not a field: id, hlc, field_hlc, origin, _txid, _seq
--   lww     R1 (default): the greater clock wins; equal clocks = the same write, the stored value
--           stays (R0). deleted_at is lww (R6: an edit of another field never resurrects a row;
--           undelete is a newer write of deleted_at = null); so are next_steps (R4: a list is a
--           whole-value register), task_goal (R5 "manual": lww here, conflicts are the device's
--           business) and updated_at.
--   fww     R2: a non-null value beats null; among non-null values the SMALLER clock wins (the
--           first write); between two nulls the greater clock is kept.
--   map     R3: a JSON object whose top-level keys are separate lww registers, each with its
--           clock in field_hlc under '<column>.<key>'; field_hlc['<column>'] is the clock of the
--           last whole-map replacement (the base). A removed key is a null value (tombstone).
--   final   R8 (tasks.status): a final value (sync_is_final: succeeded, failed, cancelled)
--           beats any other whatever the clocks; between two final values or two others, lww.
--           A plain write cannot move a task out of a final status (the trigger refuses it), as
--           the daemon's local API cannot.
--   frozen  R7: messages are append-only: after the first write only deleted_at changes; a
--           later version with other values is ignored (first stored write is the truth).
--           doc_updates (0008) are append-only too, every column frozen.
-- The cloud also refuses (invalid) a change that would move a row to another workspace or a
-- workspace to another organisation: workspace_id / org_id are fww and never differ in practice,
-- and authorisation depends on them.

CREATE OR REPLACE FUNCTION public.sync_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['workspaces', 'conversations', 'messages', 'tasks']
$$;

-- Whether `v` is a value a 'final' column (R8) never leaves: daemon/types.py
-- FINAL_TASK_STATUSES. False for null. (One SQL expression: inlined where it is used.)
CREATE OR REPLACE FUNCTION public.sync_is_final(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(v IN ('succeeded', 'failed', 'cancelled'), false)
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
        WHEN tbl = 'tasks' AND col = 'status' THEN 'final'
        ELSE 'lww'
    END
$$;

-- The data columns of a synced table with their kinds (meta columns left out), in table order.
-- (dropped first: CREATE OR REPLACE cannot change the row type of an existing version)
DROP FUNCTION IF EXISTS public.sync_columns(text);
CREATE OR REPLACE FUNCTION public.sync_columns(tbl text)
RETURNS TABLE (col text, kind text, default_expr text)
LANGUAGE sql STABLE AS $$
    SELECT a.attname::text, public.sync_field_kind(tbl, a.attname::text),
           pg_get_expr(d.adbin, d.adrelid)
    FROM pg_attribute a
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = ('public.' || quote_ident(tbl))::regclass
      AND a.attnum > 0 AND NOT a.attisdropped
      AND public.sync_field_kind(tbl, a.attname::text) <> 'meta'
    ORDER BY a.attnum
$$;

-- A row's clocks in the one-register form: field_hlc '{}' with a row clock hlc means that every
-- field carries hlc (daemon/sync/merge.py, RowState.from_row). sync_push stores a new message
-- whose clocks are all one clock this way (0004, sync_write_sql: seven clocks fewer per row to
-- store and to serve), and rows bulk-loaded with their row clock only (COPY) have it too. Every
-- reader of stored clocks that compares them expands the form first, as the daemon does:
--   sync_register(row, clock)     the clocks of to_jsonb(row): every field (every column but
--                                 the bookkeeping ones) under `clock`
--   sync_stored_clocks_sql(alias) SQL text: the stored clocks of row `alias`, expanded with
--                                 sync_register (only a row in the form pays for to_jsonb);
--                                 the trigger below tests OLD the same way
CREATE OR REPLACE FUNCTION public.sync_register(row_json jsonb, clock text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, clock), '{}'::jsonb)
    FROM jsonb_object_keys(row_json) k
    WHERE k NOT IN ('id', 'hlc', 'field_hlc', 'origin', '_txid', '_seq')
$$;

DROP FUNCTION IF EXISTS public.sync_stored_clocks_sql(text, text);
CREATE OR REPLACE FUNCTION public.sync_stored_clocks_sql(alias text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        '(CASE WHEN %1$s.field_hlc = ''{}''::jsonb AND %1$s.hlc <> '''''
        ' THEN public.sync_register(to_jsonb(%1$s), %1$s.hlc) ELSE %1$s.field_hlc END)', alias)
$$;

-- ---------------------------------------------------------------------------------------------
-- The trigger. Always: stamp _txid/_seq (the pull cursor).
-- Inside sync_push (which sets the transaction-local GUC syncd.in_push = 'on') the clocks come
-- from the devices and are already merged, the row clock too (an INSERT there does not even
-- call the trigger: see below). Any other write is
-- a "plain write" by an app that knows nothing of clocks (REST, SQL editor): it gets one new
-- cloud clock for every column it changed (a changed JSON map is a whole-map replacement: its
-- base clock and each of its keys get the clock, R3), updated_at = now(), origin = 'cloud', so
-- the change syncs to devices like any other.

-- The field_hlc a plain write leaves (NULL when it changed no column). `maps`: the table's
-- JSON-map columns. plpgsql (plans cached per session): this runs once per written row.
DROP FUNCTION IF EXISTS public.sync_plain_field_hlc(text, jsonb, jsonb, jsonb, text);
CREATE OR REPLACE FUNCTION public.sync_plain_field_hlc(
    maps text[], new_row jsonb, old_row jsonb, old_clocks jsonb, clock text
) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    changed text[];
    changed_maps text[];
    result jsonb;
BEGIN
    SELECT array_agg(n.key) INTO changed
    FROM jsonb_each(new_row) n
    WHERE n.key NOT IN ('id', 'hlc', 'field_hlc', 'origin', '_txid', '_seq')
      AND (old_row IS NULL OR n.value IS DISTINCT FROM old_row -> n.key);
    IF changed IS NULL THEN
        RETURN NULL;
    END IF;
    result := coalesce(old_clocks, '{}'::jsonb);
    changed_maps := ARRAY(SELECT m FROM unnest(maps) m WHERE m = ANY (changed));
    IF cardinality(changed_maps) > 0 THEN
        -- a changed map is a whole-map replacement: its old key clocks go, each key gets the clock
        result := result - ARRAY(
            SELECT k FROM jsonb_object_keys(result) k
            WHERE strpos(k, '.') > 0 AND split_part(k, '.', 1) = ANY (changed_maps));
        result := result || coalesce((
            SELECT jsonb_object_agg(m || '.' || k, clock)
            FROM unnest(changed_maps) m
            CROSS JOIN LATERAL jsonb_object_keys(new_row -> m) k), '{}'::jsonb);
    END IF;
    RETURN result || (SELECT jsonb_object_agg(c, clock) FROM unnest(changed) c);
END
$$;

CREATE OR REPLACE FUNCTION public.sync_row_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    clocks jsonb;
    clock text;
    frozen_ok text[] := ARRAY['deleted_at', 'hlc', 'field_hlc', 'origin', '_txid', '_seq'];
BEGIN
    NEW._txid := pg_current_xact_id();
    NEW._seq := nextval('public.sync_seq');
    IF current_setting('syncd.in_push', true) = 'on' THEN
        RETURN NEW;  -- sync_push wrote the merged clocks and the row clock
    END IF;

    IF TG_OP = 'UPDATE' THEN
        NEW.created_at := OLD.created_at;
        -- a message's fields other than deleted_at never change, updated_at included (R7)
        NEW.updated_at := CASE WHEN TG_TABLE_NAME = 'messages' THEN OLD.updated_at ELSE now() END;
        old_row := to_jsonb(OLD) - 'updated_at';
        new_row := to_jsonb(NEW) - 'updated_at';  -- stamped below when anything else changed
    ELSE
        new_row := to_jsonb(NEW);
    END IF;
    IF TG_TABLE_NAME = 'messages' AND old_row IS NOT NULL
       AND (new_row - frozen_ok) IS DISTINCT FROM (old_row - frozen_ok) THEN
        RAISE EXCEPTION 'messages are append-only: only deleted_at may change'
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_TABLE_NAME = 'tasks' AND old_row IS NOT NULL
       AND public.sync_is_final(old_row ->> 'status')
       AND new_row ->> 'status' IS DISTINCT FROM old_row ->> 'status' THEN
        RAISE EXCEPTION 'the task is %, which is final: its status can no longer change',
            old_row ->> 'status' USING ERRCODE = 'check_violation';
    END IF;

    clock := public.sync_next_clock(CASE WHEN TG_OP = 'UPDATE' THEN OLD.hlc END);
    clocks := public.sync_plain_field_hlc(
        TG_ARGV::text[], new_row, old_row,
        CASE WHEN TG_OP <> 'UPDATE' THEN NULL
             WHEN OLD.field_hlc = '{}'::jsonb AND OLD.hlc <> ''  -- the one-register form
                 THEN public.sync_register(to_jsonb(OLD), OLD.hlc)
             ELSE OLD.field_hlc END,
        clock);
    IF clocks IS NULL THEN  -- nothing changed: clocks stay as they were
        NEW.field_hlc := OLD.field_hlc;
        NEW.hlc := OLD.hlc;
        NEW.origin := OLD.origin;
        NEW.updated_at := OLD.updated_at;
    ELSE
        IF TG_OP = 'UPDATE' AND TG_TABLE_NAME <> 'messages' THEN
            clocks := clocks || jsonb_build_object('updated_at', clock);
        END IF;
        NEW.field_hlc := clocks;
        NEW.hlc := clock;
        NEW.origin := 'cloud';
    END IF;
    RETURN NEW;
END
$$;

-- Two triggers on each synced table: every UPDATE goes through sync_row_stamp; an INSERT only
-- outside sync_push (WHEN: checked without calling the function, a fraction of its cost), since
-- inside it the column defaults already stamp _txid/_seq and sync_push wrote the clocks.
DO $$
DECLARE
    tbl text;
    args text;
BEGIN
    FOREACH tbl IN ARRAY public.sync_tables() LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS sync_row_stamp ON public.%I', tbl);
        EXECUTE format('DROP TRIGGER IF EXISTS sync_row_stamp_insert ON public.%I', tbl);
        -- the arguments: the table's JSON-map columns
        args := (SELECT string_agg(quote_literal(c.col), ', ') FROM public.sync_columns(tbl) c
                 WHERE c.kind = 'map');
        EXECUTE format(
            'CREATE TRIGGER sync_row_stamp BEFORE UPDATE ON public.%I'
            ' FOR EACH ROW EXECUTE FUNCTION public.sync_row_stamp(%s)', tbl, args);
        EXECUTE format(
            'CREATE TRIGGER sync_row_stamp_insert BEFORE INSERT ON public.%I FOR EACH ROW'
            ' WHEN (current_setting(''syncd.in_push'', true) IS DISTINCT FROM ''on'')'
            ' EXECUTE FUNCTION public.sync_row_stamp(%s)', tbl, args);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Supabase conventions: a profile for every new user; the creator of an organisation owns it.

CREATE OR REPLACE FUNCTION public.handle_new_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    INSERT INTO public.profiles (id, email, display_name)
    VALUES (
        NEW.id,
        NEW.email,
        coalesce(
            NEW.raw_user_meta_data ->> 'display_name',
            NEW.raw_user_meta_data ->> 'full_name',
            split_part(NEW.email, '@', 1)
        )
    )
    ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS on_auth_user_created ON auth.users;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
    FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();

CREATE OR REPLACE FUNCTION public.handle_new_organization() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    IF NEW.created_by IS NOT NULL AND EXISTS (SELECT 1 FROM auth.users u WHERE u.id = NEW.created_by) THEN
        INSERT INTO public.org_memberships (org_id, user_id, role)
        VALUES (NEW.id, NEW.created_by, 'owner')
        ON CONFLICT (org_id, user_id) DO NOTHING;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS on_organization_created ON public.organizations;
CREATE TRIGGER on_organization_created AFTER INSERT ON public.organizations
    FOR EACH ROW EXECUTE FUNCTION public.handle_new_organization();

REVOKE EXECUTE ON FUNCTION public.handle_new_user(), public.handle_new_organization()
    FROM PUBLIC, anon, authenticated;
