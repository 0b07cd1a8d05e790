-- The first schema, the same tables and columns as SQLite's 0001_initial.sql.
-- Times are epoch milliseconds (UTC); durations are milliseconds. States use Android's
-- codes: ENQUEUED 0, RUNNING 1, SUCCEEDED 2, FAILED 3, BLOCKED 4, CANCELLED 5.
-- Runs inside the schema named by the URL (search_path), under the migration advisory lock.

CREATE TABLE workspec (
    id                        TEXT PRIMARY KEY,          -- uuid, canonical text form
    worker_name               TEXT NOT NULL,             -- registry name; never imported
    tags                      TEXT NOT NULL DEFAULT '[]', -- JSON list; worktag indexes it
    state                     SMALLINT NOT NULL,
    input                     TEXT NOT NULL DEFAULT '{}',
    output                    TEXT NOT NULL DEFAULT '{}',
    progress                  TEXT,                      -- NULL unless running
    foreground                TEXT,                      -- JSON title/text of long-running work, while it runs
    input_merger              TEXT NOT NULL DEFAULT 'OverwritingInputMerger',
    initial_delay_ms          BIGINT NOT NULL DEFAULT 0,
    interval_ms               BIGINT NOT NULL DEFAULT 0, -- 0: one-time work
    cron                      TEXT,                      -- periodic on a cron schedule, else NULL
    cron_timezone             TEXT,                      -- IANA zone the cron expression is read in
    flex_ms                   BIGINT NOT NULL DEFAULT 0,
    required_network_type     INTEGER NOT NULL DEFAULT 0,
    requires_charging         INTEGER NOT NULL DEFAULT 0,
    requires_battery_not_low  INTEGER NOT NULL DEFAULT 0,
    requires_device_idle      INTEGER NOT NULL DEFAULT 0,
    requires_storage_not_low  INTEGER NOT NULL DEFAULT 0,
    custom_constraints        TEXT,                      -- JSON list of custom constraint names, or NULL
    trigger_paths             TEXT,                      -- JSON list: waits for a change under these
    trigger_update_delay_ms   INTEGER NOT NULL DEFAULT 0,
    trigger_max_delay_ms      INTEGER NOT NULL DEFAULT 0,
    trigger_first_change      INTEGER,                   -- when a change was first seen
    triggered_paths           TEXT,                      -- JSON list of the paths that changed
    run_attempt_count         INTEGER NOT NULL DEFAULT 0,
    backoff_policy            INTEGER NOT NULL DEFAULT 0,
    backoff_delay_ms          BIGINT NOT NULL DEFAULT 30000,
    last_enqueue_time         BIGINT NOT NULL DEFAULT -1,
    next_run_time             BIGINT NOT NULL,           -- when ENQUEUED work may start; a huge value: never
    minimum_retention_ms      BIGINT NOT NULL DEFAULT 0,
    expedited                 INTEGER NOT NULL DEFAULT 0,
    out_of_quota_policy       INTEGER NOT NULL DEFAULT 0,
    period_count              INTEGER NOT NULL DEFAULT 0,
    generation                INTEGER NOT NULL DEFAULT 0,
    next_schedule_time_override BIGINT,
    stop_reason               INTEGER NOT NULL DEFAULT -256,
    runner_id                 TEXT,                      -- the process running it (RUNNING only)
    run_token                 BIGINT,                    -- fences a run: only its current owner may finish it
    orphan_count              INTEGER NOT NULL DEFAULT 0, -- runs lost to dead processes in a row
    created_at                BIGINT NOT NULL,
    finished_at               BIGINT,
    started_at                BIGINT,                     -- when its latest run was claimed (dashboard history)
    -- As in SQLite's schema: what the claim reads for every waiting row is refused here when
    -- it could not be read there (one corrupted row would otherwise stop every worker).
    CHECK (state BETWEEN 0 AND 5),
    CHECK (backoff_policy IN (0, 1)),
    CHECK (required_network_type BETWEEN 0 AND 5),
    CHECK (jsonb_typeof(tags::jsonb) = 'array'),
    CHECK (custom_constraints IS NULL OR jsonb_typeof(custom_constraints::jsonb) = 'array'),
    CHECK (trigger_paths IS NULL OR jsonb_typeof(trigger_paths::jsonb) = 'array'),
    CHECK (triggered_paths IS NULL OR jsonb_typeof(triggered_paths::jsonb) = 'array')
);

-- The claim: ENQUEUED rows in start order, and nothing else (a partial index stays small
-- however much finished work is kept).
CREATE INDEX workspec_claim ON workspec (next_run_time) WHERE state = 0;
-- Expedited work is claimed ahead of the rest; only waiting expedited rows are indexed.
CREATE INDEX workspec_expedited_due ON workspec (next_run_time) WHERE state = 0 AND expedited = 1;
-- Counts and lists by state.
CREATE INDEX workspec_state ON workspec (state);
-- Rescue looks only at running rows.
CREATE INDEX workspec_running ON workspec (runner_id) WHERE state = 1;
-- The dashboard's work table, newest first, a page at a time (keyset on created_at, id).
-- Written at insert only: created_at never changes, so claims and completions do not touch it.
CREATE INDEX workspec_created ON workspec (created_at, id);
-- Automatic pruning: finished rows by when their retention ends, so a pass reads only the
-- rows it deletes, however many finished rows are still kept.
CREATE INDEX workspec_finished_expiry ON workspec ((last_enqueue_time + minimum_retention_ms))
    WHERE state IN (2, 3, 5);
CREATE INDEX workspec_trigger_waiting ON workspec (id) WHERE state = 0 AND trigger_paths IS NOT NULL;

-- Work by tag; removed with its work by the foreign key.
CREATE TABLE worktag (
    tag     TEXT NOT NULL,
    work_id TEXT NOT NULL REFERENCES workspec (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, work_id)
);
CREATE INDEX worktag_work ON worktag (work_id);

-- One row per unique work name ever used: the database's guard on unique work (see the
-- SQLite schema). uniquename_lock's upsert holds this row's lock to the end of the
-- transaction, so concurrent enqueues of one name, from any machine, run one after another.
CREATE TABLE uniquename (
    name  TEXT PRIMARY KEY,
    chain TEXT NOT NULL,                                 -- id of the chain's first request
    UNIQUE (name, chain)
);

CREATE TABLE workname (
    name    TEXT NOT NULL,
    work_id TEXT NOT NULL REFERENCES workspec (id) ON DELETE CASCADE,
    chain   TEXT NOT NULL,
    PRIMARY KEY (name, work_id),
    FOREIGN KEY (name, chain) REFERENCES uniquename (name, chain)
);
CREATE INDEX workname_work ON workname (work_id);

CREATE TABLE dependency (
    work_id         TEXT NOT NULL REFERENCES workspec (id) ON DELETE CASCADE,
    prerequisite_id TEXT NOT NULL REFERENCES workspec (id) ON DELETE CASCADE,
    PRIMARY KEY (work_id, prerequisite_id)
);
CREATE INDEX dependency_prerequisite ON dependency (prerequisite_id);

-- One row per live process that runs work. heartbeat_at is on the database's clock, so
-- processes on different machines judge each other's leases by one clock.
CREATE TABLE runner (
    id               TEXT PRIMARY KEY,
    host             TEXT NOT NULL,
    boot_id          TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    process_started  DOUBLE PRECISION NOT NULL,          -- the process's start time, to tell pid reuse
    started_at       BIGINT NOT NULL,
    heartbeat_at     BIGINT NOT NULL,
    workers          TEXT NOT NULL DEFAULT '[]',         -- JSON list of the names it can run
    -- The host's monotonic clock at the last heartbeat (0: unknown): processes on one host
    -- judge each other's leases by it, so a wall-clock jump cannot make a live one look dead.
    heartbeat_mono   DOUBLE PRECISION NOT NULL DEFAULT 0
);

-- Time used by expedited runs, for the expedited quota (Configuration.expedited_quota).
CREATE TABLE expedited_usage (
    finished_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX expedited_usage_finished ON expedited_usage (finished_at);

CREATE TABLE preference (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
