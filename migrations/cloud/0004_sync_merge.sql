-- syncd cloud schema, part 4: the merge, as SQL. sync_push (0005) writes every batch with one
-- statement per table built here from the table's columns and their kinds (0003): a CASE per
-- column compares clocks by the rules R0-R8 of daemon/sync/merge.py, so a field takes the
-- incoming value only where the incoming clock wins.

-- A uuid, or NULL for anything that is not one (never raises). A one-expression SQL function,
-- so PostgreSQL inlines it into the statements that call it (sync_push calls it several times
-- per change). pg_input_is_valid (PostgreSQL 16+) is ten times faster than the regular
-- expression older servers fall back to.
DO $$
BEGIN
    IF current_setting('server_version_num')::integer >= 160000 THEN
        CREATE OR REPLACE FUNCTION public.sync_uuid(txt text) RETURNS uuid
        LANGUAGE sql STABLE PARALLEL SAFE AS $f$
            SELECT CASE WHEN pg_input_is_valid(txt, 'uuid') THEN txt::uuid END
        $f$;
    ELSE
        CREATE OR REPLACE FUNCTION public.sync_uuid(txt text) RETURNS uuid
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
            SELECT CASE WHEN txt ~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$'
                        THEN txt::uuid END
        $f$;
    END IF;
END
$$;

-- The caller's role may bypass row-level security (service_role, a superuser). Reads the role
-- PostgREST switched to, so it answers the same inside SECURITY DEFINER functions. Its own
-- search_path: it is called both from SECURITY DEFINER functions (search_path '') and from
-- sync_push (the caller's), and a cached plan made under another search_path is planned anew.
CREATE OR REPLACE FUNCTION public.sync_caller_bypasses_rls() RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = '' AS $$
BEGIN
    RETURN coalesce(
        (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
         WHERE r.rolname = nullif(current_setting('role', true), 'none')),
        (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
         WHERE r.rolname = session_user),
        false);
END
$$;

-- field_hlc without the clocks of map column `col` ('col' and 'col.<key>').
CREATE OR REPLACE FUNCTION public.sync_clocks_without(clocks jsonb, col text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT clocks - col - ARRAY(
        SELECT k FROM jsonb_object_keys(clocks) k WHERE starts_with(k, col || '.'))
$$;

-- R3: merge a map column. Returns {"value": merged map, "clocks": its clocks ('col', 'col.<key>')}.
-- Each side's effective entry for key k is (map[k], max(clock 'col.k', base 'col')); per key the
-- greater effective clock wins, the stored side on a tie (R0); the new base is the greater base;
-- keys whose winner is (null, base) are dropped (implied by the base replacement).
CREATE OR REPLACE FUNCTION public.sync_merge_map(
    col text, s_map jsonb, s_clocks jsonb, i_map jsonb, i_clocks jsonb
) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    prefix text := col || '.';
    s_base text := coalesce(s_clocks ->> col, '');
    i_base text := coalesce(i_clocks ->> col, '');
    base text;
    k text;
    sc text;
    ic text;
    v jsonb;
    c text;
    out_map jsonb := '{}'::jsonb;
    out_clocks jsonb := '{}'::jsonb;
BEGIN
    s_map := coalesce(s_map, '{}'::jsonb);
    i_map := coalesce(i_map, '{}'::jsonb);
    s_clocks := coalesce(s_clocks, '{}'::jsonb);
    i_clocks := coalesce(i_clocks, '{}'::jsonb);
    base := CASE WHEN i_base COLLATE "C" > s_base COLLATE "C" THEN i_base ELSE s_base END;
    FOR k IN
        SELECT jsonb_object_keys(s_map) UNION SELECT jsonb_object_keys(i_map)
        UNION SELECT substr(x, length(prefix) + 1) FROM jsonb_object_keys(s_clocks) x
            WHERE starts_with(x, prefix)
        UNION SELECT substr(x, length(prefix) + 1) FROM jsonb_object_keys(i_clocks) x
            WHERE starts_with(x, prefix)
    LOOP
        sc := coalesce(s_clocks ->> (prefix || k), '');
        IF s_base COLLATE "C" > sc COLLATE "C" THEN sc := s_base; END IF;
        ic := coalesce(i_clocks ->> (prefix || k), '');
        IF i_base COLLATE "C" > ic COLLATE "C" THEN ic := i_base; END IF;
        IF ic COLLATE "C" > sc COLLATE "C" THEN
            v := i_map -> k;
            c := ic;
        ELSE
            v := s_map -> k;
            c := sc;
        END IF;
        v := coalesce(v, 'null'::jsonb);
        CONTINUE WHEN v = 'null'::jsonb AND c = base;
        out_map := out_map || jsonb_build_object(k, v);
        IF c <> '' THEN
            out_clocks := out_clocks || jsonb_build_object(prefix || k, c);
        END IF;
    END LOOP;
    IF base <> '' THEN
        out_clocks := out_clocks || jsonb_build_object(col, base);
    END IF;
    RETURN jsonb_build_object('value', out_map, 'clocks', out_clocks);
END
$$;

-- R3 "would anything change": some incoming clock of map column `col` beats the stored
-- effective clock of its key.
CREATE OR REPLACE FUNCTION public.sync_map_newer(col text, s_clocks jsonb, i_clocks jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT EXISTS (
        SELECT 1 FROM jsonb_each_text(i_clocks) i
        WHERE (i.key = col OR starts_with(i.key, col || '.'))
          AND i.value COLLATE "C" > greatest(
                coalesce(s_clocks ->> i.key, '') COLLATE "C",
                coalesce(s_clocks ->> col, '') COLLATE "C")
    )
$$;

-- The merge of an incoming row (alias `inc`: its columns hold the change's values, its field_hlc
-- the change's clocks) into a stored row (alias t; its clocks read through
-- sync_stored_clocks_sql, so a row in the one-register form merges as every field at its hlc and
-- leaves with one clock per field), as SQL text built from the table's columns:
--   sets    ", col = <merged value>, ..." for every column that can change
--   clocks  the merged field_hlc
--   wins    true when anything changes (so an echo or a duplicate writes nothing)
-- (dropped first: CREATE OR REPLACE cannot change the row type of an existing version)
DROP FUNCTION IF EXISTS public.sync_merge_sql(text, text);
CREATE OR REPLACE FUNCTION public.sync_merge_sql(
    tbl text, inc text, OUT sets text, OUT clocks text, OUT wins text
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
    lww text[] := '{}';
    p text;
    m text;
    st text := public.sync_stored_clocks_sql('t');  -- the stored clocks (0003)
BEGIN
    sets := '';
    clocks := st;
    wins := 'false';
    FOR c IN SELECT * FROM public.sync_columns(tbl) WHERE kind <> 'frozen' LOOP
        IF c.kind = 'map' THEN  -- R3
            m := format('public.sync_merge_map(%1$L, t.%1$I, %3$s, %2$s.%1$I, %2$s.field_hlc)',
                        c.col, inc, st);
            sets := sets || format(', %I = (%s) -> ''value''', c.col, m);
            clocks := format('public.sync_clocks_without(%s, %L) || ((%s) -> ''clocks'')',
                             clocks, c.col, m);
            wins := wins || format(' OR public.sync_map_newer(%L, %s, %s.field_hlc)',
                                   c.col, st, inc);
            CONTINUE;
        ELSIF c.kind = 'final' THEN
            -- R8: a final value beats any other; between two final values or two others, R1
            p := format(
                '(%3$s.field_hlc ? %1$L AND CASE'
                ' WHEN public.sync_is_final(t.%2$I) <> public.sync_is_final(%3$s.%2$I)'
                ' THEN public.sync_is_final(%3$s.%2$I)'
                ' ELSE (%3$s.field_hlc ->> %1$L) COLLATE "C" > coalesce(%4$s ->> %1$L, '''') COLLATE "C" END)',
                c.col, c.col, inc, st);
        ELSIF c.kind = 'fww' THEN
            -- R2: non-null beats null; among non-nulls the smaller clock; among nulls the greater
            p := format(
                '(%3$s.field_hlc ? %1$L AND CASE'
                ' WHEN (t.%2$I IS NULL) <> (%3$s.%2$I IS NULL) THEN t.%2$I IS NULL'
                ' WHEN t.%2$I IS NULL THEN (%3$s.field_hlc ->> %1$L) COLLATE "C" > coalesce(%4$s ->> %1$L, '''') COLLATE "C"'
                ' ELSE (%3$s.field_hlc ->> %1$L) COLLATE "C" < coalesce(%4$s ->> %1$L, '''') COLLATE "C" END)',
                c.col, c.col, inc, st);
        ELSE
            -- R1: the greater clock wins; equal = the same write, keep the stored value (R0)
            p := format('(%2$s.field_hlc ->> %1$L) COLLATE "C" > coalesce(%3$s ->> %1$L, '''') COLLATE "C"',
                        c.col, inc, st);
            lww := lww || c.col;
        END IF;
        IF c.kind <> 'lww' THEN  -- (fww, final) the incoming clock where it won
            clocks := format('%s || CASE WHEN %s THEN jsonb_build_object(%L, %s.field_hlc -> %L) ELSE ''{}''::jsonb END',
                             clocks, p, c.col, inc, c.col);
        END IF;
        sets := sets || format(', %1$I = CASE WHEN %2$s THEN %3$s.%1$I ELSE t.%1$I END', c.col, p, inc);
        wins := wins || ' OR ' || p;
    END LOOP;
    -- R1 clocks: the incoming ones that beat the stored ones
    clocks := format(
        '%1$s || (SELECT coalesce(jsonb_object_agg(i.key, i.value), ''{}''::jsonb)'
        ' FROM jsonb_each_text(%2$s.field_hlc) i WHERE i.key = ANY (%3$L::text[])'
        ' AND i.value COLLATE "C" > coalesce(%4$s ->> i.key, '''') COLLATE "C")',
        clocks, inc, lww, st);
END
$$;

-- The device part of a clock ("<13-digit ms>-<6-digit counter>-<device>"), NULL for a non-clock.
-- A row's origin is the device of its newest field clock, so every replica (daemons and the cloud)
-- derives the same origin from the same clocks, whoever pushed last.
CREATE OR REPLACE FUNCTION public.sync_clock_device(h text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN public.sync_is_hlc(h) THEN substr(h, 22) END
$$;

-- The statements that write a batch of accepted changes to `tbl`, as the CTEs
--   src AS (...), upd AS (...), ins AS (...), written AS (...)
-- to put after WITH. `source` is a query yielding (id uuid, ws uuid, known boolean,
-- fields jsonb, clocks jsonb, origin text, hlc text: the greatest of `clocks`, '' if none,
-- one_clock boolean: every clock is hlc; `clocks` NULL: a change in the compact form, every
-- field under `hlc`, its clock per field made here only where a statement reads them) with
-- distinct ids and only well-formed clocks (sync_push_classify rejects the others; a new row's
-- origin is then its hlc's device part without sync_clock_device's check): rows that exist get
-- an UPDATE merging field by field (sync_merge_sql), new ones a plain INSERT; `written` holds
-- the ids of the existing rows that changed (a new row is always written). `src` is not
-- materialised: the UPDATE and the INSERT each read only their own rows of `source` (known or
-- not), so each change's fields are converted to column values once, and not copied into a
-- work table. The INSERT has no ON CONFLICT clause (its speculative insertion cost 5-8% of a
-- 500-row push of new rows): a row is new only when it did not exist, so a clash means another
-- transaction created it at the same moment (a retry racing its original); the statement then
-- fails on the primary key and sync_push redoes the table's changes on its slow path, where the
-- row exists and is merged like any other (0005).
CREATE OR REPLACE FUNCTION public.sync_write_sql(tbl text, source text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c record;
    upd record := public.sync_merge_sql(tbl, 'x');
    ins_cols text := 'id';
    ins_vals text := 'x.id';
    ins_clocks text := 'x.field_hlc';
    src_cols text := '';
    m text;
BEGIN
    FOR c IN SELECT * FROM public.sync_columns(tbl) LOOP
        ins_cols := ins_cols || format(', %I', c.col);
        src_cols := src_cols || CASE WHEN c.col = 'workspace_id' THEN ', s.ws AS workspace_id'
                                     ELSE format(', r.%I', c.col) END;
        IF c.kind = 'map' THEN
            m := format('public.sync_merge_map(%1$L, NULL, NULL, x.%1$I, x.field_hlc)', c.col);
            ins_vals := ins_vals || format(', (%s) -> ''value''', m);
            ins_clocks := format('public.sync_clocks_without(%s, %L) || ((%s) -> ''clocks'')',
                                 ins_clocks, c.col, m);
        ELSIF c.col = 'workspace_id' THEN
            ins_vals := ins_vals || ', x.workspace_id';
        ELSE
            ins_vals := ins_vals || format(', CASE WHEN x.sync_fields ? %L THEN x.%I ELSE %s END',
                                           c.col, c.col, coalesce(c.default_expr, 'NULL'));
        END IF;
    END LOOP;
    IF tbl = 'messages' THEN
        -- a new message whose clocks are one clock, its deleted_at's among them, is stored in
        -- the one-register form (0003): its other fields are frozen (R7), so their clocks
        -- decide nothing, and daemons keep a message's row clock only (daemon/store/schema.py)
        ins_clocks := 'CASE WHEN x.sync_one_clock AND x.sync_fields ? ''deleted_at'''
                      ' THEN ''{}''::jsonb ELSE x.field_hlc END';
    END IF;
    RETURN format(
        ' src AS NOT MATERIALIZED ('
        ' SELECT s.known AS sync_known, s.fields AS sync_fields, s.id,'
        '        coalesce(s.clocks, (SELECT jsonb_object_agg(k, s.hlc)'
        '                            FROM jsonb_object_keys(s.fields) k)) AS field_hlc,'
        '        s.origin, s.hlc AS sync_hlc, s.one_clock AS sync_one_clock%2$s'
        ' FROM (%9$s) AS s'
        ' CROSS JOIN LATERAL jsonb_populate_record(NULL::public.%1$I, s.fields) AS r),'
        ' upd AS ('
        ' UPDATE public.%1$I AS t SET origin = coalesce(public.sync_clock_device('
        '(SELECT coalesce(max(c.value COLLATE "C"), '''') FROM jsonb_each_text(%4$s) c)),'
        ' x.origin)%3$s, field_hlc = %4$s,'
        ' hlc = (SELECT coalesce(max(c.value COLLATE "C"), '''') FROM jsonb_each_text(%4$s) c)'
        ' FROM src x WHERE x.sync_known AND t.id = x.id AND (%5$s)'
        ' RETURNING t.id),'
        ' ins AS ('
        ' INSERT INTO public.%1$I AS t (%6$s, field_hlc, hlc, origin)'
        ' SELECT %7$s, %8$s, x.sync_hlc, coalesce(nullif(substr(x.sync_hlc, 22), ''''), x.origin)'
        ' FROM src x WHERE NOT x.sync_known),'
        ' written AS (SELECT upd.id FROM upd)',
        tbl, src_cols, upd.sets, upd.clocks, upd.wins, ins_cols, ins_vals, ins_clocks, source);
END
$$;
