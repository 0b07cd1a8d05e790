-- Work is tagged with its worker's name (as Android tags it with the worker's class name),
-- and every enqueue filed a worktag row for that tag: a heap row and an index entry on the
-- server, a row to send from the client, for a fact the work row already holds. The state
-- index now carries the worker's name as well (it is written where the state index was,
-- so claims and completions write no more), and tag lookups find a worker's name there.
-- worktag keeps only the other tags: a thousand-row batch enqueue sends and stores half the
-- rows it did.
DROP INDEX IF EXISTS workspec_state;
CREATE INDEX workspec_state_worker ON workspec (state, worker_name);
DELETE FROM worktag t USING workspec w WHERE t.work_id = w.id AND t.tag = w.worker_name;
