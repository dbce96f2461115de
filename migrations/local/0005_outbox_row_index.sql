-- Every local write adds an outbox entry, and every index on the outbox is one more b-tree
-- insert per write (and delete per pushed entry). outbox_row (table_name, row_id) served only
-- the pull's question "which fields of these rows have unpushed edits", which is asked only
-- for rows stored here and now walks outbox_workspace (workspace_id, id) instead: a row's
-- entries carry its workspace.
DROP INDEX outbox_row;
