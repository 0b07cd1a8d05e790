-- Every statement the PostgreSQL backend runs, by name: the same names as sqlite/queries.sql
-- (a test checks), then a few this backend alone needs. Placeholders are psycopg's: %(name)s,
-- or %s where the caller passes a tuple in the order of sqlite's positional statements.
-- Lists (ids, tags, names) come in as text[] / int[] arrays where SQLite takes JSON.
--
-- Under READ COMMITTED a guarded UPDATE re-checks its WHERE against the row's newest version
-- after waiting for a lock, so "state = 1 AND run_token = ..." still fences a lost race.
-- Decisions that read one row and write another (unblocking a dependent, enqueuing behind
-- a prerequisite) first lock the row they read; see the comments at those statements.

-- name: work_insert
-- Positional, in NewWork's field order (tags as JSON).
INSERT INTO workspec (
    id, worker_name, state, input, input_merger, initial_delay_ms, interval_ms, flex_ms,
    required_network_type, requires_charging, requires_battery_not_low, requires_device_idle,
    requires_storage_not_low, backoff_policy, backoff_delay_ms, last_enqueue_time, next_run_time,
    minimum_retention_ms, expedited, out_of_quota_policy, stop_reason, created_at, finished_at, cron,
    cron_timezone, custom_constraints, trigger_paths, trigger_update_delay_ms, trigger_max_delay_ms, tags)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
    %s, %s, %s, %s, %s);

-- name: work_insert_plain
-- work_insert for a row whose other columns hold their defaults (storage.base.plain_insert_params).
INSERT INTO workspec (
    id, worker_name, state, input, input_merger, initial_delay_ms, backoff_policy, backoff_delay_ms,
    last_enqueue_time, next_run_time, minimum_retention_ms, expedited, out_of_quota_policy, stop_reason,
    created_at, trigger_update_delay_ms, trigger_max_delay_ms, tags)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: work_insert_alone
-- work_insert of one row with its tags, committed on its own (an autocommit statement): the
-- common enqueue in one statement and one round trip. Parameters as work_insert's, then the
-- notification's channel and payload. The tags come from the row's own JSON list: no array
-- to build and send.
WITH inserted AS (
    INSERT INTO workspec (
        id, worker_name, state, input, input_merger, initial_delay_ms, interval_ms, flex_ms,
        required_network_type, requires_charging, requires_battery_not_low, requires_device_idle,
        requires_storage_not_low, backoff_policy, backoff_delay_ms, last_enqueue_time, next_run_time,
        minimum_retention_ms, expedited, out_of_quota_policy, stop_reason, created_at, finished_at, cron,
        cron_timezone, custom_constraints, trigger_paths, trigger_update_delay_ms, trigger_max_delay_ms, tags)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
        %s, %s, %s, %s, %s, %s)
    RETURNING id, worker_name, tags),
tagged AS (
    INSERT INTO worktag (tag, work_id)
    SELECT t.tag, inserted.id FROM inserted, jsonb_array_elements_text(inserted.tags::jsonb) AS t(tag)
    WHERE t.tag <> inserted.worker_name)
SELECT pg_notify(%s, %s) FROM inserted;

-- name: work_insert_alone_plain
-- work_insert_alone for a row whose other columns hold their defaults (as work_insert_plain).
WITH inserted AS (
    INSERT INTO workspec (
        id, worker_name, state, input, input_merger, initial_delay_ms, backoff_policy, backoff_delay_ms,
        last_enqueue_time, next_run_time, minimum_retention_ms, expedited, out_of_quota_policy,
        stop_reason, created_at, trigger_update_delay_ms, trigger_max_delay_ms, tags)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    RETURNING id, worker_name, tags),
tagged AS (
    INSERT INTO worktag (tag, work_id)
    SELECT t.tag, inserted.id FROM inserted, jsonb_array_elements_text(inserted.tags::jsonb) AS t(tag)
    WHERE t.tag <> inserted.worker_name)
SELECT pg_notify(%s, %s) FROM inserted;

-- name: work_insert_many
-- work_insert for a batch, with the batch's tags, in one statement: %(rows)s is a JSON array
-- of rows, each the parameters of work_insert in order (the tags column last). One JSON
-- text is dumped in C on the client and parsed in C on the server; thirty arrays of a
-- thousand values each were dumped element by element in Python, the larger part of a
-- batch's cost.
WITH inserted AS (
    INSERT INTO workspec (
        id, worker_name, state, input, input_merger, initial_delay_ms, interval_ms, flex_ms,
        required_network_type, requires_charging, requires_battery_not_low, requires_device_idle,
        requires_storage_not_low, backoff_policy, backoff_delay_ms, last_enqueue_time, next_run_time,
        minimum_retention_ms, expedited, out_of_quota_policy, stop_reason, created_at, finished_at, cron,
        cron_timezone, custom_constraints, trigger_paths, trigger_update_delay_ms, trigger_max_delay_ms, tags)
    SELECT r->>0, r->>1, (r->>2)::smallint, r->>3, r->>4, (r->>5)::bigint, (r->>6)::bigint, (r->>7)::bigint,
        (r->>8)::integer, (r->>9)::integer, (r->>10)::integer, (r->>11)::integer,
        (r->>12)::integer, (r->>13)::integer, (r->>14)::bigint, (r->>15)::bigint, (r->>16)::bigint,
        (r->>17)::bigint, (r->>18)::integer, (r->>19)::integer, (r->>20)::integer, (r->>21)::bigint,
        (r->>22)::bigint, r->>23, r->>24, r->>25, r->>26, (r->>27)::integer, (r->>28)::integer, r->>29
    FROM jsonb_array_elements(%(rows)s::jsonb) AS r
    RETURNING id, worker_name, tags)
INSERT INTO worktag (tag, work_id)
SELECT t.tag, inserted.id FROM inserted, jsonb_array_elements_text(inserted.tags::jsonb) AS t(tag)
WHERE t.tag <> inserted.worker_name
ON CONFLICT DO NOTHING;

-- name: work_copy
-- A batch of work_insert rows through COPY (storage: work_insert_alone); binary, in
-- work_insert's column order, with the types of _WORK_COPY_TYPES.
COPY workspec (
    id, worker_name, state, input, input_merger, initial_delay_ms, interval_ms, flex_ms,
    required_network_type, requires_charging, requires_battery_not_low, requires_device_idle,
    requires_storage_not_low, backoff_policy, backoff_delay_ms, last_enqueue_time, next_run_time,
    minimum_retention_ms, expedited, out_of_quota_policy, stop_reason, created_at, finished_at, cron,
    cron_timezone, custom_constraints, trigger_paths, trigger_update_delay_ms, trigger_max_delay_ms, tags)
FROM STDIN (FORMAT BINARY);

-- name: worktag_copy
-- Tags other than the worker's name, as everywhere: a work row is found under its worker's
-- name by workspec_state_worker (migration 0004), not by a worktag row.
COPY worktag (tag, work_id) FROM STDIN (FORMAT BINARY);

-- name: worktag_insert
INSERT INTO worktag (tag, work_id) VALUES (%s, %s) ON CONFLICT DO NOTHING;

-- name: workname_insert
-- The row joins the name's live chain; uniquename_lock must have run in this transaction
-- (without it the chain is NULL and the insert fails: no unique work bypasses the guard).
INSERT INTO workname (name, work_id, chain)
VALUES (%(name)s, %(work_id)s, (SELECT chain FROM uniquename WHERE name = %(name)s));

-- name: dependency_insert
INSERT INTO dependency (work_id, prerequisite_id) VALUES (%s, %s) ON CONFLICT DO NOTHING;

-- name: work_states_by_ids
-- FOR SHARE: a prerequisite's state decides the new row's state, so the prerequisite must
-- not finish (and cascade, missing the uncommitted dependent) until this transaction ends.
SELECT id, state FROM workspec WHERE id = ANY(%(ids)s::text[]) FOR SHARE;

-- name: work_claim_available
-- "worker_name || ''" (here, in the expedited claim and in work_next_due): an expression no
-- index has, so that the planner walks the claim index in start order rather than take
-- workspec_state_worker's (state, worker_name) for an exact match and sort every waiting row.
-- Claim up to %(limit)s runnable rows for %(runner_id)s in one statement. SKIP LOCKED: rows
-- another worker is claiming right now are passed over, not waited for. %(names)s: runnable
-- worker names, or NULL when this process can run any name. Constraint answers as in SQLite.
-- Suspects: work whose process died running it before (orphan_count > 0) may have been what
-- killed it. A claim takes at most one (the earliest due), and none when %(suspects)s is 0 (this
-- process already runs one), so two suspects never share a process and an innocent job is
-- not orphaned again and again beside a poison one. The rows are taken in the claim index's
-- order as before, and the earliest suspect among the at most %(limit)s rows found is picked (looked for
-- only when one is among them).
UPDATE workspec AS w
SET state = 1, run_attempt_count = w.run_attempt_count + 1, stop_reason = -256,
    runner_id = %(runner_id)s, run_token = %(run_token)s, started_at = %(now)s
FROM (
    WITH ready AS MATERIALIZED (
        SELECT id, orphan_count, next_run_time FROM workspec
        WHERE state = 0 AND (orphan_count = 0 OR %(suspects)s) AND next_run_time <= %(now)s
          AND (%(names)s::text[] IS NULL OR worker_name || '' = ANY(%(names)s::text[]))
          AND ((required_network_type = 0
                OR (required_network_type = 1 AND %(net_connected)s)
                OR (required_network_type IN (2, 5) AND %(net_unmetered)s)
                OR (required_network_type = 3 AND %(net_not_roaming)s)
                OR (required_network_type = 4 AND %(net_metered)s))
               AND (requires_charging = 0 OR %(charging)s)
               AND (requires_battery_not_low = 0 OR %(battery_not_low)s)
               AND (requires_device_idle = 0 OR %(device_idle)s)
               AND (requires_storage_not_low = 0 OR %(storage_not_low)s)
               AND (custom_constraints IS NULL OR %(custom_met)s::text[] IS NULL OR NOT EXISTS (
                    SELECT 1 FROM jsonb_array_elements_text(custom_constraints::jsonb) AS c(name)
                    WHERE c.name <> ALL(%(custom_met)s::text[])))
               OR id = ANY(%(constraints_met_ids)s::text[]))
        ORDER BY next_run_time
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    SELECT id FROM ready
    WHERE orphan_count = 0
       OR id = (SELECT id FROM ready WHERE orphan_count > 0 ORDER BY next_run_time LIMIT 1)) AS claimable
WHERE w.id = claimable.id
RETURNING w.id, w.worker_name, w.input, w.input_merger, w.run_attempt_count, w.generation, w.interval_ms,
    w.run_token, w.tags,
    EXISTS (SELECT 1 FROM dependency WHERE work_id = w.id) AS has_prerequisites,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.expedited, w.custom_constraints, w.triggered_paths, w.orphan_count;

-- name: work_claim_expedited
-- work_claim_available for expedited work only, claimed first: a partial index holds just
-- the waiting expedited rows.
UPDATE workspec AS w
SET state = 1, run_attempt_count = w.run_attempt_count + 1, stop_reason = -256,
    runner_id = %(runner_id)s, run_token = %(run_token)s, started_at = %(now)s
FROM (
    WITH ready AS MATERIALIZED (
        SELECT id, orphan_count, next_run_time FROM workspec
        WHERE state = 0 AND (orphan_count = 0 OR %(suspects)s) AND expedited = 1 AND next_run_time <= %(now)s
          AND (%(names)s::text[] IS NULL OR worker_name || '' = ANY(%(names)s::text[]))
          AND ((required_network_type = 0
                OR (required_network_type = 1 AND %(net_connected)s)
                OR (required_network_type IN (2, 5) AND %(net_unmetered)s)
                OR (required_network_type = 3 AND %(net_not_roaming)s)
                OR (required_network_type = 4 AND %(net_metered)s))
               AND (requires_charging = 0 OR %(charging)s)
               AND (requires_battery_not_low = 0 OR %(battery_not_low)s)
               AND (requires_device_idle = 0 OR %(device_idle)s)
               AND (requires_storage_not_low = 0 OR %(storage_not_low)s)
               AND (custom_constraints IS NULL OR %(custom_met)s::text[] IS NULL OR NOT EXISTS (
                    SELECT 1 FROM jsonb_array_elements_text(custom_constraints::jsonb) AS c(name)
                    WHERE c.name <> ALL(%(custom_met)s::text[])))
               OR id = ANY(%(constraints_met_ids)s::text[]))
        ORDER BY next_run_time
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    SELECT id FROM ready
    WHERE orphan_count = 0
       OR id = (SELECT id FROM ready WHERE orphan_count > 0 ORDER BY next_run_time LIMIT 1)) AS claimable
WHERE w.id = claimable.id
RETURNING w.id, w.worker_name, w.input, w.input_merger, w.run_attempt_count, w.generation, w.interval_ms,
    w.run_token, w.tags,
    EXISTS (SELECT 1 FROM dependency WHERE work_id = w.id) AS has_prerequisites,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.expedited, w.custom_constraints, w.triggered_paths, w.orphan_count;

-- name: work_next_due
-- When the earliest waiting work (this process can run) becomes due.
SELECT next_run_time,
    -- Whether any expedited work waits (the partial index answers): if none, the dispatcher
    -- skips the expedited claim.
    EXISTS (SELECT 1 FROM workspec WHERE state = 0 AND expedited = 1) AS expedited_waiting
FROM workspec
WHERE state = 0 AND (orphan_count = 0 OR %(suspects)s) AND (%(names)s::text[] IS NULL OR worker_name || '' = ANY(%(names)s::text[]))
      AND ((required_network_type = 0
            OR (required_network_type = 1 AND %(net_connected)s)
            OR (required_network_type IN (2, 5) AND %(net_unmetered)s)
            OR (required_network_type = 3 AND %(net_not_roaming)s)
            OR (required_network_type = 4 AND %(net_metered)s))
           AND (requires_charging = 0 OR %(charging)s)
           AND (requires_battery_not_low = 0 OR %(battery_not_low)s)
           AND (requires_device_idle = 0 OR %(device_idle)s)
           AND (requires_storage_not_low = 0 OR %(storage_not_low)s)
           AND (custom_constraints IS NULL OR %(custom_met)s::text[] IS NULL OR NOT EXISTS (
                SELECT 1 FROM jsonb_array_elements_text(custom_constraints::jsonb) AS c(name)
                WHERE c.name <> ALL(%(custom_met)s::text[])))
           OR id = ANY(%(constraints_met_ids)s::text[]))
ORDER BY next_run_time
LIMIT 1;

-- name: work_prerequisite_outputs
SELECT p.output FROM dependency d JOIN workspec p ON p.id = d.prerequisite_id WHERE d.work_id = %(id)s;

-- name: work_schedule_fields
SELECT interval_ms, flex_ms, initial_delay_ms, backoff_policy, backoff_delay_ms, last_enqueue_time,
    period_count, run_attempt_count, next_schedule_time_override, cron, cron_timezone
FROM workspec WHERE id = %(id)s;

-- name: work_succeed_if_running
UPDATE workspec
SET state = 2, output = %(output)s, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL, orphan_count = 0,
    finished_at = %(now)s
WHERE id = %(id)s AND state = 1 AND run_token = %(run_token)s;

-- name: work_succeed_many
-- work_succeed_if_running for a batch of finished runs in one statement: %(runs)s is a JSON
-- array of {"id", "run_token", "output"} (one text dumped in C: arrays of values are dumped
-- one element at a time in Python, which cost more than the statement).
UPDATE workspec AS w
SET state = 2, output = d.output, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL,
    orphan_count = 0, finished_at = %(now)s
FROM jsonb_to_recordset(%(runs)s::jsonb) AS d(id text, run_token bigint, output text)
WHERE w.id = d.id AND w.state = 1 AND w.run_token = d.run_token;

-- name: work_fail_if_running
UPDATE workspec
SET state = 3, output = %(output)s, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL, orphan_count = 0,
    finished_at = %(now)s
WHERE id = %(id)s AND state = 1 AND run_token = %(run_token)s;

-- name: work_enqueue_if_running
-- Back to ENQUEUED: retry, the next period, or a stop.
UPDATE workspec
SET state = 0, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL, orphan_count = 0,
    run_attempt_count = %(run_attempt_count)s, last_enqueue_time = %(last_enqueue_time)s,
    next_run_time = %(next_run_time)s, period_count = %(period_count)s, stop_reason = %(stop_reason)s,
    next_schedule_time_override = %(next_schedule_time_override)s
WHERE id = %(id)s AND state = 1 AND run_token = %(run_token)s;

-- name: work_progress_set_if_running
UPDATE workspec SET progress = %(progress)s WHERE id = %(id)s AND state = 1 AND run_token = %(run_token)s;

-- name: dependency_lock_dependents
-- (PostgreSQL only) Run before dependency_unblock, as its own statement: two prerequisites
-- of one dependent finishing in two concurrent transactions would each see the other still
-- unfinished and neither would unblock it. Locking the dependent makes the second wait for
-- the first to commit; its dependency_unblock then reads a snapshot that includes it.
SELECT w.id FROM workspec w
WHERE w.id IN (SELECT work_id FROM dependency WHERE prerequisite_id = %(id)s) AND w.state = 4
ORDER BY w.id
FOR UPDATE OF w;

-- name: dependency_lock_dependents_many
-- dependency_lock_dependents for several prerequisites at once.
-- %(ids)s is a JSON array (see work_succeed_many); ARRAY(...) reads it once.
SELECT w.id FROM workspec w
WHERE w.id IN (SELECT work_id FROM dependency
               WHERE prerequisite_id = ANY(ARRAY(SELECT jsonb_array_elements_text(%(ids)s::jsonb))))
  AND w.state = 4
ORDER BY w.id
FOR UPDATE OF w;

-- name: dependency_unblock_many
-- dependency_unblock for several prerequisites at once. Sent without waiting for its result,
-- so it notifies listeners itself, with a work change's payload, when it unblocked any.
WITH unblocked AS (
    UPDATE workspec AS w
    SET state = 0, last_enqueue_time = %(now)s, next_run_time = %(now)s + w.initial_delay_ms
    WHERE w.id IN (SELECT work_id FROM dependency
                   WHERE prerequisite_id = ANY(ARRAY(SELECT jsonb_array_elements_text(%(ids)s::jsonb))))
      AND w.state = 4
      AND NOT EXISTS (SELECT 1 FROM dependency d JOIN workspec p ON p.id = d.prerequisite_id
                      WHERE d.work_id = w.id AND p.state <> 2)
    RETURNING 1)
SELECT pg_notify(%(channel)s, %(payload)s) FROM (SELECT 1 FROM unblocked LIMIT 1) AS any_unblocked;

-- name: dependency_unblock
-- BLOCKED dependents of %(id)s whose prerequisites all SUCCEEDED become ENQUEUED;
-- the initial delay counts from now, as on Android.
UPDATE workspec AS w
SET state = 0, last_enqueue_time = %(now)s, next_run_time = %(now)s + w.initial_delay_ms
WHERE w.id IN (SELECT work_id FROM dependency WHERE prerequisite_id = %(id)s)
  AND w.state = 4
  AND NOT EXISTS (SELECT 1 FROM dependency d JOIN workspec p ON p.id = d.prerequisite_id
                  WHERE d.work_id = w.id AND p.state <> 2);

-- name: dependency_fail_dependents
-- Work that never left BLOCKED has no enqueue time (-1): it gets one now, or the prune would
-- take it at once instead of after its retention.
-- Every transitive dependent of %(id)s that is not finished becomes FAILED.
WITH RECURSIVE dependent(id) AS (
    SELECT work_id FROM dependency WHERE prerequisite_id = %(id)s
    UNION
    SELECT d.work_id FROM dependency d JOIN dependent ON d.prerequisite_id = dependent.id)
UPDATE workspec SET state = 3, finished_at = %(now)s, last_enqueue_time = CASE WHEN last_enqueue_time < 0 THEN %(now)s ELSE last_enqueue_time END, next_run_time = %(never)s, runner_id = NULL
WHERE id IN (SELECT id FROM dependent) AND state NOT IN (2, 3, 5)
RETURNING id;

-- name: work_cancel_tree
-- Cancel the roots and every transitive dependent that is not finished. A finished root is
-- not changed, but its dependents are (Android's cancel by id).
WITH RECURSIVE target(id) AS (
    SELECT unnest(%(ids)s::text[])
    UNION
    SELECT d.work_id FROM dependency d JOIN target ON d.prerequisite_id = target.id)
UPDATE workspec
SET state = 5, stop_reason = 1, finished_at = %(now)s,
    last_enqueue_time = CASE WHEN last_enqueue_time < 0 THEN %(now)s ELSE last_enqueue_time END, next_run_time = %(never)s, progress = NULL, foreground = NULL
WHERE id IN (SELECT id FROM target) AND state NOT IN (2, 3, 5)
RETURNING id, runner_id;

-- name: work_unfinished_ids_by_tag
-- The tag's worktag rows, and the work of a worker of that name (workspec_state_worker).
SELECT work_id FROM worktag t JOIN workspec w ON w.id = t.work_id
WHERE t.tag = %(tag)s AND w.state NOT IN (2, 3, 5)
UNION ALL
SELECT id FROM workspec WHERE state = ANY('{0,1,4}'::smallint[]) AND worker_name = %(tag)s;

-- name: work_unfinished_ids_by_name
SELECT work_id FROM workname n JOIN workspec w ON w.id = n.work_id
WHERE n.name = %(name)s AND w.state NOT IN (2, 3, 5);

-- name: work_unfinished_ids
SELECT id FROM workspec WHERE state IN (0, 1, 4);

-- name: work_owned_states
SELECT id, state, run_token, stop_reason FROM workspec WHERE id = ANY(%(ids)s::text[]);

-- name: work_info_by_id
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w WHERE w.id = %(id)s;

-- name: work_info_by_tag
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w
WHERE w.id IN (SELECT work_id FROM worktag WHERE tag = %(tag)s
               UNION ALL
               SELECT id FROM workspec WHERE state = ANY('{0,1,2,3,4,5}'::smallint[]) AND worker_name = %(tag)s)
ORDER BY w.created_at, w.id;

-- name: work_info_by_name
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workname n JOIN workspec w ON w.id = n.work_id WHERE n.name = %(name)s
ORDER BY w.created_at, w.id;

-- name: prefer_index_paths
-- For the rest of the transaction: a sequential scan only where there is no index path.
SET LOCAL enable_seqscan = off;

-- name: work_info_query
-- A WorkQuery: each component is an array, or NULL when absent.
SELECT w.id, w.state, w.output, w.progress, w.run_attempt_count, w.generation,
    w.required_network_type, w.requires_charging, w.requires_battery_not_low, w.requires_device_idle,
    w.requires_storage_not_low, w.initial_delay_ms, w.interval_ms, w.flex_ms, w.next_run_time,
    w.stop_reason, w.tags, w.foreground, w.custom_constraints
FROM workspec w
WHERE (%(ids)s::text[] IS NULL OR w.id = ANY(%(ids)s::text[]))
  AND (%(states)s::int[] IS NULL OR w.state = ANY(%(states)s::int[]))
  AND (%(tags)s::text[] IS NULL OR w.id IN (
        SELECT work_id FROM worktag WHERE tag = ANY(%(tags)s::text[])
        UNION ALL
        SELECT id FROM workspec WHERE state = ANY('{0,1,2,3,4,5}'::smallint[]) AND worker_name = ANY(%(tags)s::text[])))
  AND (%(names)s::text[] IS NULL OR w.id IN (SELECT work_id FROM workname
                                             WHERE name = ANY(%(names)s::text[])))
ORDER BY w.created_at, w.id;

-- name: work_count_by_state
SELECT state, count(*) FROM workspec GROUP BY state;

-- name: work_list
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags
FROM workspec w
WHERE (%(state)s::int IS NULL OR w.state = %(state)s::int)
  AND (%(worker)s::text IS NULL OR w.worker_name = %(worker)s::text)
  AND (%(tag)s::text IS NULL OR w.worker_name = %(tag)s::text
       OR w.id IN (SELECT work_id FROM worktag WHERE tag = %(tag)s::text))
  AND (%(name)s::text IS NULL OR w.id IN (SELECT work_id FROM workname WHERE name = %(name)s::text))
ORDER BY CASE WHEN %(oldest_first)s THEN w.created_at ELSE -w.created_at END, w.id
LIMIT %(limit)s;

-- name: work_detail
SELECT * FROM workspec WHERE id = %(id)s;

-- name: runner_upsert
-- heartbeat_at on the database's clock (see runner_heartbeat); started_at on the caller's.
INSERT INTO runner (id, host, boot_id, pid, process_started, started_at, heartbeat_at, workers,
    heartbeat_mono)
VALUES (%(id)s, %(host)s, %(boot_id)s, %(pid)s, %(process_started)s, %(now)s,
        (extract(epoch FROM clock_timestamp()) * 1000)::bigint, %(workers)s, %(mono)s)
ON CONFLICT (id) DO UPDATE
SET host = EXCLUDED.host, boot_id = EXCLUDED.boot_id, pid = EXCLUDED.pid,
    process_started = EXCLUDED.process_started, started_at = EXCLUDED.started_at,
    heartbeat_at = EXCLUDED.heartbeat_at, workers = EXCLUDED.workers,
    heartbeat_mono = EXCLUDED.heartbeat_mono;

-- name: runner_heartbeat
-- The database's clock, not the caller's: runners on several machines, one clock to judge
-- leases by (compare database_now_ms).
UPDATE runner SET heartbeat_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    heartbeat_mono = %(mono)s
WHERE id = %(id)s;

-- name: runner_delete
DELETE FROM runner WHERE id = %(id)s;

-- name: runner_list
SELECT id, host, boot_id, pid, process_started, started_at, heartbeat_at, workers, heartbeat_mono FROM runner;

-- name: work_running_runner_ids
SELECT DISTINCT runner_id FROM workspec WHERE state = 1;

-- name: work_rescue_runner
-- Running work of a dead process: back to ENQUEUED at once (its attempt counted), or FAILED
-- once it has been orphaned %(max_orphaned_runs)s times in a row (a crash loop).
UPDATE workspec
SET state = CASE WHEN orphan_count + 1 >= %(max_orphaned_runs)s THEN 3 ELSE 0 END,
    stop_reason = CASE WHEN orphan_count + 1 >= %(max_orphaned_runs)s THEN -129 ELSE -512 END,
    output = CASE WHEN orphan_count + 1 >= %(max_orphaned_runs)s THEN %(lost_output)s ELSE output END,
    finished_at = CASE WHEN orphan_count + 1 >= %(max_orphaned_runs)s THEN %(now)s ELSE finished_at END,
    next_run_time = CASE WHEN orphan_count + 1 >= %(max_orphaned_runs)s THEN %(never)s ELSE %(now)s END,
    orphan_count = orphan_count + 1, progress = NULL, foreground = NULL, runner_id = NULL, run_token = NULL
WHERE state = 1 AND runner_id IS NOT DISTINCT FROM %(runner_id)s::text
RETURNING id, state;

-- name: work_prune_finished
-- One range on workspec_finished_expiry either way (an "IS NULL OR" would hide the index).
-- A dependent's state is read by its primary key in a scalar subquery: as a join, the planner
-- may hash every unfinished row of the table to check a handful of dependents.
DELETE FROM workspec
WHERE state IN (2, 3, 5)
  AND last_enqueue_time + minimum_retention_ms < coalesce(%(older_than)s::bigint, 9223372036854775807)
  AND NOT EXISTS (SELECT 1 FROM dependency d
                  WHERE d.prerequisite_id = workspec.id
                    AND (SELECT w2.state FROM workspec w2 WHERE w2.id = d.work_id) NOT IN (2, 3, 5));

-- name: preference_get
SELECT value FROM preference WHERE key = %(key)s;

-- name: preference_set
INSERT INTO preference (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- name: work_set_next_run_time_if_enqueued
UPDATE workspec SET next_run_time = %(next_run_time)s WHERE id = %(id)s AND state = 0;

-- Unique work and continuations (engine/enqueue.py) ------------------------------------------

-- name: uniquename_lock
-- Creates the name's row or touches it; either way this transaction holds the row's lock
-- until it ends, so every enqueue of one name runs after the last. Returns the live chain.
INSERT INTO uniquename (name, chain) VALUES (%(name)s, %(chain)s)
ON CONFLICT (name) DO UPDATE SET chain = uniquename.chain
RETURNING chain;

-- name: uniquename_set_chain
UPDATE uniquename SET chain = %(chain)s WHERE name = %(name)s;

-- name: workname_states
-- FOR SHARE OF w: the states decide what the new work waits for (APPEND), so none of these
-- rows may finish, and miss the new dependent, before this transaction commits.
SELECT w.id, w.state, EXISTS (SELECT 1 FROM dependency d WHERE d.prerequisite_id = w.id)
FROM workname n JOIN workspec w ON w.id = n.work_id
WHERE n.name = %(name)s
ORDER BY w.created_at, w.id
FOR SHARE OF w;

-- name: work_delete
DELETE FROM workspec WHERE id = ANY(%(ids)s::text[]);

-- name: work_update_target
SELECT state, generation, tags, interval_ms, flex_ms, initial_delay_ms, backoff_policy,
    backoff_delay_ms, last_enqueue_time, period_count, run_attempt_count,
    next_schedule_time_override, next_run_time
FROM workspec WHERE id = %(id)s;

-- name: work_update_if_unchanged
UPDATE workspec
SET worker_name = %(worker_name)s, input = %(input)s, input_merger = %(input_merger)s,
    initial_delay_ms = %(initial_delay_ms)s, interval_ms = %(interval_ms)s, flex_ms = %(flex_ms)s,
    required_network_type = %(required_network_type)s, requires_charging = %(requires_charging)s,
    requires_battery_not_low = %(requires_battery_not_low)s, requires_device_idle = %(requires_device_idle)s,
    requires_storage_not_low = %(requires_storage_not_low)s, backoff_policy = %(backoff_policy)s,
    backoff_delay_ms = %(backoff_delay_ms)s, minimum_retention_ms = %(minimum_retention_ms)s,
    expedited = %(expedited)s, out_of_quota_policy = %(out_of_quota_policy)s, tags = %(tags)s,
    next_run_time = %(next_run_time)s, generation = generation + 1
WHERE id = %(id)s AND state = %(state)s AND generation = %(generation)s;

-- name: worktag_delete
DELETE FROM worktag WHERE work_id = %(id)s AND tag = ANY(%(tags)s::text[]);

-- name: expedited_usage_add
INSERT INTO expedited_usage (finished_at, duration_ms) VALUES (%(now)s, %(duration_ms)s);

-- name: expedited_usage_since
SELECT coalesce(sum(duration_ms), 0) FROM expedited_usage WHERE finished_at > %(since)s;

-- name: expedited_usage_prune
DELETE FROM expedited_usage WHERE finished_at <= %(before)s;

-- PostgreSQL only ------------------------------------------------------------------------------

-- name: notify
-- Wakes every listener on the channel once this transaction commits (never before).
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: listen
-- The channel is an identifier, not a parameter: {channel} is filled with a quoted
-- identifier (psycopg.sql.Identifier) from a name validated when the storage was opened.
LISTEN {channel};

-- name: database_now_ms
-- The one clock leases are judged by.
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;

-- name: search_path_get
SELECT current_setting('search_path');

-- name: search_path_set
-- is_local: true, so it ends with the transaction (used on a caller's connection).
SELECT set_config('search_path', %(path)s, true);

-- name: migrate_lock
-- Held to the end of the migration's transaction: processes starting at once migrate in turn.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: schema_create
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: schema_version_create
CREATE TABLE IF NOT EXISTS workmanager_schema_version (
    version    INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: schema_version_get
SELECT coalesce(max(version), 0) FROM workmanager_schema_version;

-- name: schema_version_set
INSERT INTO workmanager_schema_version (version) VALUES (%(version)s);

-- name: schema_tables
-- The tables already in the schema: a workspec table without our version table is not ours.
SELECT tablename FROM pg_tables WHERE schemaname = %(schema)s;

-- name: ping
-- The listener's check that its idle connection still reaches the server.
SELECT 1;

-- name: ping_asking
-- The listener's check, right after it connects, of which processes watch work: on the work
-- channel, which all hear; those that watch answer at once (ping_watching).
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: ping_watching
-- The listener's check that its idle connection still reaches the server, for a process that
-- watches work: it also tells the other processes so, on the work channel (their claims and
-- successes are notified only while someone watches).
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: work_oldest_waiting
-- For diagnostics: the waiting work that has been due longest.
SELECT id, worker_name, next_run_time, created_at, run_attempt_count, required_network_type,
    requires_charging, requires_battery_not_low, requires_device_idle, requires_storage_not_low
FROM workspec WHERE state = 0 ORDER BY state, next_run_time LIMIT %(limit)s;

-- name: work_waiting_worker_names
-- For diagnostics: how much waiting work each worker name has.
SELECT worker_name, count(*) FROM workspec WHERE state = 0 GROUP BY worker_name;

-- name: work_foreground_set_if_running
UPDATE workspec SET foreground = %(foreground)s WHERE id = %(id)s AND state = 1 AND run_token = %(run_token)s;

-- name: work_trigger_waiting
SELECT id, trigger_paths, triggered_paths FROM workspec WHERE state = 0 AND trigger_paths IS NOT NULL;

-- name: work_trigger_fire
-- A change under the work's trigger paths: due once changes pause for the update delay, and
-- no later than the max delay after the first change (Android's content URI triggers).
UPDATE workspec
SET trigger_first_change = coalesce(trigger_first_change, %(now)s),
    next_run_time = LEAST(%(now)s + trigger_update_delay_ms,
                        coalesce(trigger_first_change, %(now)s) + trigger_max_delay_ms),
    triggered_paths = %(triggered_paths)s
WHERE id = %(id)s AND state = 0 AND trigger_paths IS NOT NULL;

-- name: leader_try_lock
-- Cluster-wide duties (rescue, pruning) are done by the one process holding this session
-- lock; it is released when that process's connection closes, so a survivor takes over.
SELECT pg_try_advisory_lock(%(key)s);

-- name: leader_idle_timeout
-- The server ends the leader's session (and so frees its lock) when the leader says nothing
-- for this long: a leader cut off by a partition or paused keeps its TCP connection open
-- in the server's eyes for hours, and no one else could rescue meanwhile. PostgreSQL 14+.
SELECT set_config('idle_session_timeout', %(ms)s, false);

-- name: work_release_unlaunched
-- RUNNING rows claimed by this process that it is not running: a claim whose commit
-- succeeded while its answer was lost (the database restarted). Back to ENQUEUED at once;
-- the attempt was never started, so it is not counted.
UPDATE workspec
SET state = 0, run_attempt_count = run_attempt_count - 1, next_run_time = %(now)s,
    runner_id = NULL, run_token = NULL, stop_reason = -512
WHERE state = 1 AND runner_id = %(runner_id)s AND id NOT IN (SELECT unnest(%(running)s::text[]));

-- The dashboard. Its work table is newest first by id, a page below the cursor (before_id,
-- the last id shown) at a time: keyset pagination on the primary key, so a deep page costs
-- what the first one does. Generated ids are UUIDv7, whose text sorts in creation order
-- under the usual collations (C, en_US, de, sv, ...; a Danish or Norwegian one reads "aa" as
-- "å", after "z", and orders some ids otherwise: paging stays exact); an id the user set
-- sorts by its text. The first page (before_id NULL) starts at the largest id, included, as
-- no constant sorts above every id under every collation: "id <= coalesce(before_id, max)
-- AND id IS DISTINCT FROM before_id" is one index range either way. Which index drives the
-- page is the caller's choice (it probes how many rows a filter matches with the
-- *_count_upto queries): work_page walks the primary key and checks filters on the way; the
-- tag's and the name's pages walk their own primary key, which carries the id, in id order;
-- the state's sorts its rows. The planner's statistics cannot know that a state's rows all
-- lie far back in id order (it would walk half the primary key looking for them), nor how
-- many ids the first page's bound (an InitPlan) admits (it would AND a bitmap of the whole
-- primary key with the state's), hence the "|| ''" (an expression no index has) that keeps
-- that page off the primary key. Every value is a bound parameter.
-- value is a bound parameter.

-- name: work_page
-- Walks no further back than the floor (work_page_floor), so a filter whose matches are all
-- far back costs one window of rows, not the whole table; the page then says so.
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM workspec w
WHERE w.id <= coalesce(%(before_id)s::text, (SELECT max(id) FROM workspec))
  AND w.id IS DISTINCT FROM %(before_id)s::text
  AND w.id >= %(floor_id)s::text
  AND (%(state)s::int IS NULL OR w.state = %(state)s::int)
  AND (%(worker)s::text IS NULL OR w.worker_name = %(worker)s::text)
  AND (%(tag)s::text IS NULL OR w.worker_name = %(tag)s::text OR EXISTS (
        SELECT 1 FROM worktag t WHERE t.tag = %(tag)s::text AND t.work_id = w.id))
  AND (%(name)s::text IS NULL OR EXISTS (
        SELECT 1 FROM workname n WHERE n.name = %(name)s::text AND n.work_id = w.id))
ORDER BY w.id DESC
LIMIT %(limit)s;

-- name: work_page_in_state
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM workspec w
WHERE w.state = %(state)s::int
  AND w.id || '' <= coalesce(%(before_id)s::text, (SELECT max(id) FROM workspec))
  AND w.id IS DISTINCT FROM %(before_id)s::text
  AND (%(worker)s::text IS NULL OR w.worker_name = %(worker)s::text)
  AND (%(tag)s::text IS NULL OR w.worker_name = %(tag)s::text OR EXISTS (
        SELECT 1 FROM worktag t WHERE t.tag = %(tag)s::text AND t.work_id = w.id))
  AND (%(name)s::text IS NULL OR EXISTS (
        SELECT 1 FROM workname n WHERE n.name = %(name)s::text AND n.work_id = w.id))
ORDER BY w.id || '' DESC
LIMIT %(limit)s;

-- name: work_page_with_tag
-- Only for a tag that is no worker's name (worktag_count_upto sees to it: worktag holds no
-- entry for a worker's name). The tag's entries in id order (its primary key), each row looked up as they come (LATERAL,
-- OFFSET 0: the planner may not turn it into a join that scans the work table for a filter it
-- guesses rare), so a page stops after its rows and never reads more than the tag's.
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM worktag t CROSS JOIN LATERAL (
    SELECT * FROM workspec w
    WHERE w.id = t.work_id
      AND (%(state)s::int IS NULL OR w.state = %(state)s::int)
      AND (%(worker)s::text IS NULL OR w.worker_name = %(worker)s::text)
      AND (%(name)s::text IS NULL OR EXISTS (
            SELECT 1 FROM workname n WHERE n.name = %(name)s::text AND n.work_id = w.id))
    OFFSET 0) w
WHERE t.tag = %(tag)s::text
  AND t.work_id <= coalesce(%(before_id)s::text, (SELECT max(id) FROM workspec))
  AND t.work_id IS DISTINCT FROM %(before_id)s::text
ORDER BY t.work_id DESC
LIMIT %(limit)s;

-- name: work_page_with_name
-- As work_page_with_tag, from the name's entries.
SELECT w.id, w.worker_name, w.state, w.run_attempt_count, w.next_run_time, w.created_at, w.finished_at,
    w.tags, w.progress, w.stop_reason
FROM workname n CROSS JOIN LATERAL (
    SELECT * FROM workspec w
    WHERE w.id = n.work_id
      AND (%(state)s::int IS NULL OR w.state = %(state)s::int)
      AND (%(worker)s::text IS NULL OR w.worker_name = %(worker)s::text)
      AND (%(tag)s::text IS NULL OR w.worker_name = %(tag)s::text OR EXISTS (
            SELECT 1 FROM worktag t WHERE t.tag = %(tag)s::text AND t.work_id = w.id))
    OFFSET 0) w
WHERE n.name = %(name)s::text
  AND n.work_id <= coalesce(%(before_id)s::text, (SELECT max(id) FROM workspec))
  AND n.work_id IS DISTINCT FROM %(before_id)s::text
ORDER BY n.work_id DESC
LIMIT %(limit)s;

-- name: work_page_floor
-- The id of the scan-th row below the cursor (from the primary key alone): how far one
-- page's walk may go.
SELECT id FROM workspec
WHERE id <= coalesce(%(before_id)s::text, (SELECT max(id) FROM workspec))
  AND id IS DISTINCT FROM %(before_id)s::text
ORDER BY id DESC
LIMIT 1 OFFSET %(scan)s - 1;

-- name: work_count_in_state_upto
-- How many rows a filter matches, counting no further than cap (a bounded index range).
SELECT count(*) FROM (SELECT 1 FROM workspec WHERE state = %(state)s LIMIT %(cap)s) AS s;

-- name: worktag_count_upto
-- A worker's name counts as the cap: worktag holds no entry for it (migration 0004), so its
-- page cannot walk worktag's key in id order, and the caller walks another index.
SELECT CASE WHEN EXISTS (SELECT 1 FROM workspec WHERE state = ANY('{0,1,2,3,4,5}'::smallint[]) AND worker_name = %(tag)s)
    THEN %(cap)s
    ELSE (SELECT count(*) FROM (SELECT 1 FROM worktag WHERE tag = %(tag)s LIMIT %(cap)s) AS s)
END;

-- name: workname_count_upto
SELECT count(*) FROM (SELECT 1 FROM workname WHERE name = %(name)s LIMIT %(cap)s) AS s;

-- name: work_graph_nodes
-- The chain or join graph around id: every row connected to it by dependencies, either way,
-- up to cap rows (UNION drops repeats, so the walk ends on a finite graph; LIMIT stops it early).
WITH RECURSIVE component(id) AS (
    SELECT %(id)s::text
    UNION
    SELECT CASE WHEN d.work_id = c.id THEN d.prerequisite_id ELSE d.work_id END
    FROM component c JOIN dependency d ON d.work_id = c.id OR d.prerequisite_id = c.id)
SELECT w.id, w.worker_name, w.state
FROM (SELECT id FROM component LIMIT %(cap)s) AS c JOIN workspec w ON w.id = c.id;

-- name: work_graph_edges
SELECT work_id, prerequisite_id FROM dependency WHERE work_id = ANY(%(ids)s::text[]);

-- name: work_unique_names
SELECT name FROM workname WHERE work_id = %(id)s ORDER BY name;

-- name: work_oldest_due
-- Metrics: when the longest-waiting ENQUEUED work became due (the claim index's first entry).
SELECT min(next_run_time) FROM workspec WHERE state = 0;

-- name: commit_without_flush
-- A transaction whose commit need not wait for the WAL flush (Storage.transaction(durable=False):
-- claims only). Visible to everyone at once; a server crash may undo it.
SET LOCAL synchronous_commit = off;
