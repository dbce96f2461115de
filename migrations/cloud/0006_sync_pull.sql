-- syncd cloud schema, part 6: sync_pull, the gap-free change feed, sync_pull_count and
-- sync_pull_marks.
--
--   sync_pull(cursor text DEFAULT NULL, "limit" int DEFAULT 1000, workspace_id uuid DEFAULT NULL)
--   RETURNS json: {cursor: "<txid>:<seq>", has_more: bool,
--                  changes: [{table, id, workspace_id, row: {...every column...}}]}
--   sync_pull_count(cursor text DEFAULT NULL, workspace_id uuid DEFAULT NULL) RETURNS bigint:
--                  how many rows sync_pull would serve after `cursor` if nothing changed
--                  meanwhile (the same rows: same visibility, same horizon). A client shows
--                  a long pull's progress against it (a row updated while the pull runs is
--                  served again, so the rows served can end above the count). One index-only
--                  count per table on the same indexes: ~20 ms for 100k rows.
--   sync_pull_marks(cursor text DEFAULT NULL, step int DEFAULT 1000, workspace_id uuid DEFAULT
--                  NULL) RETURNS json: {count, marks: ["<txid>:<seq>", ...]}: the count as
--                  above and the position of every step-th of those rows (at most 10000
--                  marks): the cursors the pages of `step` rows after `cursor` would answer if
--                  nothing changed. A client fetches those pages at once, each from its mark,
--                  instead of one after another (see "Pages at once" below). One index-only
--                  scan of the same indexes, merged in (_txid, _seq) order: ~30 ms for 100k.
--
-- Rows visible to the caller (row-level security) of every synced table, in (_txid, _seq) order,
-- after `cursor` (NULL or '' = from the start), at most `limit` of them, of one workspace or of
-- all. Pass the returned cursor to the next call; has_more says whether to call again now.
--
-- Why no row is ever skipped: the sync_row_stamp trigger stamps each written row with its
-- transaction id (_txid) and a sequence number (_seq). Only rows of transactions older than the
-- snapshot's xmin are served: every such transaction has finished, so no row can later appear
-- below the cursor, whatever order concurrent transactions commit in. A long transaction
-- delays pulls; it never loses rows. An update moves its row forward, so a pull carries each
-- row's latest state (state-based sync needs nothing else).
--
-- Pages at once (sync_pull_marks): a mark M_k is the position of the (k*step)-th row after a
-- cursor C, below that call's horizon H. Every transaction with an id below H had ended when
-- the marks were taken, so no row can later take a position at or below any mark: a row
-- between two marks can only leave (an update moves it past every cursor, as above). The page
-- of `step` rows after M_(k-1) therefore reaches M_k or beyond (or says has_more = false),
-- whenever it is fetched: the pages from C, M_1, M_2, ... fetched at once overlap at worst,
-- never leave a gap. A client still checks that each page starts at or before the end of the
-- page it applied before it (the cursor it goes on from), and goes on one page after another
-- from there when one does not (visibility changed meanwhile: a membership gained).
-- A per-workspace cursor starts at zero when a workspace is linked. The all-workspaces cursor
-- only covers what the caller could see when it pulled: after joining an organisation, pull
-- its workspaces from zero.

-- Generated from sync_tables() (0008 calls this again after adding its tables) as plpgsql with
-- two static statements (each planned once per session): one per workspace, on the
-- (workspace_id, _txid, _seq) indexes, and one across workspaces, on (_txid, _seq). Each takes
-- at most lim + 1 rows of every table, in (_txid, _seq) order, and the first lim + 1 of those.
-- The page is built as json, not jsonb (to_json, json_agg: text appended in column order, no
-- binary jsonb built, sorted and re-serialised; measured ~1.5-2x faster for 2000-row pages of
-- messages), in one pass: the (lim + 1)-th row only sets has_more, the last served row's
-- (_txid, _seq) is the cursor. Every aggregate is ordered by (_txid, _seq), the order its input
-- already has: PostgreSQL 16 then sorts nothing (it sorts each aggregate's input otherwise),
-- and the cursor is formatted once, not per row (measured: ~15 % less CPU per page). Both
-- statements take their page with the same text (page_of). (An earlier version returned
-- jsonb: it is dropped first, as CREATE OR REPLACE cannot change a return type.)
-- cursor and has_more come first in the object (json keeps the order it is built in, and
-- PostgREST passes the text through): a client can read them off the answer's first bytes and
-- ask for the next page before it has decoded this one.
CREATE OR REPLACE FUNCTION public.sync_define_pull() RETURNS void
LANGUAGE plpgsql AS $generate$
DECLARE
    -- the rows every function serves or counts: after the cursor, below the horizon (%s: the
    -- workspace filter)
    rows_after CONSTANT text :=
        ' WHERE (t._txid, t._seq) > (after_txid, after_seq) AND t._txid < horizon%s';
    -- one table's part: its name, its workspace column, the table again, the workspace filter
    part CONSTANT text :=
        '(SELECT %L AS tbl, t.id, t.%I AS ws, t._txid, t._seq, to_json(t) AS r'
        ' FROM public.%I t' || rows_after || ' ORDER BY t._txid, t._seq LIMIT lim + 1)';
    -- the page from either statement's parts, taken once (see above)
    page_of CONSTANT text := $page$SELECT coalesce(json_agg(json_build_object(
                   'table', o.tbl, 'id', o.id, 'workspace_id', o.ws, 'row', o.r)
                   ORDER BY o._txid, o._seq) FILTER (WHERE o.rn <= lim), '[]'::json),
               coalesce(max(o.rn), 0),
               array_agg(o._txid ORDER BY o._txid, o._seq) FILTER (WHERE o.rn <= lim),
               array_agg(o._seq ORDER BY o._txid, o._seq) FILTER (WHERE o.rn <= lim)
        INTO page, n, txids, seqs
        FROM (SELECT p.*, row_number() OVER (ORDER BY p._txid, p._seq) AS rn
              FROM (SELECT * FROM parts p ORDER BY p._txid, p._seq LIMIT lim + 1) p) o$page$;
    -- one table's rows (the count's part)
    count_part CONSTANT text := '(SELECT count(*) FROM public.%I t' || rows_after || ')';
    -- the same rows' positions in order (the marks' part; the parts are merged in order)
    mark_part CONSTANT text :=
        '(SELECT t._txid, t._seq FROM public.%I t' || rows_after || ' ORDER BY t._txid, t._seq)';
    -- the marks from either statement's parts (numbered in order, every step-th kept)
    marks_of CONSTANT text := $marks$SELECT count(*),
               coalesce(json_agg(o._txid::text || ':' || o._seq::text ORDER BY o.rn)
                            FILTER (WHERE o.rn % step = 0 AND o.rn <= step * 10000), '[]'::json)
        INTO n, marks
        FROM (SELECT p._txid, p._seq, row_number() OVER (ORDER BY p._txid, p._seq) AS rn
              FROM (SELECT * FROM parts p ORDER BY p._txid, p._seq) p) o$marks$;
    -- a statement (%3$s) over its parts of every workspace (%1$s) or of ws (%2$s)
    by_scope CONSTANT text := $scope$IF ws IS NULL THEN
        WITH parts AS (
            %1$s
        )
        %3$s;
    ELSE
        WITH parts AS (
            %2$s
        )
        %3$s;
    END IF;$scope$;
    -- the functions' position: after the cursor's (txid, seq), below the horizon, in ws
    position CONSTANT text := $vars$
    after_txid xid8 := '0'::xid8;
    after_seq bigint := 0;
    horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    ws uuid := workspace_id;$vars$;
    -- the functions' reading of the cursor (%s: the function's name in the error)
    read_cursor CONSTANT text := $read$
    IF coalesce(cursor, '') <> '' THEN
        IF cursor !~ '^[0-9]{1,20}:[0-9]{1,19}$' THEN
            RAISE EXCEPTION '%s: bad cursor %%', cursor USING ERRCODE = 'invalid_parameter_value';
        END IF;
        after_txid := split_part(cursor, ':', 1)::xid8;
        after_seq := split_part(cursor, ':', 2)::bigint;
    END IF;$read$;
    across text;
    one text;
    across_count text;
    one_count text;
    across_marks text;
    one_marks text;
BEGIN
    SELECT string_agg(format(part, s.tbl, s.ws_col, s.tbl, ''), E'\n            UNION ALL\n            '
                      ORDER BY s.n),
           string_agg(format(part, s.tbl, s.ws_col, s.tbl, format(' AND t.%I = ws', s.ws_col)),
                      E'\n            UNION ALL\n            ' ORDER BY s.n),
           string_agg(format(count_part, s.tbl, ''), ' + ' ORDER BY s.n),
           string_agg(format(count_part, s.tbl, format(' AND t.%I = ws', s.ws_col)), ' + '
                      ORDER BY s.n),
           string_agg(format(mark_part, s.tbl, ''), E'\n            UNION ALL\n            '
                      ORDER BY s.n),
           string_agg(format(mark_part, s.tbl, format(' AND t.%I = ws', s.ws_col)),
                      E'\n            UNION ALL\n            ' ORDER BY s.n)
    INTO across, one, across_count, one_count, across_marks, one_marks
    FROM (SELECT u.tbl, u.n,
                 CASE WHEN u.tbl = 'workspaces' THEN 'id' ELSE 'workspace_id' END AS ws_col
          FROM unnest(public.sync_tables()) WITH ORDINALITY AS u(tbl, n)) s;

    IF (SELECT p.prorettype FROM pg_proc p
        WHERE p.oid = to_regprocedure('public.sync_pull(text, integer, uuid)')) = 'jsonb'::regtype THEN
        DROP FUNCTION public.sync_pull(text, integer, uuid);
    END IF;

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION public.sync_pull(
    cursor text DEFAULT NULL, "limit" integer DEFAULT 1000, workspace_id uuid DEFAULT NULL
) RETURNS json
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $body$
DECLARE%3$s
    lim integer := least(coalesce("limit", 1000), 10000);
    page json;
    n integer;  -- rows taken: lim + 1 when there are more
    txids xid8[];
    seqs bigint[];
    last text;
BEGIN
    IF lim < 1 THEN
        RAISE EXCEPTION 'sync_pull: limit must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
%2$s

    -- o: the first lim + 1 rows in (_txid, _seq) order, numbered; rows 1..lim are the page.
    %1$s

    IF n > 0 THEN  -- the cursor: the last row served
        last := txids[least(n, lim)]::text || ':' || seqs[least(n, lim)]::text;
    END IF;
    RETURN json_build_object(
        'cursor', coalesce(last, nullif(cursor, '')), 'has_more', n > lim, 'changes', page);
END
$body$;
REVOKE EXECUTE ON FUNCTION public.sync_pull(text, integer, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.sync_pull(text, integer, uuid) TO authenticated, service_role;
$f$, format(by_scope, across, one, page_of), format(read_cursor, 'sync_pull'), position);

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION public.sync_pull_count(
    cursor text DEFAULT NULL, workspace_id uuid DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $body$
DECLARE%4$s
BEGIN%3$s
    IF ws IS NULL THEN
        RETURN %1$s;
    END IF;
    RETURN %2$s;
END
$body$;
REVOKE EXECUTE ON FUNCTION public.sync_pull_count(text, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.sync_pull_count(text, uuid) TO authenticated, service_role;
$f$, across_count, one_count, format(read_cursor, 'sync_pull_count'), position);

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION public.sync_pull_marks(
    cursor text DEFAULT NULL, step integer DEFAULT 1000, workspace_id uuid DEFAULT NULL
) RETURNS json
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $body$
DECLARE%3$s
    n bigint;
    marks json;
BEGIN
    IF step IS NULL OR step < 1 OR step > 10000 THEN
        RAISE EXCEPTION 'sync_pull_marks: step must be 1 to 10000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;%2$s
    %1$s
    RETURN json_build_object('count', n, 'marks', marks);
END
$body$;
REVOKE EXECUTE ON FUNCTION public.sync_pull_marks(text, integer, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.sync_pull_marks(text, integer, uuid) TO authenticated, service_role;
$f$, format(by_scope, across_marks, one_marks, marks_of), format(read_cursor, 'sync_pull_marks'),
       position);
END
$generate$;
REVOKE EXECUTE ON FUNCTION public.sync_define_pull() FROM PUBLIC, anon, authenticated, service_role;

SELECT public.sync_define_pull();
