-- A change the cloud refused as `clock_skew` (its clock more than an hour ahead of the cloud's)
-- is not refused for good: that clears by itself as time passes. Its rejection keeps, in
-- `retry_at`, when its row is to be sent again (whole, daemon/store/sync_skew.py); the other
-- rejections have none. The partial index keeps the periodic look for due rows free while
-- there are none (every other rejection stays out of it).
--
-- Rejections filed before this version are retried at the first look: a refusal that still
-- holds is filed again, with its time.
ALTER TABLE rejected ADD COLUMN retry_at TEXT;
UPDATE rejected SET retry_at = created_at WHERE reason = 'clock_skew';
CREATE INDEX rejected_retry ON rejected (workspace_id, retry_at) WHERE retry_at IS NOT NULL;
