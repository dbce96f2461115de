-- syncd cloud schema, part 2: row-level security.
--
-- Members of an organisation read and write that organisation's rows, nothing else. The helpers
-- below are SECURITY DEFINER with an empty search_path: they read org_memberships without going
-- through its own policies (no recursive policies) and cannot be hijacked by the caller's
-- search_path. Policies compare against `(SELECT ...)` sub-queries so PostgreSQL evaluates the
-- caller's memberships once per statement, not once per row.
-- anon has no policy anywhere, so it reaches nothing. service_role bypasses RLS (BYPASSRLS).
-- Synced tables have no DELETE policy: synced rows are soft-deleted (deleted_at), never removed,
-- or the deletion could never reach other devices.

-- (plpgsql, not sql: a sql function that cannot be inlined is planned at every call; these
-- run in every statement on the synced tables)
CREATE OR REPLACE FUNCTION public.member_org_ids() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    RETURN QUERY SELECT m.org_id FROM public.org_memberships m WHERE m.user_id = auth.uid();
END
$$;

CREATE OR REPLACE FUNCTION public.member_workspace_ids() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    RETURN QUERY
        SELECT w.id
        FROM public.workspaces w
        JOIN public.org_memberships m ON m.org_id = w.org_id
        WHERE m.user_id = auth.uid();
END
$$;

CREATE OR REPLACE FUNCTION public.org_role(org uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT m.role FROM public.org_memberships m WHERE m.org_id = org AND m.user_id = auth.uid()
$$;

-- True when the caller and `other` are both members of at least one organisation.
CREATE OR REPLACE FUNCTION public.shares_org_with(other uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT EXISTS (
        SELECT 1
        FROM public.org_memberships mine
        JOIN public.org_memberships theirs ON theirs.org_id = mine.org_id
        WHERE mine.user_id = auth.uid() AND theirs.user_id = other
    )
$$;

ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.org_memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.cloud_agents ENABLE ROW LEVEL SECURITY;

-- profiles: your own row, and the rows of people you share an organisation with; write your own.
DROP POLICY IF EXISTS profiles_select ON public.profiles;
CREATE POLICY profiles_select ON public.profiles FOR SELECT TO authenticated
    USING (id = (SELECT auth.uid()) OR public.shares_org_with(id));
DROP POLICY IF EXISTS profiles_insert ON public.profiles;
CREATE POLICY profiles_insert ON public.profiles FOR INSERT TO authenticated
    WITH CHECK (id = (SELECT auth.uid()));
DROP POLICY IF EXISTS profiles_update ON public.profiles;
CREATE POLICY profiles_update ON public.profiles FOR UPDATE TO authenticated
    USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));

-- organizations: members read; anyone signed in may create one (and becomes its owner, see the
-- trigger in 0003); owners and admins edit; owners delete.
DROP POLICY IF EXISTS organizations_select ON public.organizations;
CREATE POLICY organizations_select ON public.organizations FOR SELECT TO authenticated
    USING (id IN (SELECT public.member_org_ids()) OR created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS organizations_insert ON public.organizations;
CREATE POLICY organizations_insert ON public.organizations FOR INSERT TO authenticated
    WITH CHECK (created_by = (SELECT auth.uid()));
DROP POLICY IF EXISTS organizations_update ON public.organizations;
CREATE POLICY organizations_update ON public.organizations FOR UPDATE TO authenticated
    USING (public.org_role(id) IN ('owner', 'admin'))
    WITH CHECK (public.org_role(id) IN ('owner', 'admin'));
DROP POLICY IF EXISTS organizations_delete ON public.organizations;
CREATE POLICY organizations_delete ON public.organizations FOR DELETE TO authenticated
    USING (public.org_role(id) = 'owner');

-- org_memberships: members see their organisation's members; owners and admins manage them;
-- anyone may leave.
DROP POLICY IF EXISTS org_memberships_select ON public.org_memberships;
CREATE POLICY org_memberships_select ON public.org_memberships FOR SELECT TO authenticated
    USING (org_id IN (SELECT public.member_org_ids()));
DROP POLICY IF EXISTS org_memberships_insert ON public.org_memberships;
CREATE POLICY org_memberships_insert ON public.org_memberships FOR INSERT TO authenticated
    WITH CHECK (public.org_role(org_id) IN ('owner', 'admin'));
DROP POLICY IF EXISTS org_memberships_update ON public.org_memberships;
CREATE POLICY org_memberships_update ON public.org_memberships FOR UPDATE TO authenticated
    USING (public.org_role(org_id) IN ('owner', 'admin'))
    WITH CHECK (public.org_role(org_id) IN ('owner', 'admin'));
DROP POLICY IF EXISTS org_memberships_delete ON public.org_memberships;
CREATE POLICY org_memberships_delete ON public.org_memberships FOR DELETE TO authenticated
    USING (user_id = (SELECT auth.uid()) OR public.org_role(org_id) IN ('owner', 'admin'));

-- workspaces: the organisation's members.
DROP POLICY IF EXISTS workspaces_select ON public.workspaces;
CREATE POLICY workspaces_select ON public.workspaces FOR SELECT TO authenticated
    USING (org_id IN (SELECT public.member_org_ids()));
DROP POLICY IF EXISTS workspaces_insert ON public.workspaces;
CREATE POLICY workspaces_insert ON public.workspaces FOR INSERT TO authenticated
    WITH CHECK (org_id IN (SELECT public.member_org_ids()));
DROP POLICY IF EXISTS workspaces_update ON public.workspaces;
CREATE POLICY workspaces_update ON public.workspaces FOR UPDATE TO authenticated
    USING (org_id IN (SELECT public.member_org_ids()))
    WITH CHECK (org_id IN (SELECT public.member_org_ids()));

-- conversations, tasks: the members of the workspace's organisation.
DROP POLICY IF EXISTS conversations_select ON public.conversations;
CREATE POLICY conversations_select ON public.conversations FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS conversations_insert ON public.conversations;
CREATE POLICY conversations_insert ON public.conversations FOR INSERT TO authenticated
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS conversations_update ON public.conversations;
CREATE POLICY conversations_update ON public.conversations FOR UPDATE TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()))
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));

DROP POLICY IF EXISTS tasks_select ON public.tasks;
CREATE POLICY tasks_select ON public.tasks FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS tasks_insert ON public.tasks;
CREATE POLICY tasks_insert ON public.tasks FOR INSERT TO authenticated
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS tasks_update ON public.tasks;
CREATE POLICY tasks_update ON public.tasks FOR UPDATE TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()))
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));

-- messages: as above, and a message names the caller as its sender or no user at all.
DROP POLICY IF EXISTS messages_select ON public.messages;
CREATE POLICY messages_select ON public.messages FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()));
DROP POLICY IF EXISTS messages_insert ON public.messages;
CREATE POLICY messages_insert ON public.messages FOR INSERT TO authenticated
    WITH CHECK (
        workspace_id IN (SELECT public.member_workspace_ids())
        AND (sender_user_id IS NULL OR sender_user_id = (SELECT auth.uid()))
    );
DROP POLICY IF EXISTS messages_update ON public.messages;
CREATE POLICY messages_update ON public.messages FOR UPDATE TO authenticated
    USING (workspace_id IN (SELECT public.member_workspace_ids()))
    WITH CHECK (workspace_id IN (SELECT public.member_workspace_ids()));

-- cloud_agents: members read; owners and admins manage.
DROP POLICY IF EXISTS cloud_agents_select ON public.cloud_agents;
CREATE POLICY cloud_agents_select ON public.cloud_agents FOR SELECT TO authenticated
    USING (org_id IN (SELECT public.member_org_ids()));
DROP POLICY IF EXISTS cloud_agents_write ON public.cloud_agents;
CREATE POLICY cloud_agents_write ON public.cloud_agents FOR ALL TO authenticated
    USING (public.org_role(org_id) IN ('owner', 'admin'))
    WITH CHECK (public.org_role(org_id) IN ('owner', 'admin'));
