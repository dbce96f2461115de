-- syncd cloud schema, part 9: Realtime Authorization for the workspace channels.
--
-- The daemon joins `realtime:workspace:<id>` as a PRIVATE channel. Supabase Realtime admits a
-- private join only when the joining user may SELECT a row of realtime.messages for that topic
-- (read: receive broadcasts and presence) and accepts their broadcasts and presence only when
-- they may INSERT one (write). It asks in a rolled-back transaction as the user's role, with
-- request.jwt.claims and `realtime.topic` set to the channel's sub-topic (`workspace:<id>`).
-- The policies below allow both to the members of the organisation owning the workspace.
--
-- A hosted Supabase project already has realtime.messages and realtime.topic(); they are
-- created here only where they are missing (devcloud), with the columns Supabase's have, so
-- this file applies unchanged to both.

CREATE SCHEMA IF NOT EXISTS realtime;

DO $$
BEGIN
    IF to_regclass('realtime.messages') IS NULL THEN
        CREATE TABLE realtime.messages (
            id uuid NOT NULL DEFAULT gen_random_uuid(),
            topic text NOT NULL,
            extension text NOT NULL,
            payload jsonb,
            event text,
            private boolean DEFAULT false,
            updated_at timestamp NOT NULL DEFAULT now(),
            inserted_at timestamp NOT NULL DEFAULT now(),
            PRIMARY KEY (id, inserted_at)
        );
        ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
        GRANT USAGE ON SCHEMA realtime TO anon, authenticated, service_role;
        GRANT SELECT, INSERT, UPDATE ON realtime.messages TO anon, authenticated, service_role;
    END IF;
    IF to_regprocedure('realtime.topic()') IS NULL THEN
        CREATE FUNCTION realtime.topic() RETURNS text
        LANGUAGE sql STABLE AS 'SELECT nullif(current_setting(''realtime.topic'', true), '''')';
        GRANT EXECUTE ON FUNCTION realtime.topic() TO anon, authenticated, service_role;
    END IF;
END
$$;

-- True when `topic` is `workspace:<uuid>` and the caller is a member of the organisation owning
-- that workspace (the membership check of 0002). Any other topic: false, never an error.
CREATE OR REPLACE FUNCTION public.member_of_workspace_topic(topic text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    IF topic IS NULL OR topic !~* '^workspace:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RETURN false;
    END IF;
    RETURN substr(topic, 11)::uuid IN (SELECT public.member_workspace_ids());
END
$$;

DROP POLICY IF EXISTS syncd_workspace_channel_read ON realtime.messages;
CREATE POLICY syncd_workspace_channel_read ON realtime.messages FOR SELECT TO authenticated
    USING (
        extension IN ('broadcast', 'presence')
        AND (SELECT public.member_of_workspace_topic(realtime.topic()))
    );
DROP POLICY IF EXISTS syncd_workspace_channel_write ON realtime.messages;
CREATE POLICY syncd_workspace_channel_write ON realtime.messages FOR INSERT TO authenticated
    WITH CHECK (
        extension IN ('broadcast', 'presence')
        AND (SELECT public.member_of_workspace_topic(realtime.topic()))
    );
