-- The task queue picks the next due task by status, then highest priority, then oldest id;
-- linked-folder lookups find a workspace by path.
CREATE INDEX tasks_queue ON tasks (status, priority DESC, id);
CREATE INDEX workspaces_path ON workspaces (path) WHERE path IS NOT NULL;
