-- syncd cloud schema, part 5: sync_push, the one RPC devices push their changes through.
--
--   sync_push(changes jsonb) RETURNS jsonb
--   changes: [{table, id, workspace_id, fields: {col: value}, field_hlc: {col: hlc}, origin}, ...]
--            or, in the compact form, `hlc` instead of `field_hlc`: every field the change
--            carries is under that one clock (JSON maps as whole values), as when the fields
--            were written together; a device sends this form whenever it can (it is ~40%
--            smaller, and PostgreSQL has no clocks to parse and walk). One or the other.
--   returns: [{id, table, status: "applied"|"superseded"|"rejected", reason?, detail?}, ...]
--            one result per change, in order. reason: forbidden | invalid | clock_skew |
--            unknown_table.
--
-- Each field is applied only where the incoming clock wins by the merge rules (0003; R0-R8 of
-- daemon/sync/merge.py): "applied" = the change took effect, or had already (an equal clock:
-- a retried batch changes nothing); "superseded" = every field already had a newer write.
-- SECURITY INVOKER: row-level security decides what the caller may write.
--
-- How (set-based, per table, in the order workspaces, conversations, messages, tasks so a batch
-- may create a workspace and its rows), measured faster than a per-row loop with an EXCEPTION
-- block per row (bench/devcloud_push.py):
--   1. classify the table's changes in one query: malformed -> invalid, clocks more than an
--      hour ahead of the database's clock -> clock_skew, rows of organisations the caller is not
--      a member of -> forbidden, rows that would move to another workspace -> invalid;
--   2. in the same statement, write the accepted ones: one UPDATE for the rows that exist, with
--      a CASE per column comparing clocks (its WHERE skips rows where nothing wins: no echo, no
--      new _seq), one plain INSERT for the new ones, in batch order (so their _seq, and a pull,
--      keep the order they were pushed in) — the generated functions sync_push_<table>
--      (sync_define_push below);
--   3. if that statement fails (a value of the wrong type, a constraint, a policy, or a new row
--      that another transaction created meanwhile: its primary key), redo the table's changes
--      one by one, each in its own subtransaction (where a row created meanwhile exists and is
--      merged), and reject the failing ones: one bad change never fails the batch
--      (sync_push_slow; also used when one batch holds several changes of one row, which are
--      applied in batch order).
-- Where the time of a 500-row push of new messages goes (bench/devcloud_push.py; profiled with
-- perf and per-statement variants): the INSERT with its index entries, foreign-key check and
-- policies ~40%, classifying ~25%, parsing the JSON body ~10%, the answers and the rest ~25%.

-- What sync_push runs per synced table, generated from sync_tables() and the tables' columns
-- as plpgsql with static SQL, so each database session plans each statement once (0008 calls
-- this again after adding its tables; re-apply every file after adding a column):
--   sync_row_owners(tbl, ids)     which of `ids` exist in synced table `tbl`, whoever owns them
--       (so a change to another organisation's row is refused as forbidden, not failed on the
--       primary key). Reveals where a row lives and its clocks (one per field, the
--       one-register form expanded: 0003) only to callers who may see it.
--   sync_push_<table>(changes)    the fast path (steps 1 and 2): classifies the batch's changes
--       of that table, writes the accepted ones and builds the results in ONE statement.
--       Returns the changes' positions in the batch (ascending) and their results in that
--       order; raises if any write fails (sync_push then takes the slow path for that table).
--   sync_push_table(tbl, changes) the fast path of one table.
-- Each is dropped first (CREATE OR REPLACE cannot change the result type of an older version)
-- and granted again. Called here, before the functions below: sync_push_classify (a SQL
-- function, checked when created) calls sync_row_owners; the generated plpgsql functions call
-- the others only when they run.
CREATE OR REPLACE FUNCTION public.sync_define_push() RETURNS void
LANGUAGE plpgsql AS $generate$
DECLARE
    tbl text;
BEGIN
    DROP FUNCTION IF EXISTS public.sync_row_owners(text, uuid[]);
    EXECUTE format($f$
CREATE FUNCTION public.sync_row_owners(tbl text, ids uuid[])
RETURNS TABLE (id uuid, visible boolean, workspace_id uuid, org_id uuid, field_hlc jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $body$
DECLARE
    bypass boolean := public.sync_caller_bypasses_rls();
    orgs uuid[] := ARRAY(SELECT public.member_org_ids());
BEGIN
    RETURN QUERY
        WITH r AS (
            %s
        )
        SELECT r.id, v.ok, CASE WHEN v.ok THEN r.ws END, CASE WHEN v.ok THEN w.org_id END,
               CASE WHEN v.ok THEN r.field_hlc END
        FROM r
        JOIN public.workspaces w ON w.id = r.ws
        CROSS JOIN LATERAL (SELECT bypass OR w.org_id = ANY (orgs) AS ok) v;
END
$body$;
REVOKE EXECUTE ON FUNCTION public.sync_row_owners(text, uuid[]) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.sync_row_owners(text, uuid[]) TO authenticated, service_role;
$f$,
        (SELECT string_agg(format(
                    'SELECT t.id, t.%I AS ws, %s AS field_hlc FROM public.%I t'
                    ' WHERE tbl = %L AND t.id = ANY (ids)',
                    CASE WHEN s.tbl = 'workspaces' THEN 'id' ELSE 'workspace_id' END,
                    public.sync_stored_clocks_sql('t'), s.tbl, s.tbl),
                E'\n            UNION ALL\n            ' ORDER BY s.n)
         FROM unnest(public.sync_tables()) WITH ORDINALITY AS s(tbl, n)));

    FOREACH tbl IN ARRAY public.sync_tables() LOOP
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
                'SELECT v.id, v.ws, v.known, v.fields, v.clocks, v.origin, v.hlc, v.one_clock'
                ' FROM v'
                ' WHERE v.reason = '''' ORDER BY v.idx'),
            (SELECT array_agg(c.col) FROM public.sync_columns(tbl) c),
            (SELECT coalesce(array_agg(c.col), '{}') FROM public.sync_columns(tbl) c
             WHERE c.kind = 'map')
        );
    END LOOP;

    DROP FUNCTION IF EXISTS public.sync_push_table(text, jsonb);
    EXECUTE format($f$
CREATE FUNCTION public.sync_push_table(
    tbl text, changes jsonb, OUT positions integer[], OUT answers jsonb
)
LANGUAGE plpgsql AS $body$
BEGIN
    CASE tbl
        %s
    END CASE;
END
$body$;
$f$,
        (SELECT string_agg(format(
                    'WHEN %L THEN SELECT * INTO positions, answers FROM public.%I(changes);',
                    s.tbl, 'sync_push_' || s.tbl),
                E'\n        ' ORDER BY s.n)
         FROM unnest(public.sync_tables()) WITH ORDINALITY AS s(tbl, n)));
END
$generate$;
REVOKE EXECUTE ON FUNCTION public.sync_define_push() FROM PUBLIC, anon, authenticated, service_role;

SELECT public.sync_define_push();

-- Classify the changes of one table (step 1). One row per change of `tbl` in `changes`
-- (`allowed`: the table's data columns, `maps`: its JSON-map columns):
-- reason '' = accepted; `known` = the row exists; `equal` = some incoming clock equals the
-- stored one (the change, or part of it, was applied before); `hlc` = its greatest clock;
-- `one_clock` = every clock of the change is `hlc`; `clocks` is NULL for the compact form.
-- Set-based and free of per-row calls of functions PostgreSQL cannot inline (a SQL function
-- with sub-queries is not inlined, and calling one per row costs more than everything else
-- here). Of the steps that carry the changes' JSON only `raw` is materialised: `checked` and
-- `verdict` are computed once per change (OFFSET 0 keeps PostgreSQL from pulling them up and
-- evaluating their CASEs once per use) without copying the JSON into a work table again.
-- (dropped first: CREATE OR REPLACE cannot change the row type of an existing version)
DROP FUNCTION IF EXISTS public.sync_push_classify(text, jsonb);
DROP FUNCTION IF EXISTS public.sync_push_classify(text, jsonb, text[], text[]);
CREATE FUNCTION public.sync_push_classify(
    tbl text, changes jsonb, allowed text[], maps text[]
)
RETURNS TABLE (idx integer, id_text text, id uuid, reason text, detail text, known boolean,
               equal boolean, ws uuid, fields jsonb, clocks jsonb, origin text, hlc text,
               one_clock boolean)
LANGUAGE sql STABLE AS $$
    WITH ctx AS MATERIALIZED (
        SELECT allowed, maps,
               public.sync_caller_bypasses_rls() AS bypass,
               auth.uid() AS caller,
               auth.uid()::text AS caller_text,
               -- the greatest wall time a clock may carry: the cloud's clock plus one hour
               lpad((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint + 3600000)::text,
                    13, '0') AS max_wall
    ),
    raw AS MATERIALIZED (
        SELECT e.ord::integer AS idx, e.c ->> 'id' AS id_text,
               public.sync_uuid(e.c ->> 'id') AS id,
               public.sync_uuid(CASE WHEN tbl = 'workspaces'
                                     THEN coalesce(e.c ->> 'workspace_id', e.c ->> 'id')
                                     ELSE e.c ->> 'workspace_id' END) AS ws,
               CASE WHEN jsonb_typeof(e.c -> 'fields') = 'object' THEN e.c -> 'fields' END AS fields,
               CASE WHEN jsonb_typeof(e.c -> 'field_hlc') = 'object' THEN e.c -> 'field_hlc' END AS clocks,
               -- the compact form: one clock for every field, instead of field_hlc
               CASE WHEN jsonb_typeof(e.c -> 'hlc') = 'string' AND NOT e.c ? 'field_hlc'
                    THEN e.c ->> 'hlc' END AS one_hlc,
               CASE WHEN e.c ? 'hlc' THEN CASE
                   WHEN e.c ? 'field_hlc' THEN 'invalid|a change carries field_hlc or hlc, not both'
                   WHEN jsonb_typeof(e.c -> 'hlc') <> 'string' THEN 'invalid|hlc must be a string'
               END END AS clock_form,
               e.c -> 'origin' AS origin,
               CASE WHEN tbl = 'messages'
                    THEN public.sync_uuid(e.c #>> '{fields,conversation_id}') END AS conv_id
        FROM jsonb_array_elements(changes) WITH ORDINALITY AS e(c, ord)
        WHERE jsonb_typeof(e.c) = 'object' AND e.c ->> 'table' = tbl
    ),
    owners AS MATERIALIZED (
        SELECT o.* FROM public.sync_row_owners(tbl, ARRAY(SELECT r.id FROM raw r WHERE r.id IS NOT NULL)) o
    ),
    member_ws AS MATERIALIZED (SELECT public.member_workspace_ids() AS ws),
    member_org AS MATERIALIZED (SELECT public.member_org_ids() AS org),
    -- the conversations new messages name (the batch's own conversations are already written)
    convs AS MATERIALIZED (
        SELECT cv.id, cv.workspace_id FROM public.conversations cv
        WHERE tbl = 'messages' AND cv.id IN (SELECT r.conv_id FROM raw r)
    ),
    checked AS (
        SELECT r.*, ck.hlc, ck.lo = ck.hlc AS one_clock, o.id IS NOT NULL AS known, o.visible, o.workspace_id AS owner_ws,
               o.org_id AS owner_org, o.field_hlc AS stored_clocks, ctx.bypass, ctx.caller,
               ctx.caller_text,
               cv.workspace_id AS conv_ws,
               CASE  -- the shape of the change
                   WHEN r.id IS NULL THEN 'invalid|id must be a uuid'
                   WHEN r.ws IS NULL THEN 'invalid|workspace_id must be a uuid'
                   WHEN tbl = 'workspaces' AND r.ws <> r.id
                       THEN 'invalid|a workspace''s workspace_id is its id'
                   WHEN r.fields IS NULL THEN 'invalid|fields must be a JSON object'
                   WHEN r.clock_form IS NOT NULL THEN r.clock_form
                   WHEN r.clocks IS NULL AND r.one_hlc IS NULL
                       THEN 'invalid|field_hlc must be a JSON object'
                   WHEN r.fields = '{}'::jsonb THEN 'invalid|the change has no fields'
                   WHEN jsonb_typeof(coalesce(r.origin, 'null'::jsonb)) NOT IN ('string', 'null')
                       THEN 'invalid|origin must be a string'
                   WHEN (r.fields - ctx.allowed) <> '{}'::jsonb
                       THEN 'invalid|unknown field '
                            || (SELECT min(k) FROM jsonb_object_keys(r.fields - ctx.allowed) k)
                   WHEN r.fields ? 'workspace_id'
                        AND public.sync_uuid(r.fields ->> 'workspace_id') IS DISTINCT FROM r.ws
                       THEN 'invalid|fields.workspace_id differs from workspace_id'
                   WHEN tbl = 'messages' AND r.fields ? 'role'
                        AND coalesce(r.fields ->> 'role', '') NOT IN ('user', 'assistant')
                       THEN 'invalid|role must be user or assistant'
                            ' (system and tool messages are local-only)'
                   WHEN cardinality(ctx.maps) > 0 AND EXISTS (
                           SELECT 1 FROM unnest(ctx.maps) m
                           WHERE jsonb_typeof(coalesce(r.fields -> m, '{}'::jsonb))
                                 NOT IN ('object', 'null'))
                       THEN 'invalid|' || array_to_string(ctx.maps, ', ') || ' must be JSON objects'
                   -- every non-map field needs a clock
                   WHEN r.one_hlc IS NULL AND (r.fields - ctx.maps - ck.keys) <> '{}'::jsonb
                       THEN format('invalid|field %s has no clock in field_hlc', (
                           SELECT min(k) FROM jsonb_object_keys(r.fields - ctx.maps - ck.keys) k))
                   WHEN NOT (ck.shaped
                             AND left(ck.hlc, 13) COLLATE "C" <= ctx.max_wall COLLATE "C"
                             AND CASE WHEN ck.lo = ck.hlc THEN public.sync_is_hlc(ck.hlc)
                                      ELSE NOT EXISTS (
                                          SELECT 1 FROM jsonb_each_text(r.clocks) e
                                          WHERE NOT public.sync_is_hlc(e.value)) END)
                       THEN CASE
                       WHEN r.one_hlc IS NOT NULL THEN CASE
                           WHEN NOT coalesce(public.sync_is_hlc(r.one_hlc), false)
                               THEN 'invalid|bad clock hlc'
                           ELSE format('clock_skew|clock %s is more than an hour ahead of the cloud',
                                       r.one_hlc)
                           END
                       ELSE (
                       SELECT CASE q.rank
                           WHEN 2 THEN format('invalid|bad clock for %s', e.key)
                           WHEN 3 THEN format(
                               'invalid|clock for %s, which the change does not carry', e.key)
                           ELSE format(
                               'clock_skew|clock %s is more than an hour ahead of the cloud',
                               e.value)
                       END
                       FROM jsonb_each_text(r.clocks) e
                       CROSS JOIN LATERAL (SELECT CASE
                               WHEN NOT coalesce(public.sync_is_hlc(e.value), false) THEN 2
                               WHEN strpos(e.key, '.') > 0 THEN
                                   CASE WHEN split_part(e.key, '.', 1) = ANY (ctx.maps)
                                        THEN 4 ELSE 3 END
                               WHEN r.fields ? e.key OR e.key = ANY (ctx.maps) THEN 4
                               ELSE 3
                           END AS rank) q
                       WHERE q.rank < 4
                          OR left(e.value, 13) COLLATE "C" > ctx.max_wall COLLATE "C"
                       ORDER BY q.rank, e.key
                       LIMIT 1) END
               END AS problem
        FROM raw r
        CROSS JOIN ctx
        -- One pass over the change's clocks: their keys, the least and the greatest, and
        -- whether each one is a string for a field the change carries (3). "Well formed" (2)
        -- and "at most an hour ahead of the cloud" (4) need only the greatest clock when all
        -- are equal (as they are when the fields were written together), else each clock is
        -- checked. Which check failed, for which clock, is worked out only if one did.
        -- A change in the compact form has no clocks to walk: its one clock is both.
        CROSS JOIN LATERAL (
            SELECT coalesce(array_agg(e.key), '{}') AS keys,
                   coalesce(r.one_hlc, max(e.value COLLATE "C"), '') AS hlc,
                   coalesce(r.one_hlc, min(e.value COLLATE "C")) AS lo,
                   coalesce(bool_and(e.value IS NOT NULL AND (r.fields ? e.key OR CASE
                       WHEN strpos(e.key, '.') > 0 THEN split_part(e.key, '.', 1) = ANY (ctx.maps)
                       ELSE e.key = ANY (ctx.maps) END)), true) AS shaped
            FROM jsonb_each_text(r.clocks) e) ck
        LEFT JOIN owners o ON o.id = r.id
        LEFT JOIN convs cv ON cv.id = r.conv_id
        OFFSET 0
    ),
    verdict AS (
        SELECT ch.*, CASE
            WHEN ch.problem IS NOT NULL THEN ch.problem
            WHEN ch.known AND NOT ch.visible THEN 'forbidden|the row belongs to another organisation'
            WHEN ch.known AND ch.owner_ws <> ch.ws THEN 'invalid|the row belongs to another workspace'
            WHEN tbl = 'workspaces' AND ch.known AND ch.fields ? 'org_id'
                 AND public.sync_uuid(ch.fields ->> 'org_id') IS DISTINCT FROM ch.owner_org
                THEN 'invalid|a workspace cannot move to another organisation'
            WHEN tbl = 'workspaces' AND NOT ch.known
                 AND public.sync_uuid(ch.fields ->> 'org_id') IS NULL
                THEN 'invalid|a new workspace needs fields.org_id'
            WHEN NOT ch.bypass AND tbl = 'workspaces' AND NOT ch.known
                 AND public.sync_uuid(ch.fields ->> 'org_id') NOT IN (SELECT org FROM member_org)
                THEN 'forbidden|not a member of the organisation'
            WHEN NOT ch.bypass AND tbl <> 'workspaces' AND ch.ws NOT IN (SELECT ws FROM member_ws)
                THEN 'forbidden|not a member of the workspace''s organisation'
            WHEN NOT ch.bypass AND tbl = 'messages' AND ch.fields ? 'sender_user_id'
                 AND jsonb_typeof(ch.fields -> 'sender_user_id') <> 'null'
                 -- (the caller's id as text, as devices send it: no uuid to parse)
                 AND (ch.fields ->> 'sender_user_id') IS DISTINCT FROM ch.caller_text
                 AND public.sync_uuid(ch.fields ->> 'sender_user_id') IS DISTINCT FROM ch.caller
                THEN 'forbidden|sender_user_id must be the caller or null'
            WHEN tbl = 'messages' AND NOT ch.known AND ch.conv_ws IS DISTINCT FROM ch.ws
                THEN 'invalid|conversation_id is not a conversation of the workspace'
        END AS problem2
        FROM checked ch
        OFFSET 0
    )
    SELECT v.idx, v.id_text, v.id,
           coalesce(split_part(v.problem2, '|', 1), ''),
           nullif(substr(v.problem2, strpos(v.problem2, '|') + 1), ''),
           v.known,
           v.known AND CASE WHEN v.one_hlc IS NULL
               THEN EXISTS (SELECT 1 FROM jsonb_each_text(v.clocks) i
                            WHERE v.stored_clocks ->> i.key = i.value)
               ELSE EXISTS (SELECT 1 FROM jsonb_object_keys(v.fields) k
                            WHERE v.stored_clocks ->> k = v.one_hlc) END,
           v.ws, v.fields, v.clocks, v.origin #>> '{}', v.hlc, v.one_clock
    FROM verdict v
$$;

-- The rejection reason for an error raised while applying one change, or NULL to re-raise.
CREATE OR REPLACE FUNCTION public.sync_error_reason(state text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN state = '42501' THEN 'forbidden'        -- insufficient privilege, row-level security
        WHEN left(state, 2) IN ('22', '23') THEN 'invalid'   -- data exception, constraint
        WHEN state IN ('21000', '42804', '0A000') THEN 'invalid'
    END
$$;

-- One result per classified change: {id, table, status, reason?, detail?}. `written`: the
-- statement changed the row. STABLE like the functions it calls, so PostgreSQL inlines it.
CREATE OR REPLACE FUNCTION public.sync_push_result(
    tbl text, id_text text, reason text, detail text, known boolean, equal boolean,
    written boolean
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN reason <> '' THEN jsonb_strip_nulls(jsonb_build_object(
            'id', id_text, 'table', tbl, 'status', 'rejected', 'reason', reason, 'detail', detail))
        -- (jsonb_object of text arrays: jsonb_build_object looks up its arguments' types in
        -- the catalogue for every row)
        ELSE jsonb_object(ARRAY['id', 'table', 'status'], ARRAY[id_text, tbl,
            CASE WHEN written OR NOT known OR equal THEN 'applied' ELSE 'superseded' END])
    END
$$;

-- One change through the fast path in its own subtransaction: its answer, a rejection when it
-- raises a data error, or NULL when its new row was created meanwhile by another transaction
-- (the INSERT failed on the primary key: in READ COMMITTED the change's next attempt sees the
-- row and merges into it).
CREATE OR REPLACE FUNCTION public.sync_push_one(tbl text, change jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    reason text;
BEGIN
    RETURN (public.sync_push_table(tbl, jsonb_build_array(change))).answers -> 0;
EXCEPTION
    WHEN unique_violation THEN
        RETURN NULL;
    WHEN OTHERS THEN
        reason := public.sync_error_reason(SQLSTATE);
        IF reason IS NULL THEN
            RAISE;
        END IF;
        RETURN jsonb_build_object('id', change ->> 'id', 'table', tbl, 'status', 'rejected',
                                  'reason', reason, 'detail', SQLERRM);
END
$$;

-- The slow path (step 3) for one table: its changes one by one, in batch order, each through
-- the fast path in its own subtransaction (sync_push_one); a change that raises a data error
-- is rejected, the others go on. Also the path for a batch holding several changes of one row
-- (each then sees the one before). Returns positions and results as the fast path does.
-- A change whose new row another transaction created meanwhile is tried once more (now the row
-- exists); in a transaction that cannot see that row (REPEATABLE READ, SERIALIZABLE) the push
-- fails with serialization_failure instead, for the caller to retry it (as PostgreSQL's own
-- INSERT ... ON CONFLICT DO UPDATE would).
DROP FUNCTION IF EXISTS public.sync_push_slow(text, jsonb);
CREATE FUNCTION public.sync_push_slow(
    tbl text, changes jsonb, OUT positions integer[], OUT answers jsonb
)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    answer jsonb;
BEGIN
    positions := '{}';
    answers := '[]'::jsonb;
    FOR c IN
        SELECT e.c, e.ord FROM jsonb_array_elements(changes) WITH ORDINALITY AS e(c, ord)
        WHERE jsonb_typeof(e.c) = 'object' AND e.c ->> 'table' = tbl
        ORDER BY e.ord
    LOOP
        answer := public.sync_push_one(tbl, c.c);
        IF answer IS NULL THEN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'sync_push: % row % was created by a concurrent transaction',
                    tbl, c.c ->> 'id' USING ERRCODE = 'serialization_failure';
            END IF;
            answer := coalesce(public.sync_push_one(tbl, c.c), jsonb_build_object(
                'id', c.c ->> 'id', 'table', tbl, 'status', 'rejected', 'reason', 'invalid',
                'detail', 'the row was created by a concurrent transaction'));
        END IF;
        positions := positions || c.ord::integer;
        answers := answers || jsonb_build_array(answer);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION public.sync_push(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    tbl text;
    present text[];
    repeated text[];
    part record;
    positions integer[];
    answers jsonb;
    parts integer;
BEGIN
    IF changes IS NULL OR jsonb_typeof(changes) <> 'array' THEN
        RAISE EXCEPTION 'sync_push: changes must be a JSON array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('syncd.in_push', 'on', true);

    -- The synced tables the batch touches, those with several changes of one row, and the
    -- elements that are no change of a synced table (rejected here).
    WITH e AS MATERIALIZED (
        SELECT x.c ->> 'table' AS tbl, x.c ->> 'id' AS id, x.ord::integer AS ord,
               jsonb_typeof(x.c) = 'object' AS is_object,
               jsonb_typeof(x.c) = 'object'
               AND coalesce(x.c ->> 'table' = ANY (public.sync_tables()), false) AS synced
        FROM jsonb_array_elements(changes) WITH ORDINALITY AS x(c, ord)
    ),
    t AS MATERIALIZED (
        SELECT g.tbl, bool_or(g.n > 1) AS repeats
        FROM (SELECT e.tbl, e.id, count(*) AS n FROM e WHERE e.synced GROUP BY e.tbl, e.id) g
        GROUP BY g.tbl
    )
    SELECT (SELECT coalesce(array_agg(t.tbl), '{}') FROM t),
           (SELECT coalesce(array_agg(t.tbl) FILTER (WHERE t.repeats), '{}') FROM t),
           (SELECT coalesce(array_agg(e.ord ORDER BY e.ord), '{}') FROM e WHERE NOT e.synced),
           (SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                'id', e.id, 'table', e.tbl, 'status', 'rejected',
                'reason', CASE WHEN e.is_object THEN 'unknown_table' ELSE 'invalid' END))
                ORDER BY e.ord), '[]'::jsonb)
            FROM e WHERE NOT e.synced)
    INTO present, repeated, positions, answers;
    parts := CASE WHEN cardinality(positions) > 0 THEN 1 ELSE 0 END;

    -- Table by table, in this order, so a batch may create a workspace and then its rows.
    FOREACH tbl IN ARRAY public.sync_tables() LOOP
        CONTINUE WHEN NOT tbl = ANY (present);
        IF tbl = ANY (repeated) THEN
            part := public.sync_push_slow(tbl, changes);
        ELSE
            BEGIN
                part := public.sync_push_table(tbl, changes);
            EXCEPTION WHEN OTHERS THEN
                IF public.sync_error_reason(SQLSTATE) IS NULL THEN
                    RAISE;
                END IF;
                part := public.sync_push_slow(tbl, changes);
            END;
        END IF;
        IF parts = 0 THEN  -- (concatenating to the empty array would copy every answer)
            positions := part.positions;
            answers := part.answers;
        ELSE
            positions := positions || part.positions;
            answers := answers || part.answers;
        END IF;
        parts := parts + 1;
    END LOOP;

    PERFORM set_config('syncd.in_push', 'off', true);
    IF parts <= 1 THEN
        RETURN answers;  -- one part: already in batch order
    END IF;
    RETURN (SELECT jsonb_agg(a.r ORDER BY p.pos)
            FROM unnest(positions) WITH ORDINALITY AS p(pos, n)
            JOIN jsonb_array_elements(answers) WITH ORDINALITY AS a(r, n) ON a.n = p.n);
END
$$;

REVOKE EXECUTE ON FUNCTION public.sync_push(jsonb) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.sync_push(jsonb) TO authenticated, service_role;
