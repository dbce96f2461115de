-- Rejections by row. Each take of the outbox asks which of its rows' creates the cloud rejected
-- (daemon/store/sync_sql.py `rejected_creates_sql`), and settling a row looks up its
-- rejections. Without an index both walk the whole table: free while it is empty, but a device
-- the cloud keeps refusing (its user lost access to a linked workspace, say) files one
-- rejection per change, and at 100k of them each 500-row take spent ~37 ms on that walk, more
-- than the rest of the push's work per row (~0.4 ms with this index).
CREATE INDEX rejected_row ON rejected (row_id);
