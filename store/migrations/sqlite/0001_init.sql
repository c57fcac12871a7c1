-- 0001: inventory, rollouts, per-host results, pinned host keys, audit log.

CREATE TABLE hosts (
	id         TEXT PRIMARY KEY,
	address    TEXT NOT NULL,
	port       INTEGER NOT NULL DEFAULT 22,
	ssh_user   TEXT NOT NULL DEFAULT '',
	label      TEXT NOT NULL DEFAULT '',
	disabled   BOOLEAN NOT NULL DEFAULT FALSE,
	created_at TIMESTAMP NOT NULL,
	updated_at TIMESTAMP NOT NULL
);

CREATE TABLE rollouts (
	id                INTEGER PRIMARY KEY AUTOINCREMENT,
	version           TEXT NOT NULL,
	state             TEXT NOT NULL,
	-- active is derived from state, and at most one row may be active: the
	-- partial unique index below holds across every process on this database.
	active            BOOLEAN GENERATED ALWAYS AS (state LIKE 'stage\_%' ESCAPE '\') STORED,
	stages            TEXT NOT NULL,
	concurrency       INTEGER NOT NULL,
	pause_ms          BIGINT NOT NULL,
	threshold         INTEGER NOT NULL,
	seed              BIGINT NOT NULL,
	host_count        INTEGER NOT NULL,
	stage             INTEGER NOT NULL,
	segment_start     INTEGER NOT NULL,
	started_by        TEXT NOT NULL,
	source            TEXT NOT NULL,
	reason            TEXT NOT NULL DEFAULT '',
	halted_by         TEXT NOT NULL DEFAULT '',
	halt_requested_by TEXT NOT NULL DEFAULT '',
	halt_reason       TEXT NOT NULL DEFAULT '',
	owner             TEXT NOT NULL DEFAULT '',
	lease_until       TIMESTAMP,
	channel           TEXT NOT NULL DEFAULT '',
	message_ts        TEXT NOT NULL DEFAULT '',
	created_at        TIMESTAMP NOT NULL,
	updated_at        TIMESTAMP NOT NULL,
	finished_at       TIMESTAMP
);

CREATE UNIQUE INDEX rollouts_one_active ON rollouts (active) WHERE active;

CREATE TABLE rollout_hosts (
	rollout_id   BIGINT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
	idx          INTEGER NOT NULL,
	host_id      TEXT NOT NULL,
	address      TEXT NOT NULL,
	port         INTEGER NOT NULL,
	ssh_user     TEXT NOT NULL,
	label        TEXT NOT NULL,
	status       TEXT NOT NULL,
	step         TEXT NOT NULL DEFAULT '',
	prev_version TEXT NOT NULL DEFAULT '',
	new_version  TEXT NOT NULL DEFAULT '',
	error        TEXT NOT NULL DEFAULT '',
	output       TEXT NOT NULL DEFAULT '',
	started_at   TIMESTAMP,
	finished_at  TIMESTAMP,
	PRIMARY KEY (rollout_id, idx)
);

CREATE INDEX rollout_hosts_host ON rollout_hosts (rollout_id, host_id);

CREATE TABLE host_keys (
	host      TEXT PRIMARY KEY,
	key       TEXT NOT NULL,
	pinned_at TIMESTAMP NOT NULL
);

CREATE TABLE audit_log (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	at         TIMESTAMP NOT NULL,
	actor      TEXT NOT NULL,
	source     TEXT NOT NULL,
	action     TEXT NOT NULL,
	rollout_id BIGINT,
	allowed    BOOLEAN NOT NULL,
	detail     TEXT NOT NULL DEFAULT ''
);

CREATE INDEX audit_log_at ON audit_log (at);
