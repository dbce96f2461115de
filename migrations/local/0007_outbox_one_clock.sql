-- The one-clock form of an outbox entry: `field_hlc` '{}' means "every field the entry carries
-- is under the entry's `hlc`", which is what every local write records (one clock for all it
-- writes) and every message's snapshot. Spelt out, those clocks were ~60 bytes of JSON per
-- field, about half of a new message's entry. From this version on the daemon writes the short
-- form and reads both (daemon/store/sync_outbox.py `read_outbox`); the version also keeps an
-- older daemon, which would push such an entry without its clocks, from opening this store.
--
-- Entries already waiting are rewritten where the short form means the same: a clock for
-- exactly the entry's fields, each equal to its `hlc`. Any other entry keeps its clocks.
UPDATE outbox SET field_hlc = '{}'
WHERE field_hlc <> '{}'
  AND (SELECT count(*) FROM json_each(outbox.field_hlc))
      = (SELECT count(*) FROM json_each(outbox.fields))
  AND NOT EXISTS (SELECT 1 FROM json_each(outbox.field_hlc) c WHERE c.value IS NOT outbox.hlc)
  AND NOT EXISTS (
      SELECT 1 FROM json_each(outbox.fields) f
      WHERE NOT EXISTS (SELECT 1 FROM json_each(outbox.field_hlc) c WHERE c.key = f.key)
  );
