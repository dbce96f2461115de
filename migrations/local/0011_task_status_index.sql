-- `task.list {status}` pages in id order from its cursor. tasks_queue (status, priority DESC,
-- id) orders a status's tasks by priority first, so every page read all the tasks of that
-- status and sorted them (50,000 queued tasks: 120 ms a page, the reader held meanwhile).
-- These give each filter its tasks in id order, starting at the cursor; with both filters the
-- workspace's tasks of that status only (tasks_workspace alone would walk all its tasks).
CREATE INDEX tasks_status ON tasks (status, id);
CREATE INDEX tasks_workspace_status ON tasks (workspace_id, status, id);
