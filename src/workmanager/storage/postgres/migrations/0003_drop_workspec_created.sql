-- As in SQLite's 0002: the dashboard's work table pages by id (keyset on the primary key,
-- newest first; UUIDv7 text sorts in creation order), so the creation-order index that only
-- it read, and every enqueue wrote, goes.
DROP INDEX IF EXISTS workspec_created;
