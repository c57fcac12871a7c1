-- 0002: cron schedules, and one row per due time so that a run is handled once
-- across every process on this database.

CREATE TABLE schedules (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	name          TEXT,          -- set for schedules from the configuration file
	spec          TEXT NOT NULL,
	timezone      TEXT NOT NULL,
	version       TEXT NOT NULL DEFAULT '',
	created_by    TEXT NOT NULL,
	source        TEXT NOT NULL,
	created_at    TIMESTAMP NOT NULL,
	-- due times up to here were handled: run, skipped or reported missed
	checked_until TIMESTAMP NOT NULL
);

CREATE UNIQUE INDEX schedules_name ON schedules (name) WHERE name IS NOT NULL;

CREATE TABLE schedule_runs (
	schedule_id BIGINT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
	due_at      TIMESTAMP NOT NULL,
	outcome     TEXT NOT NULL, -- claimed, started, skipped, missed, failed
	rollout_id  BIGINT,
	detail      TEXT NOT NULL DEFAULT '',
	owner       TEXT NOT NULL,
	at          TIMESTAMP NOT NULL,
	PRIMARY KEY (schedule_id, due_at)
);
