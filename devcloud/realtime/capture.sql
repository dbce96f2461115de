-- devcloud Realtime change capture (devcloud only; the real Realtime reads the WAL instead).
--
-- Every table in publication `supabase_realtime` gets AFTER INSERT / UPDATE / DELETE statement
-- triggers (transition tables: one trigger call per statement) that announce the statement's
-- rows, in the statement's order, in as few pg_notify('devcloud_realtime', …) calls as NOTIFY's
-- payload limit allows (a 1000-row sync_push batch costs some dozens, not 1000):
--   {"schema","table","type","commit_timestamp","rows": [{"pk"[,"new"][,"old"]}, …]}
-- each row with its key and, when it fits, its row image. The server checks each image against
-- each subscriber's role, claims and SELECT policies, so row-level security decides who gets
-- it. NOTIFY payloads must stay under 8000 bytes: a row joins the current notification when it
-- fits, else starts the next one; its new row (INSERT/UPDATE) or old row (DELETE) is included
-- only when it fits in a notification of its own (otherwise the server reads the row back by
-- key under the subscriber's claims), and a row whose key alone is too large is announced with
-- an empty key (the server logs and drops such changes).
-- Partitions and inheritance children get a row trigger instead (see attach()): the same shape,
-- one row per notification.
--
-- NOTIFY payloads are visible to every session that LISTENs on the channel: in devcloud only
-- the server itself connects to the database (clients speak HTTP), so row images stay inside.
--
-- Idempotent: run at every start. devcloud_realtime.attach_triggers() (re)attaches triggers to
-- tables added to the publication later and detaches them from tables removed from it; the
-- server calls it again on each join that subscribes to postgres_changes.
--
-- Nobody listening, nothing sent: each server keeps in devcloud_realtime.watched the tables its
-- postgres_changes subscribers bind to (rows keyed by the pid of its LISTEN connection, written
-- before a join is confirmed, removed soon after the last such subscriber leaves). The triggers
-- look there once per statement and skip tables no server watches, so writes to unwatched
-- tables (a sync_push batch with nobody subscribed) cost no notification and no parsing.

CREATE SCHEMA IF NOT EXISTS devcloud_realtime;
-- The triggers run as whichever role wrote the rows (anon, authenticated, …).
GRANT USAGE ON SCHEMA devcloud_realtime TO PUBLIC;

-- The tables some server delivers changes of: table_name '*' = every table of the schema.
-- Rows of a server that died (its LISTEN backend is gone) are removed by the next server that
-- updates its own rows (devcloud_realtime.watch).
CREATE TABLE IF NOT EXISTS devcloud_realtime.watched (
    schema_name text NOT NULL,
    table_name text NOT NULL,
    listener integer NOT NULL,  -- backend pid of the watching server's LISTEN connection
    PRIMARY KEY (schema_name, table_name, listener)
);
-- read by the triggers, which run as whichever role wrote the rows
GRANT SELECT ON devcloud_realtime.watched TO PUBLIC;

-- Make the tables (schemas[i], tables[i]) the watched tables of the server whose LISTEN
-- connection is backend `server_pid`, and forget those of servers that are gone.
CREATE OR REPLACE FUNCTION devcloud_realtime.watch(
    server_pid integer, schemas text[], tables text[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM devcloud_realtime.watched w
    WHERE w.listener NOT IN (SELECT a.pid FROM pg_catalog.pg_stat_activity a)
       OR (w.listener = server_pid AND (w.schema_name, w.table_name) NOT IN (
               SELECT d.s, d.t FROM unnest(schemas, tables) AS d(s, t)));
    INSERT INTO devcloud_realtime.watched (schema_name, table_name, listener)
    SELECT d.s, d.t, server_pid FROM unnest(schemas, tables) AS d(s, t)
    ON CONFLICT DO NOTHING;
END
$$;

DROP FUNCTION IF EXISTS devcloud_realtime.notification(text, text, text);

-- NOTIFY refuses payloads of 8000 bytes or more: what one notification may hold.
CREATE OR REPLACE FUNCTION devcloud_realtime.max_payload() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 7900 $$;

-- The head every notification of a statement shares: `{"schema": …, "rows": [`.
CREATE OR REPLACE FUNCTION devcloud_realtime.head(schema_name text, table_name text, op text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT left(json_build_object(
               'schema', schema_name, 'table', table_name, 'type', op,
               'commit_timestamp',
               to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text, -1)
           || ', "rows": ['
$$;

-- One element of "rows": `{"pk": <key>, "<image_key>": <image>}` when that fits in `room`
-- bytes, else `{"pk": <key>}`, else (a huge key) `{"pk": {}}`. Built as json text: this runs
-- once per changed row, and text is cheaper than jsonb here.
CREATE OR REPLACE FUNCTION devcloud_realtime.notified_row(
    key text, image_key text, image text, room integer
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN octet_length(key) + octet_length(image_key) + octet_length(image) + 16 <= room
            THEN '{"pk": ' || key || ', "' || image_key || '": ' || image || '}'
        WHEN octet_length(key) + 8 <= room THEN '{"pk": ' || key || '}'
        ELSE '{"pk": {}}'
    END
$$;

-- Send `items` (elements of "rows", each at most max_payload() - octet_length(head) - 2 bytes)
-- in their order, as many to a notification as fit.
CREATE OR REPLACE FUNCTION devcloud_realtime.notify_rows(head text, items text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    room integer := devcloud_realtime.max_payload() - octet_length(head) - 2;  -- 2: "]}"
    item text;
    pack text := '';
    used integer := 0;
BEGIN
    FOREACH item IN ARRAY coalesce(items, '{}') LOOP
        IF used > 0 AND used + 2 + octet_length(item) > room THEN
            PERFORM pg_notify('devcloud_realtime', head || pack || ']}');
            pack := '';
            used := 0;
        END IF;
        IF used > 0 THEN
            pack := pack || ', ' || item;
            used := used + 2 + octet_length(item);
        ELSE
            pack := item;
            used := octet_length(item);
        END IF;
    END LOOP;
    IF used > 0 THEN
        PERFORM pg_notify('devcloud_realtime', head || pack || ']}');
    END IF;
END
$$;

-- `json_build_object('id', r."id", …)` over the table's primary key columns, for alias r.
CREATE OR REPLACE FUNCTION devcloud_realtime.key_expression(rel oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        'json_build_object(' || string_agg(format('%L, r.%I', a.attname, a.attname), ', '
                                           ORDER BY k.ord) || ')',
        '''{}''::json')
    FROM pg_catalog.pg_index i
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = rel AND i.indisprimary
$$;

-- Statement trigger: the rows of the statement's transition table, in its order, in as few
-- notifications as fit.
CREATE OR REPLACE FUNCTION devcloud_realtime.capture_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head text;
    items text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM devcloud_realtime.watched w
                   WHERE w.schema_name = TG_TABLE_SCHEMA AND w.table_name IN (TG_TABLE_NAME, '*'))
    THEN
        RETURN NULL;  -- no server delivers changes of this table
    END IF;
    head := devcloud_realtime.head(TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP);
    -- The key and image are computed once per row in a sub-query (OFFSET 0 keeps it from being
    -- flattened): notified_row is inlined, and its arguments written into its body would be
    -- evaluated once per use (row_to_json twice per row, about half the trigger's time).
    EXECUTE format(
        'SELECT array_agg(devcloud_realtime.notified_row(s.k, $1, s.i, $2))'
        ' FROM (SELECT %s::text AS k, row_to_json(r)::text AS i FROM %I AS r OFFSET 0) AS s',
        devcloud_realtime.key_expression(TG_RELID),
        CASE WHEN TG_OP = 'DELETE' THEN 'old_rows' ELSE 'new_rows' END)
    INTO items
    USING CASE WHEN TG_OP = 'DELETE' THEN 'old' ELSE 'new' END,
          devcloud_realtime.max_payload() - octet_length(head) - 2;
    PERFORM devcloud_realtime.notify_rows(head, items);
    RETURN NULL;
END
$$;

-- Row trigger (fallback for tables that cannot have transition tables): the same shape, one row.
CREATE OR REPLACE FUNCTION devcloud_realtime.capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head text;
    image json;
    key json;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM devcloud_realtime.watched w
                   WHERE w.schema_name = TG_TABLE_SCHEMA AND w.table_name IN (TG_TABLE_NAME, '*'))
    THEN
        RETURN NULL;
    END IF;
    head := devcloud_realtime.head(TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP);
    image := row_to_json(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
    EXECUTE format('SELECT %s FROM json_populate_record(NULL::%I.%I, $1) AS r',
                   devcloud_realtime.key_expression(TG_RELID), TG_TABLE_SCHEMA, TG_TABLE_NAME)
        INTO key USING image;
    PERFORM devcloud_realtime.notify_rows(head, ARRAY[devcloud_realtime.notified_row(
        key::text, CASE WHEN TG_OP = 'DELETE' THEN 'old' ELSE 'new' END, image::text,
        devcloud_realtime.max_payload() - octet_length(head) - 2)]);
    RETURN NULL;
END
$$;

-- Statement triggers fire only for the table a statement names, so a partition or inheritance
-- child (written through its parent) gets the row trigger.
CREATE OR REPLACE FUNCTION devcloud_realtime.attach(rel regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = rel) THEN
        EXECUTE format('CREATE TRIGGER devcloud_realtime_capture'
                       ' AFTER INSERT OR UPDATE OR DELETE ON %s'
                       ' FOR EACH ROW EXECUTE FUNCTION devcloud_realtime.capture()', rel);
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('CREATE TRIGGER devcloud_realtime_insert AFTER INSERT ON %s'
                       ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION devcloud_realtime.capture_rows()', rel);
        EXECUTE format('CREATE TRIGGER devcloud_realtime_update AFTER UPDATE ON %s'
                       ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION devcloud_realtime.capture_rows()', rel);
        EXECUTE format('CREATE TRIGGER devcloud_realtime_delete AFTER DELETE ON %s'
                       ' REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION devcloud_realtime.capture_rows()', rel);
    EXCEPTION WHEN feature_not_supported OR wrong_object_type THEN
        EXECUTE format('CREATE TRIGGER devcloud_realtime_capture'
                       ' AFTER INSERT OR UPDATE OR DELETE ON %s'
                       ' FOR EACH ROW EXECUTE FUNCTION devcloud_realtime.capture()', rel);
    END;
END
$$;

CREATE OR REPLACE FUNCTION devcloud_realtime.attach_triggers() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    target record;
    attached integer := 0;
BEGIN
    FOR target IN
        SELECT c.oid AS rel
        FROM pg_catalog.pg_publication_tables p
        JOIN pg_catalog.pg_namespace n ON n.nspname = p.schemaname
        JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
        WHERE p.pubname = 'supabase_realtime' AND c.relkind = 'r'
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid
                          AND t.tgname IN ('devcloud_realtime_insert', 'devcloud_realtime_capture'))
    LOOP
        BEGIN
            PERFORM devcloud_realtime.attach(target.rel::regclass);
            attached := attached + 1;
        EXCEPTION WHEN duplicate_object THEN
            NULL;  -- another session attached them first
        END;
    END LOOP;
    FOR target IN
        SELECT DISTINCT c.oid AS rel
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE t.tgname LIKE 'devcloud\_realtime\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables p
                          WHERE p.pubname = 'supabase_realtime'
                            AND p.schemaname = n.nspname AND p.tablename = c.relname)
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS devcloud_realtime_insert ON %1$s;'
                       ' DROP TRIGGER IF EXISTS devcloud_realtime_update ON %1$s;'
                       ' DROP TRIGGER IF EXISTS devcloud_realtime_delete ON %1$s;'
                       ' DROP TRIGGER IF EXISTS devcloud_realtime_capture ON %1$s',
                       target.rel::regclass);
    END LOOP;
    RETURN attached;
END
$$;

-- Tables added to (or dropped from) the publication later: an event trigger re-attaches at once
-- where we may create one (superuser); joins re-check in any case.
CREATE OR REPLACE FUNCTION devcloud_realtime.on_publication_change() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM devcloud_realtime.attach_triggers();
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'devcloud_realtime: attaching capture triggers failed: %', SQLERRM;
END
$$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger
                       WHERE evtname = 'devcloud_realtime_publication') THEN
        CREATE EVENT TRIGGER devcloud_realtime_publication ON ddl_command_end
            WHEN TAG IN ('CREATE PUBLICATION', 'ALTER PUBLICATION')
            EXECUTE FUNCTION devcloud_realtime.on_publication_change();
    END IF;
END
$$;

SELECT devcloud_realtime.attach_triggers();
