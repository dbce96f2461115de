-- syncd cloud schema, part 7: the synced tables in Supabase Realtime's publication, so devices
-- get postgres_changes hints (they still pull: realtime is a hint, never the truth).
-- Creates the publication when absent; adding a table that is already in it is skipped.
-- (A function: 0008 calls it again after adding its tables.)

CREATE OR REPLACE FUNCTION public.sync_define_publication() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        CREATE PUBLICATION supabase_realtime;
    END IF;
    IF (SELECT puballtables FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
        RETURN;  -- FOR ALL TABLES already covers them
    END IF;
    FOREACH tbl IN ARRAY public.sync_tables() LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_publication_tables
            WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = tbl
        ) THEN
            EXECUTE format('ALTER PUBLICATION supabase_realtime ADD TABLE public.%I', tbl);
        END IF;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION public.sync_define_publication()
    FROM PUBLIC, anon, authenticated, service_role;

SELECT public.sync_define_publication();
