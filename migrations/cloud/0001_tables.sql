-- syncd cloud schema, part 1: tables.
-- Idempotent (CREATE ... IF NOT EXISTS); apply the files of this folder in name order.
--
-- Synced tables (workspaces, conversations, messages, tasks) carry the sync columns:
--   hlc        text COLLATE "C"  clock of the last change: 13-digit wall ms, 6-digit counter,
--                                device id ("1763700000000-000042-<device>"); byte order = time order
--   field_hlc  jsonb             clock per field; per key for JSON-map fields ("shared_memory.<key>");
--                                '{}' with a row clock: every field carries hlc (the one-register
--                                form of 0003, e.g. a new message whose fields share one clock)
--   origin     text              device id of the last writer ("cloud" for plain REST writes)
--   _txid      xid8              writing transaction  } set by the sync_row trigger;
--   _seq       bigint            order within it      } sync_pull's gap-free cursor
-- Rows are never hard-deleted while synced: deleted_at is the tombstone.

CREATE SEQUENCE IF NOT EXISTS public.sync_seq;

CREATE TABLE IF NOT EXISTS public.profiles (
    id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    email text,
    display_name text,
    avatar_url text,
    bio text,
    preferences jsonb NOT NULL DEFAULT '{}'::jsonb,
    onboarding_completed boolean NOT NULL DEFAULT false,
    last_active_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    slug text UNIQUE,
    subscription_tier text NOT NULL DEFAULT 'free',
    subscription_status text NOT NULL DEFAULT 'active',
    max_members integer,
    max_workspaces integer,
    created_by uuid DEFAULT auth.uid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.org_memberships (
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX IF NOT EXISTS org_memberships_user_idx ON public.org_memberships (user_id, org_id);

CREATE TABLE IF NOT EXISTS public.workspaces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    slug text,
    description text,
    status text NOT NULL DEFAULT 'active',
    task_goal text,
    current_step text,
    progress_data jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(progress_data) = 'object'),
    next_steps jsonb NOT NULL DEFAULT '[]'::jsonb,
    shared_memory jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(shared_memory) = 'object'),
    created_by uuid,
    last_active_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    hlc text COLLATE "C" NOT NULL DEFAULT '',
    field_hlc jsonb NOT NULL DEFAULT '{}'::jsonb,
    origin text,
    _txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    _seq bigint NOT NULL DEFAULT nextval('public.sync_seq')
);
CREATE INDEX IF NOT EXISTS workspaces_org_idx ON public.workspaces (org_id);
CREATE INDEX IF NOT EXISTS workspaces_sync_idx ON public.workspaces (_txid, _seq);
CREATE INDEX IF NOT EXISTS workspaces_ws_sync_idx ON public.workspaces (id, _txid, _seq);

CREATE TABLE IF NOT EXISTS public.conversations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    conversation_type text NOT NULL DEFAULT 'chat',
    is_archived boolean NOT NULL DEFAULT false,
    started_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    hlc text COLLATE "C" NOT NULL DEFAULT '',
    field_hlc jsonb NOT NULL DEFAULT '{}'::jsonb,
    origin text,
    _txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    _seq bigint NOT NULL DEFAULT nextval('public.sync_seq'),
    CONSTRAINT conversations_id_workspace_id_key UNIQUE (id, workspace_id)
);
CREATE INDEX IF NOT EXISTS conversations_sync_idx ON public.conversations (_txid, _seq);
CREATE INDEX IF NOT EXISTS conversations_ws_sync_idx
    ON public.conversations (workspace_id, _txid, _seq);

CREATE TABLE IF NOT EXISTS public.messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL,
    conversation_id uuid NOT NULL,
    -- system and tool messages are local-only: they never reach the cloud
    role text NOT NULL CHECK (role IN ('user', 'assistant')),
    content text NOT NULL DEFAULT '',
    sender_user_id uuid,
    sender_agent_id uuid,
    model_used text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    hlc text COLLATE "C" NOT NULL DEFAULT '',
    field_hlc jsonb NOT NULL DEFAULT '{}'::jsonb,
    origin text,
    _txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    _seq bigint NOT NULL DEFAULT nextval('public.sync_seq'),
    -- a message lives in its conversation's workspace (one key check per insert, not two)
    CONSTRAINT messages_conversation_fkey FOREIGN KEY (conversation_id, workspace_id)
        REFERENCES public.conversations (id, workspace_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS messages_conversation_idx
    ON public.messages (conversation_id, created_at);
CREATE INDEX IF NOT EXISTS messages_sync_idx ON public.messages (_txid, _seq);
CREATE INDEX IF NOT EXISTS messages_ws_sync_idx ON public.messages (workspace_id, _txid, _seq);

-- Databases made by an earlier version of this file: the same constraints.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'conversations_id_workspace_id_key') THEN
        ALTER TABLE public.conversations
            ADD CONSTRAINT conversations_id_workspace_id_key UNIQUE (id, workspace_id);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'messages_conversation_fkey') THEN
        ALTER TABLE public.messages
            ADD CONSTRAINT messages_conversation_fkey FOREIGN KEY (conversation_id, workspace_id)
            REFERENCES public.conversations (id, workspace_id) ON DELETE CASCADE;
    END IF;
    ALTER TABLE public.messages DROP CONSTRAINT IF EXISTS messages_workspace_id_fkey;
    ALTER TABLE public.messages DROP CONSTRAINT IF EXISTS messages_conversation_id_fkey;
END
$$;

CREATE TABLE IF NOT EXISTS public.tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
    kind text NOT NULL DEFAULT '',
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    status text NOT NULL DEFAULT 'queued',
    priority integer NOT NULL DEFAULT 0,
    progress jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(progress) = 'object'),
    attempts integer NOT NULL DEFAULT 0,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    hlc text COLLATE "C" NOT NULL DEFAULT '',
    field_hlc jsonb NOT NULL DEFAULT '{}'::jsonb,
    origin text,
    _txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    _seq bigint NOT NULL DEFAULT nextval('public.sync_seq')
);
CREATE INDEX IF NOT EXISTS tasks_sync_idx ON public.tasks (_txid, _seq);
CREATE INDEX IF NOT EXISTS tasks_ws_sync_idx ON public.tasks (workspace_id, _txid, _seq);

CREATE TABLE IF NOT EXISTS public.cloud_agents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    name text NOT NULL,
    slug text NOT NULL,
    agent_type text NOT NULL DEFAULT 'assistant',
    description text,
    status text NOT NULL DEFAULT 'active',
    avatar_url text,
    system_prompt text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, slug)
);

-- Supabase grants table access to the API roles by default privileges; say it explicitly so the
-- files also work on a database whose defaults differ. Row-level security (0002) decides.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    public.profiles, public.organizations, public.org_memberships, public.workspaces,
    public.conversations, public.messages, public.tasks, public.cloud_agents
    TO anon, authenticated, service_role;
GRANT USAGE, SELECT ON SEQUENCE public.sync_seq TO anon, authenticated, service_role;
