-- Every statement the SQLite backend runs, by name. Placeholders are sqlite3's :name.
-- A state change is one statement guarded by the state it expects, so a lost race is a no-op.

-- name: work_insert
-- Positional, in NewWork's field order (tags as JSON): the hottest statement there is.
INSERT INTO workspec (
    id, worker_name, state, input, input_merger, initial_delay_ms, interval_ms, flex_ms,
    required_network_type, requires_charging, requires_battery_not_low, requires_device_idle,
    requires_storage_not_low, backoff_policy, backoff_delay_ms, last_enqueue_time, next_run_time,
    minimum_retention_ms, expedited, out_of_quota_policy, stop_reason, created_at, finished_at, cron,
    cron_timezone, custom_constraints, trigger_paths, trigger_update_delay_ms, trigger_max_delay_ms, tags)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: work_insert_plain
-- work_insert for a row whose other columns hold their defaults (storage.base.plain_insert_params).
INSERT INTO workspec (
    id, worker_name, state, input, input_merger, initial_delay_ms, backoff_policy, backoff_delay_ms,
    last_enqueue_time, next_run_time, minimum_retention_ms, expedited, out_of_quota_policy, stop_reason,
    created_at, trigger_update_delay_ms, trigger_max_delay_ms, tags)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: worktag_insert
INSERT OR IGNORE INTO worktag (tag, work_id) VALUES (?, ?);

-- name: workname_insert
-- The row joins the name's live chain; uniquename_lock must have run in this transaction
-- (without it the chain is NULL and the insert fails: no unique work bypasses the guard).
INSERT INTO workname (name, work_id, chain) VALUES (?1, ?2, (SELECT chain FROM uniquename WHERE name = ?1));

-- name: dependency_insert
INSERT OR IGNORE INTO dependency (work_id, prerequisite_id) VALUES (?, ?);

-- name: work_states_by_ids
SELECT id, state FROM workspec WHERE id IN (SELECT value FROM json_each(:ids));

-- name: work_claim_available
-- Claim up to :limit runnable rows for :runner_id, from the worker names this process can
-- run: one work_waiting_arm per name (:worker_name_0, :worker_name_1, ...), each a range of
-- workspec_state_worker_next_run in due order, merged by SQLite up to the limit
-- (storage/sqlite/__init__.py, _per_name, builds it). The constraint trackers'
-- answers come in as parameters (engine/constraints.py); :constraints_met_ids lists work
-- whose constraints the test driver declared met. work_next_due filters the same way.
-- Suspects: work whose process died running it before (orphan_count > 0) may have been what
-- killed it. A claim takes at most one (the earliest due), and none when :suspects is 0 (this
-- process already runs one), so two suspects never share a process and an innocent job is
-- not orphaned again and again beside a poison one. The rows are taken in the claim index's
-- order as before, and the earliest suspect among the at most :limit rows found is picked (looked for
-- only when one is among them).
UPDATE workspec
SET state = 1, run_attempt_count = run_attempt_count + 1, stop_reason = -256,
    runner_id = :runner_id, run_token = :run_token, started_at = :now
WHERE id IN (
    WITH ready AS MATERIALIZED (
        /* work_waiting_arm, once per worker name, joined by UNION ALL */
        ORDER BY next_run_time
        LIMIT :limit)
    SELECT id FROM ready
    WHERE orphan_count = 0
       OR id = (SELECT id FROM ready WHERE orphan_count > 0 ORDER BY next_run_time LIMIT 1))
RETURNING id, worker_name, input, input_merger, run_attempt_count, generation, interval_ms, run_token,
    tags,
    EXISTS (SELECT 1 FROM dependency WHERE work_id = workspec.id) AS has_prerequisites,
    required_network_type, requires_charging, requires_battery_not_low, requires_device_idle,
    requires_storage_not_low, expedited, custom_constraints, triggered_paths, orphan_count;

-- name: work_waiting_arm
-- The runnable waiting rows of one worker name due by :due_by, in due order (an index range).
SELECT id, orphan_count, next_run_time FROM workspec
        WHERE state = 0 AND worker_name = :worker_name AND (orphan_count = 0 OR :suspects)
          AND next_run_time <= :due_by
          AND ((required_network_type = 0
                OR (required_network_type = 1 AND :net_connected)
                OR (required_network_type IN (2, 5) AND :net_unmetered)
                OR (required_network_type = 3 AND :net_not_roaming)
                OR (required_network_type = 4 AND :net_metered))
               AND (requires_charging = 0 OR :charging)
               AND (requires_battery_not_low = 0 OR :battery_not_low)
               AND (requires_device_idle = 0 OR :device_idle)
               AND (requires_storage_not_low = 0 OR :storage_not_low)
               AND (custom_constraints IS NULL OR :custom_met IS NULL OR NOT EXISTS (
                    SELECT 1 FROM json_each(custom_constraints) AS c
                    WHERE c.value NOT IN (SELECT value FROM json_each(:custom_met))))
               OR id IN (SELECT value FROM json_each(:constraints_met_ids)))

-- name: work_claim_expedited
-- work_claim_available for expedited work only, claimed first: a partial index holds just
-- the waiting expedited rows.
UPDATE workspec
SET state = 1, run_attempt_count = run_attempt_count + 1, stop_reason = -256,
    runner_id = :runner_id, run_token = :run_token, started_at = :now
WHERE id IN (
    WITH ready AS MATERIALIZED (
        SELECT id, orphan_count, next_run_time FROM workspec INDEXED BY workspec_expedited_due
        WHERE state = 0 AND (orphan_count = 0 OR :suspects) AND expedited = 1 AND next_run_time <= :now
          AND (:names IS NULL OR worker_name IN (SELECT value FROM json_each(:names)))
          AND ((required_network_type = 0
                OR (required_network_type = 1 AND :net_connected)
                OR (required_network_type IN (2, 5) AND :net_unmetered)
                OR (required_network_type = 3 AND :net_not_roaming)
                OR (required_network_type = 4 AND :net_metered))
               AND (requires_charging = 0 OR :charging)
               AND (requires_battery_not_low = 0 OR :battery_not_low)
               AND (requires_device_idle = 0 OR :device_idle)
               AND (requires_storage_not_low = 0 OR :storage_not_low)
               AND (custom_constraints IS NULL OR :custom_met IS NULL OR NOT EXISTS (
                    SELECT 1 FROM json_each(custom_constraints) AS c
                    WHERE c.value NOT IN (SELECT value FROM json_each(:custom_met))))
               OR id IN (SELECT value FROM json_each(:constraints_met_ids)))
        ORDER BY next_run_time
        LIMIT :limit)
    SELECT id FROM ready
    WHERE orphan_count = 0
       OR id = (SELECT id FROM ready WHERE orphan_count > 0 ORDER BY next_run_time LIMIT 1))
RETURNING id, worker_name, input, input_merger, run_attempt_count, generation, interval_ms, run_token,
    tags,
    EXISTS (SELECT 1 FROM dependency WHERE work_id = workspec.id) AS has_prerequisites,
    required_network_type, requires_charging, requires_battery_not_low, requires_device_idle,
    requires_storage_not_low, expedited, custom_constraints, triggered_paths, orphan_count;

-- name: work_next_due
-- When the earliest waiting work (this process can run) becomes due: work_waiting_arm per
-- worker name, merged, the first row.
SELECT next_run_time,
    -- Whether any expedited work waits (the partial index answers): if none, the dispatcher
    -- skips the expedited claim. INDEXED BY: left to itself the planner walks every waiting
    -- row by the claim index (state = 0) to look for one that is expedited.
    EXISTS (SELECT 1 FROM workspec INDEXED BY workspec_expedited_due WHERE state = 0 AND expedited = 1)
        AS expedited_waiting
FROM (
    /* work_waiting_arm, once per worker name, joined by UNION ALL */
    ORDER BY next_run_time
    LIMIT 1);

-- name: work_waiting_names
-- The worker names that have waiting work, each found by one seek of the claim index (a
-- loose index scan): for a process that can run any name.
WITH RECURSIVE waiting(name) AS (
    SELECT (SELECT min(worker_name) FROM workspec WHERE state = 0)
    UNION ALL
    SELECT (SELECT min(worker_name) FROM workspec WHERE state = 0 AND worker_name > waiting.name)
    FROM waiting WHERE waiting.name IS NOT NULL)
SELECT name FROM waiting WHERE name IS NOT NULL;

-- name: work_prerequisite_outputs
SELECT p.output FROM dependency d JOIN workspec p ON p.id = d.prerequisite_id WHERE d.work_id = :id;

-- name: work_schedule_fields
-- What the engine needs to compute the next run of a running row.
SELECT interval_ms, flex_ms, initial_delay_ms, backoff_policy, backoff_delay_ms, last_enqueue_time,
    period_count, run_attempt_count, next_schedule_time_override, cron, cron_timezone
FROM workspec WHERE id = :id;

-- name: work_succeed_if_running
UPDATE workspec
SET state = 2, output = :output, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL, orphan_count = 0,
    finished_at = :now
WHERE id = :id AND state = 1 AND run_token = :run_token;

-- name: work_fail_if_running
UPDATE workspec
SET state = 3, output = :output, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL, orphan_count = 0,
    finished_at = :now
WHERE id = :id AND state = 1 AND run_token = :run_token;

-- name: work_enqueue_if_running
-- Back to ENQUEUED: retry, the next period, or a stop.
UPDATE workspec
SET state = 0, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL, orphan_count = 0,
    run_attempt_count = :run_attempt_count, last_enqueue_time = :last_enqueue_time,
    next_run_time = :next_run_time, period_count = :period_count, stop_reason = :stop_reason,
    next_schedule_time_override = :next_schedule_time_override
WHERE id = :id AND state = 1 AND run_token = :run_token;

-- name: work_progress_set_if_running
UPDATE workspec SET progress = :progress WHERE id = :id AND state = 1 AND run_token = :run_token;

-- name: dependency_unblock
-- BLOCKED dependents of :id whose prerequisites all SUCCEEDED become ENQUEUED;
-- the initial delay counts from now, as on Android.
UPDATE workspec
SET state = 0, last_enqueue_time = :now, next_run_time = :now + initial_delay_ms
WHERE id IN (SELECT work_id FROM dependency WHERE prerequisite_id = :id)
  AND +state = 4  -- '+': drive the search from the dependency index, not from all BLOCKED rows
  AND NOT EXISTS (SELECT 1 FROM dependency d JOIN workspec p ON p.id = d.prerequisite_id
                  WHERE d.work_id = workspec.id AND p.state != 2);

-- name: dependency_fail_dependents
-- Work that never left BLOCKED has no enqueue time (-1): it gets one now, or the prune would
-- take it at once instead of after its retention.
-- Every transitive dependent of :id that is not finished becomes FAILED.
WITH RECURSIVE dependent(id) AS (
    SELECT work_id FROM dependency WHERE prerequisite_id = :id
    UNION
    SELECT d.work_id FROM dependency d JOIN dependent ON d.prerequisite_id = dependent.id)
UPDATE workspec SET state = 3, finished_at = :now, last_enqueue_time = CASE WHEN last_enqueue_time < 0 THEN :now ELSE last_enqueue_time END, next_run_time = :never, runner_id = NULL
WHERE id IN (SELECT id FROM dependent) AND state NOT IN (2, 3, 5)
RETURNING id;

-- name: work_cancel_tree
-- Cancel the roots (a JSON list of ids) and every transitive dependent that is not finished.
-- A finished root is not changed, but its dependents are (Android's cancel by id).
WITH RECURSIVE target(id) AS (
    SELECT value FROM json_each(:ids)
    UNION
    SELECT d.work_id FROM dependency d JOIN target ON d.prerequisite_id = target.id)
UPDATE workspec
SET state = 5, stop_reason = 1, finished_at = :now,
    last_enqueue_time = CASE WHEN last_enqueue_time < 0 THEN :now ELSE last_enqueue_time END, next_run_time = :never, progress = NULL, foreground = NULL
WHERE id IN (SELECT id FROM target) AND state NOT IN (2, 3, 5)
RETURNING id, runner_id;

-- name: work_unfinished_ids_by_tag
-- The tag's worktag rows, and the work of a worker of that name (the claim index, by state):
-- worktag holds no row for a work's own worker name (migration 0005), so none comes twice.
SELECT work_id FROM worktag t JOIN workspec w ON w.id = t.work_id
WHERE t.tag = :tag AND w.state NOT IN (2, 3, 5)
UNION ALL
SELECT id FROM workspec WHERE state IN (0, 1, 4) AND worker_name = :tag;

-- name: work_unfinished_ids_by_name
SELECT work_id FROM workname n JOIN workspec w ON w.id = n.work_id
WHERE n.name = :name AND w.state NOT IN (2, 3, 5);

-- name: work_unfinished_ids
SELECT id FROM workspec WHERE state IN (0, 1, 4);

-- name: work_owned_states
-- For running work of this process: has anyone else changed it (cancel, replace, rescue)?
SELECT id, state, run_token, stop_reason FROM workspec WHERE id IN (SELECT value FROM json_each(:ids));

-- name: work_info_by_id
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w WHERE w.id = :id;

-- name: work_info_by_tag
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w
WHERE w.id IN (SELECT work_id FROM worktag WHERE tag = :tag
               UNION ALL
               SELECT id FROM workspec WHERE state IN (0, 1, 2, 3, 4, 5) AND worker_name = :tag)
ORDER BY w.created_at, w.id;

-- name: work_info_by_name
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workname n JOIN workspec w ON w.id = n.work_id WHERE n.name = :name
ORDER BY w.created_at, w.id;

-- name: work_info_query
-- A WorkQuery: each component is a JSON list, or NULL when absent.
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w
WHERE (:ids IS NULL OR w.id IN (SELECT value FROM json_each(:ids)))
  AND (:states IS NULL OR w.state IN (SELECT value FROM json_each(:states)))
  AND (:tags IS NULL OR w.id IN (
        SELECT work_id FROM worktag WHERE tag IN (SELECT value FROM json_each(:tags))
        UNION ALL
        SELECT id FROM workspec
        WHERE state IN (0, 1, 2, 3, 4, 5) AND worker_name IN (SELECT value FROM json_each(:tags))))
  AND (:names IS NULL OR w.id IN (SELECT work_id FROM workname
                                  WHERE name IN (SELECT value FROM json_each(:names))))
ORDER BY w.created_at, w.id;

-- name: work_info_query_by_ids
-- work_info_query for a WorkQuery of ids (and perhaps states): each row by its primary key.
-- In work_info_query, "(:ids IS NULL OR ...)" gave SQLite no index path, given or not: it
-- read every row (50,000 rows: 7 ms for one id, 0.03 ms here).
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w
WHERE w.id IN (SELECT value FROM json_each(:ids))
  AND (:states IS NULL OR w.state IN (SELECT value FROM json_each(:states)))
ORDER BY w.created_at, w.id;

-- name: work_info_query_by_states
-- work_info_query for a WorkQuery of states only: each state's range of the claim index.
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w
WHERE w.state IN (SELECT value FROM json_each(:states))
ORDER BY w.created_at, w.id;

-- name: work_count_by_state
SELECT state, count(*) FROM workspec GROUP BY state;

-- name: work_list
-- For the command line: newest first (or oldest first), filtered by any of state, tag,
-- unique name and worker name.
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags
FROM workspec w
WHERE (:state IS NULL OR w.state = :state)
  AND (:worker IS NULL OR w.worker_name = :worker)
  AND (:tag IS NULL OR w.worker_name = :tag OR w.id IN (SELECT work_id FROM worktag WHERE tag = :tag))
  AND (:name IS NULL OR w.id IN (SELECT work_id FROM workname WHERE name = :name))
ORDER BY CASE WHEN :oldest_first THEN w.created_at ELSE -w.created_at END, w.id
LIMIT :limit;

-- name: work_detail
SELECT * FROM workspec WHERE id = :id;

-- name: runner_upsert
INSERT OR REPLACE INTO runner (id, host, boot_id, pid, process_started, started_at, heartbeat_at, workers,
    heartbeat_mono)
VALUES (:id, :host, :boot_id, :pid, :process_started, :now, :now, :workers, :mono);

-- name: runner_heartbeat
UPDATE runner SET heartbeat_at = :now, heartbeat_mono = :mono WHERE id = :id;

-- name: runner_delete
DELETE FROM runner WHERE id = :id;

-- name: runner_list
SELECT id, host, boot_id, pid, process_started, started_at, heartbeat_at, workers, heartbeat_mono FROM runner;

-- name: work_running_runner_ids
SELECT DISTINCT runner_id FROM workspec WHERE state = 1;

-- name: work_rescue_runner
-- Running work of a dead process: back to ENQUEUED at once (its attempt counted), or FAILED
-- once it has been orphaned :max_orphaned_runs times in a row (a crash loop).
-- INDEXED BY: without statistics the planner would walk every RUNNING row of the claim
-- index (state = 1) rather than this process's entries of the partial index.
UPDATE workspec INDEXED BY workspec_running
SET state = CASE WHEN orphan_count + 1 >= :max_orphaned_runs THEN 3 ELSE 0 END,
    stop_reason = CASE WHEN orphan_count + 1 >= :max_orphaned_runs THEN -129 ELSE -512 END,
    output = CASE WHEN orphan_count + 1 >= :max_orphaned_runs THEN :lost_output ELSE output END,
    finished_at = CASE WHEN orphan_count + 1 >= :max_orphaned_runs THEN :now ELSE finished_at END,
    next_run_time = CASE WHEN orphan_count + 1 >= :max_orphaned_runs THEN :never ELSE :now END,
    orphan_count = orphan_count + 1, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL
WHERE state = 1 AND runner_id IS :runner_id
RETURNING id, state;

-- name: work_prune_finished
-- Finished work none of whose dependents is unfinished; :older_than limits it to work whose
-- last enqueue plus its retention is older than that (automatic pruning), NULL prunes all.
-- One range on workspec_finished_expiry either way (an "IS NULL OR" would hide the index;
-- without INDEXED BY the planner prefers the equality on state of the claim index,
-- which walks every finished row). The state test is the index's condition word for word:
-- SQLite matches a partial index by its expression, and "state IN (2, 3, 5)" is not it.
DELETE FROM workspec INDEXED BY workspec_finished_expiry
WHERE (state = 2 OR state = 3 OR state = 5)
  AND last_enqueue_time + minimum_retention_ms < coalesce(:older_than, 9223372036854775807)
  AND NOT EXISTS (SELECT 1 FROM dependency d JOIN workspec w2 ON w2.id = d.work_id
                  WHERE d.prerequisite_id = workspec.id AND w2.state NOT IN (2, 3, 5));

-- name: preference_get
SELECT value FROM preference WHERE key = :key;

-- name: preference_set
INSERT OR REPLACE INTO preference (key, value) VALUES (:key, :value);

-- name: work_set_next_run_time_if_enqueued
UPDATE workspec SET next_run_time = :next_run_time WHERE id = :id AND state = 0;

-- Unique work and continuations (engine/enqueue.py) ------------------------------------------

-- name: uniquename_lock
-- The guard every unique enqueue passes first: creates the name's row (with :chain as its
-- live chain) or touches it, which on PostgreSQL holds its row lock to the end of the
-- transaction. Returns the live chain.
INSERT INTO uniquename (name, chain) VALUES (:name, :chain)
ON CONFLICT (name) DO UPDATE SET chain = uniquename.chain
RETURNING chain;

-- name: uniquename_set_chain
-- Start a new chain for the name. Fails (foreign key) while any row of the old chain is left.
UPDATE uniquename SET chain = :chain WHERE name = :name;

-- name: workname_states
-- Every row with the name (finished ones too, until pruned), and whether anything depends
-- on it: the input of the ExistingWorkPolicy decision.
SELECT w.id, w.state, EXISTS (SELECT 1 FROM dependency d WHERE d.prerequisite_id = w.id)
FROM workname n JOIN workspec w ON w.id = n.work_id
WHERE n.name = :name
ORDER BY w.created_at, w.id;

-- name: work_delete
-- REPLACE and its kin delete the old rows; names, dependencies and tags go with them.
DELETE FROM workspec WHERE id IN (SELECT value FROM json_each(:ids));

-- name: work_update_target
-- What update_work needs to know about the row it replaces.
SELECT state, generation, tags, interval_ms, flex_ms, initial_delay_ms, backoff_policy,
    backoff_delay_ms, last_enqueue_time, period_count, run_attempt_count,
    next_schedule_time_override, next_run_time
FROM workspec WHERE id = :id;

-- name: work_update_if_unchanged
-- update_work: the new request's spec over the row, keeping its state, attempts, enqueue
-- time and period count; generation + 1. Guarded by the state and generation just read.
UPDATE workspec
SET worker_name = :worker_name, input = :input, input_merger = :input_merger,
    initial_delay_ms = :initial_delay_ms, interval_ms = :interval_ms, flex_ms = :flex_ms,
    required_network_type = :required_network_type, requires_charging = :requires_charging,
    requires_battery_not_low = :requires_battery_not_low, requires_device_idle = :requires_device_idle,
    requires_storage_not_low = :requires_storage_not_low, backoff_policy = :backoff_policy,
    backoff_delay_ms = :backoff_delay_ms, minimum_retention_ms = :minimum_retention_ms,
    expedited = :expedited, out_of_quota_policy = :out_of_quota_policy, tags = :tags,
    next_run_time = :next_run_time, generation = generation + 1
WHERE id = :id AND state = :state AND generation = :generation;

-- name: worktag_delete
DELETE FROM worktag WHERE work_id = :id AND tag IN (SELECT value FROM json_each(:tags));

-- name: expedited_usage_add
INSERT INTO expedited_usage (finished_at, duration_ms) VALUES (:now, :duration_ms);

-- name: expedited_usage_since
SELECT coalesce(sum(duration_ms), 0) FROM expedited_usage WHERE finished_at > :since;

-- name: expedited_usage_prune
DELETE FROM expedited_usage WHERE finished_at <= :before;

-- name: work_oldest_waiting
-- For diagnostics: the waiting work that has been due longest.
SELECT id, worker_name, next_run_time, created_at, run_attempt_count, required_network_type,
    requires_charging, requires_battery_not_low, requires_device_idle, requires_storage_not_low
FROM workspec WHERE id IN (SELECT id FROM (
    /* work_waiting_arm, once per worker name, joined by UNION ALL */
    ORDER BY next_run_time
    LIMIT :limit))
ORDER BY next_run_time;

-- name: work_waiting_worker_names
-- For diagnostics: how much waiting work each worker name has.
SELECT worker_name, count(*) FROM workspec WHERE state = 0 GROUP BY worker_name;

-- name: work_foreground_set_if_running
UPDATE workspec SET foreground = :foreground WHERE id = :id AND state = 1 AND run_token = :run_token;

-- name: work_trigger_waiting
-- INDEXED BY: left to itself the planner walks every waiting row by the claim index
-- (state = 0) to find the few with trigger paths (seconds at a million waiting rows, re-read
-- after every burst of commits by the trigger watcher).
SELECT id, trigger_paths, triggered_paths FROM workspec INDEXED BY workspec_trigger_waiting
WHERE state = 0 AND trigger_paths IS NOT NULL;

-- name: work_trigger_fire
-- A change under the work's trigger paths: due once changes pause for the update delay, and
-- no later than the max delay after the first change (Android's content URI triggers).
UPDATE workspec
SET trigger_first_change = coalesce(trigger_first_change, :now),
    next_run_time = min(:now + trigger_update_delay_ms,
                        coalesce(trigger_first_change, :now) + trigger_max_delay_ms),
    triggered_paths = :triggered_paths
WHERE id = :id AND state = 0 AND trigger_paths IS NOT NULL;

-- name: work_release_unlaunched
-- RUNNING rows claimed by this process that it is not running: a claim whose commit
-- succeeded while its answer was lost (the database restarted). Back to ENQUEUED at once;
-- the attempt was never started, so it is not counted. INDEXED BY: as work_rescue_runner.
UPDATE workspec INDEXED BY workspec_running
SET state = 0, run_attempt_count = run_attempt_count - 1, next_run_time = :now,
    runner_id = NULL, run_token = NULL, stop_reason = -512
WHERE state = 1 AND runner_id = :runner_id AND id NOT IN (SELECT value FROM json_each(:running));

-- The dashboard. Its work table is newest first by id, a page below the cursor (:before_id,
-- the last id shown) at a time: keyset pagination, so a deep page costs what the first one
-- does. Generated ids are UUIDv7, whose text sorts in creation order; an id the user set
-- sorts by its text. The first page (:before_id NULL) starts at the largest id, included
-- (no constant is above every id under every PostgreSQL collation, and the statements say
-- the same on both backends): "id <= coalesce(:before_id, max) AND id IS NOT :before_id" is
-- one index range either way. Which index drives the page is the caller's choice (the
-- dashboard probes how many rows a filter matches with the *_count_upto queries): work_page
-- walks the primary key and checks filters on the way, fast unless a filter is rare; the
-- others start from a rare filter's own index (the tag's and the name's carry the id, so
-- they walk in id order too; the state's is sorted). Every value is a bound parameter.

-- name: work_page
-- Walks no further back than the floor (work_page_floor), so a filter whose matches are all
-- far back costs one window of rows, not the whole table; the page then says so.
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM workspec w
WHERE w.id <= coalesce(:before_id, (SELECT max(id) FROM workspec))
  AND w.id IS NOT :before_id
  AND w.id >= :floor_id
  AND (:state IS NULL OR w.state = :state)
  AND (:worker IS NULL OR w.worker_name = :worker)
  AND (:tag IS NULL OR w.worker_name = :tag
       OR EXISTS (SELECT 1 FROM worktag t WHERE t.tag = :tag AND t.work_id = w.id))
  AND (:name IS NULL OR EXISTS (SELECT 1 FROM workname n WHERE n.name = :name AND n.work_id = w.id))
ORDER BY w.id DESC
LIMIT :limit;

-- name: work_page_in_state
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM workspec w INDEXED BY workspec_state_worker_next_run
WHERE w.state = :state
  AND w.id <= coalesce(:before_id, (SELECT max(id) FROM workspec))
  AND w.id IS NOT :before_id
  AND (:worker IS NULL OR w.worker_name = :worker)
  AND (:tag IS NULL OR w.worker_name = :tag
       OR EXISTS (SELECT 1 FROM worktag t WHERE t.tag = :tag AND t.work_id = w.id))
  AND (:name IS NULL OR EXISTS (SELECT 1 FROM workname n WHERE n.name = :name AND n.work_id = w.id))
ORDER BY w.id DESC
LIMIT :limit;

-- name: work_page_with_tag
-- Only for a tag that is no worker's name (worktag_count_upto sees to it: worktag holds no
-- entry for a worker's name).
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM worktag t CROSS JOIN workspec w  -- CROSS: start from the tag's entries
WHERE t.tag = :tag AND w.id = t.work_id
  AND t.work_id <= coalesce(:before_id, (SELECT max(id) FROM workspec))
  AND t.work_id IS NOT :before_id
  AND (:state IS NULL OR +w.state = :state)
  AND (:worker IS NULL OR w.worker_name = :worker)
  AND (:name IS NULL OR EXISTS (SELECT 1 FROM workname n WHERE n.name = :name AND n.work_id = w.id))
ORDER BY t.work_id DESC
LIMIT :limit;

-- name: work_page_with_name
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM workname n CROSS JOIN workspec w  -- CROSS: start from the name's entries
WHERE n.name = :name AND w.id = n.work_id
  AND n.work_id <= coalesce(:before_id, (SELECT max(id) FROM workspec))
  AND n.work_id IS NOT :before_id
  AND (:state IS NULL OR +w.state = :state)
  AND (:worker IS NULL OR w.worker_name = :worker)
  AND (:tag IS NULL OR w.worker_name = :tag
       OR EXISTS (SELECT 1 FROM worktag t WHERE t.tag = :tag AND t.work_id = w.id))
ORDER BY n.work_id DESC
LIMIT :limit;

-- name: work_page_floor
-- The id of the :scan-th row below the cursor (from the primary key alone): how far one
-- page's walk may go.
SELECT id FROM workspec
WHERE id <= coalesce(:before_id, (SELECT max(id) FROM workspec))
  AND id IS NOT :before_id
ORDER BY id DESC
LIMIT 1 OFFSET :scan - 1;

-- name: work_count_in_state_upto
-- How many rows a filter matches, counting no further than :cap (a bounded index range).
SELECT count(*) FROM (SELECT 1 FROM workspec WHERE state = :state LIMIT :cap);

-- name: worktag_count_upto
-- A worker's name counts as the cap: worktag holds no entry for it (migration 0005), so its
-- page cannot walk worktag's key in id order, and the caller walks another index.
SELECT CASE WHEN EXISTS (SELECT 1 FROM workspec WHERE state IN (0, 1, 2, 3, 4, 5) AND worker_name = :tag)
    THEN :cap
    ELSE (SELECT count(*) FROM (SELECT 1 FROM worktag WHERE tag = :tag LIMIT :cap))
END;

-- name: workname_count_upto
SELECT count(*) FROM (SELECT 1 FROM workname WHERE name = :name LIMIT :cap);

-- name: work_graph_nodes
-- The chain or join graph around :id: every row connected to it by dependencies, either
-- way, up to :cap rows (each step follows an index: the primary key or dependency_prerequisite).
WITH RECURSIVE component(id) AS (
    SELECT :id
    UNION
    SELECT d.prerequisite_id FROM dependency d JOIN component c ON d.work_id = c.id
    UNION
    SELECT d.work_id FROM dependency d JOIN component c ON d.prerequisite_id = c.id
    LIMIT :cap)
SELECT w.id, w.worker_name, w.state FROM component c JOIN workspec w ON w.id = c.id;

-- name: work_graph_edges
SELECT work_id, prerequisite_id FROM dependency WHERE work_id IN (SELECT value FROM json_each(:ids));

-- name: work_unique_names
SELECT name FROM workname WHERE work_id = :id ORDER BY name;

-- name: work_oldest_due
-- Metrics: when the longest-waiting ENQUEUED work became due: the first entry of each waiting
-- worker name's range of the claim index (found as in work_waiting_names).
WITH RECURSIVE waiting(name) AS (
    SELECT (SELECT min(worker_name) FROM workspec WHERE state = 0)
    UNION ALL
    SELECT (SELECT min(worker_name) FROM workspec WHERE state = 0 AND worker_name > waiting.name)
    FROM waiting WHERE waiting.name IS NOT NULL)
SELECT min((SELECT min(next_run_time) FROM workspec WHERE state = 0 AND worker_name = waiting.name))
FROM waiting WHERE waiting.name IS NOT NULL;
