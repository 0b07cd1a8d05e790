-- A worker's name is no longer a worktag row. Every request carries its worker's name as a
-- tag (as Android adds the worker's class name), so every enqueue wrote one worktag row more:
-- a quarter of SQLite's work for a plain insert and a page more to write per commit. The claim
-- index now leads with the worker's name after the state, and a lookup by tag also takes
-- the rows of a worker of that name from it (one index range per state).
--
-- Claims walk that index name by name and merge the names in due order (a compound SELECT
-- ordered by next_run_time: SQLite merges the ranges and stops at the limit), so a claim
-- still reads only the rows it takes (storage/sqlite/__init__.py, _per_name).
DROP INDEX workspec_state_next_run;
CREATE INDEX workspec_state_worker_next_run ON workspec (state, worker_name, next_run_time);

DELETE FROM worktag
WHERE EXISTS (SELECT 1 FROM workspec w WHERE w.id = worktag.work_id AND w.worker_name = worktag.tag);

-- The WHEN skips the trigger for the usual row, tagged with its worker's name alone (where
-- Python's JSON and SQLite's differ, as for a name beyond ASCII, the body filters the name).
DROP TRIGGER workspec_insert_tags;
CREATE TRIGGER workspec_insert_tags AFTER INSERT ON workspec
WHEN NEW.tags <> json_array(NEW.worker_name) BEGIN
    INSERT OR IGNORE INTO worktag (tag, work_id)
    SELECT value, NEW.id FROM json_each(NEW.tags) WHERE value <> NEW.worker_name;
END;
