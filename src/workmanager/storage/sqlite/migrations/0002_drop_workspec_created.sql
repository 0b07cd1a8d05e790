-- The dashboard's work table pages by id (keyset on the primary key, newest first): work ids
-- are UUIDv7, whose text sorts in creation order. The creation-order index served only that
-- page, and every enqueue wrote it: one B-tree page less per enqueue commit without it.
DROP INDEX IF EXISTS workspec_created;
