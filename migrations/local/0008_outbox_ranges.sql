-- Snapshot ranges (daemon/store/sync_outbox.py): a link writes ONE outbox entry, row id '',
-- for the messages of the workspace, and the outbox count adds the messages each range has
-- left. Counting them walked every entry of the linked workspaces by rowid (no index has
-- row_id since 0005): ~7 ms per count of a 20k-entry outbox, at every status publish, against
-- ~1.5 ms with this index. It is partial, so the other entries, every local write's among
-- them, never enter it.
--
-- The version also keeps a daemon from before ranges from opening this store: it would push a
-- range entry as a message with an empty id, have it rejected, and never push the messages.
CREATE INDEX outbox_ranges ON outbox (workspace_id) WHERE row_id = '';
