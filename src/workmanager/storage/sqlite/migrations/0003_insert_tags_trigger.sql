-- Work is filed under its tags by the INSERT itself: a plain enqueue is then one statement,
-- its own transaction (no BEGIN and COMMIT round trips), and no insert can forget its tags.
-- Changing a row's tags later (an UPDATE of periodic work) still rewrites them explicitly.
CREATE TRIGGER workspec_insert_tags AFTER INSERT ON workspec BEGIN
    INSERT OR IGNORE INTO worktag (tag, work_id) SELECT value, NEW.id FROM json_each(NEW.tags);
END;
