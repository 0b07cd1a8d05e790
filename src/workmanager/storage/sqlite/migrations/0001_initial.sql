-- The first schema. Times are epoch milliseconds (UTC); durations are milliseconds.
-- States use Android's codes: ENQUEUED 0, RUNNING 1, SUCCEEDED 2, FAILED 3, BLOCKED 4, CANCELLED 5.

CREATE TABLE workspec (
    id                        TEXT PRIMARY KEY,          -- uuid, canonical text form
    worker_name               TEXT NOT NULL,             -- registry name; never imported
    tags                      TEXT NOT NULL DEFAULT '[]', -- JSON list; worktag indexes it
    state                     INTEGER NOT NULL,
    input                     TEXT NOT NULL DEFAULT '{}',
    output                    TEXT NOT NULL DEFAULT '{}',
    progress                  TEXT,                      -- NULL unless running
    foreground                TEXT,                      -- JSON title/text of long-running work, while it runs
    input_merger              TEXT NOT NULL DEFAULT 'OverwritingInputMerger',
    initial_delay_ms          INTEGER NOT NULL DEFAULT 0,
    interval_ms               INTEGER NOT NULL DEFAULT 0, -- 0: one-time work
    cron                      TEXT,                      -- periodic on a cron schedule, else NULL
    cron_timezone             TEXT,                      -- IANA zone the cron expression is read in
    flex_ms                   INTEGER NOT NULL DEFAULT 0,
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
    backoff_delay_ms          INTEGER NOT NULL DEFAULT 30000,
    last_enqueue_time         INTEGER NOT NULL DEFAULT -1,
    next_run_time             INTEGER NOT NULL,          -- when ENQUEUED work may start; a huge value: never
    minimum_retention_ms      INTEGER NOT NULL DEFAULT 0,
    expedited                 INTEGER NOT NULL DEFAULT 0,
    out_of_quota_policy       INTEGER NOT NULL DEFAULT 0,
    period_count              INTEGER NOT NULL DEFAULT 0,
    generation                INTEGER NOT NULL DEFAULT 0,
    next_schedule_time_override INTEGER,
    stop_reason               INTEGER NOT NULL DEFAULT -256,
    runner_id                 TEXT,                      -- the process running it (RUNNING only)
    run_token                 INTEGER,                   -- fences a run: only its current owner may finish it
    orphan_count              INTEGER NOT NULL DEFAULT 0, -- runs lost to dead processes in a row
    created_at                INTEGER NOT NULL,
    finished_at               INTEGER,
    started_at                INTEGER,                    -- when its latest run was claimed (dashboard history)
    -- A row corrupted from outside must not stop every worker: the claim reads these columns
    -- for all waiting rows (in SQL, or as each claimed row is decoded), so a value it could
    -- not read is refused here rather than met there. Input, output and progress are read
    -- per run: a malformed one fails that run only.
    CHECK (state BETWEEN 0 AND 5),
    CHECK (backoff_policy IN (0, 1)),
    CHECK (required_network_type BETWEEN 0 AND 5),
    CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    CHECK (custom_constraints IS NULL OR (json_valid(custom_constraints) AND json_type(custom_constraints) = 'array')),
    CHECK (trigger_paths IS NULL OR (json_valid(trigger_paths) AND json_type(trigger_paths) = 'array')),
    CHECK (triggered_paths IS NULL OR (json_valid(triggered_paths) AND json_type(triggered_paths) = 'array'))
) WITHOUT ROWID;

-- The claim: ENQUEUED rows in start order. Also serves counts by state.
CREATE INDEX workspec_state_next_run ON workspec (state, next_run_time);
-- Expedited work is claimed ahead of the rest; only waiting expedited rows are indexed.
CREATE INDEX workspec_expedited_due ON workspec (next_run_time) WHERE state = 0 AND expedited = 1;
-- Work waiting for a file change under its trigger paths.
CREATE INDEX workspec_trigger_waiting ON workspec (id) WHERE state = 0 AND trigger_paths IS NOT NULL;
-- Rescue looks only at running rows.
CREATE INDEX workspec_running ON workspec (runner_id) WHERE state = 1;
-- The dashboard's work table, newest first, a page at a time (keyset on created_at, id:
-- a WITHOUT ROWID index carries the primary key). Written at insert only: created_at never
-- changes, so claims and completions do not touch it.
CREATE INDEX workspec_created ON workspec (created_at);
-- Automatic pruning: finished rows by when their retention ends, so a pass reads only the
-- rows it deletes, however many finished rows are still kept.
CREATE INDEX workspec_finished_expiry ON workspec (last_enqueue_time + minimum_retention_ms)
    WHERE state IN (2, 3, 5);

-- Work by tag. No foreign key and no index by work: every enqueue writes this table, and
-- one B-tree less is one page less to write per commit. The row's own tags column says
-- which entries to remove when it is deleted.
CREATE TABLE worktag (
    tag     TEXT NOT NULL,
    work_id TEXT NOT NULL,
    PRIMARY KEY (tag, work_id)
) WITHOUT ROWID;

CREATE TRIGGER workspec_delete_tags AFTER DELETE ON workspec BEGIN
    DELETE FROM worktag WHERE work_id = OLD.id AND tag IN (SELECT value FROM json_each(OLD.tags));
END;

-- One row per unique work name ever used: the database's guard on unique work. Every
-- enqueue that applies an ExistingWorkPolicy first upserts this row (on PostgreSQL the
-- upsert takes its row lock, so concurrent enqueues of one name run one after another),
-- and every workname row carries the name's live chain: a new chain can start only once
-- no row of the old one is left (the foreign key below refuses it otherwise). So at most
-- one chain per name is ever live, however many processes race.
CREATE TABLE uniquename (
    name  TEXT PRIMARY KEY,
    chain TEXT NOT NULL,                                 -- id of the chain's first request
    UNIQUE (name, chain)
) WITHOUT ROWID;

CREATE TABLE workname (
    name    TEXT NOT NULL,
    work_id TEXT NOT NULL REFERENCES workspec (id) ON DELETE CASCADE,
    chain   TEXT NOT NULL,
    PRIMARY KEY (name, work_id),
    FOREIGN KEY (name, chain) REFERENCES uniquename (name, chain)
) WITHOUT ROWID;
CREATE INDEX workname_work ON workname (work_id);

CREATE TABLE dependency (
    work_id         TEXT NOT NULL REFERENCES workspec (id) ON DELETE CASCADE,
    prerequisite_id TEXT NOT NULL REFERENCES workspec (id) ON DELETE CASCADE,
    PRIMARY KEY (work_id, prerequisite_id)
) WITHOUT ROWID;
CREATE INDEX dependency_prerequisite ON dependency (prerequisite_id);

-- One row per live process that runs work: how others tell whether it is still alive.
CREATE TABLE runner (
    id               TEXT PRIMARY KEY,
    host             TEXT NOT NULL,
    boot_id          TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    process_started  REAL NOT NULL,                      -- the process's start time, to tell pid reuse
    started_at       INTEGER NOT NULL,
    heartbeat_at     INTEGER NOT NULL,
    workers          TEXT NOT NULL DEFAULT '[]',         -- JSON list of the names it can run
    -- The host's monotonic clock at the last heartbeat (0: unknown): processes on one host
    -- judge each other's leases by it, so a wall-clock jump cannot make a live one look dead.
    heartbeat_mono   REAL NOT NULL DEFAULT 0
);

-- Time used by expedited runs, for the expedited quota (Configuration.expedited_quota).
CREATE TABLE expedited_usage (
    finished_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX expedited_usage_finished ON expedited_usage (finished_at);

CREATE TABLE preference (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
