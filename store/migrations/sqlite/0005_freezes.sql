-- 0005: change freezes set ad hoc (recurring ones live in the configuration),
-- and what a waiting rollout waits for: a freeze or a rollout window
-- (wait_for, for people), with the overrides that let one rollout through
-- (start … override, start … anytime).

CREATE TABLE freezes (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	created_by TEXT NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	from_at    TIMESTAMP NOT NULL,
	until_at   TIMESTAMP,                -- NULL: until someone unfreezes
	ended_by   TEXT NOT NULL DEFAULT '', -- who unfroze it (until_at is then when)
	created_at TIMESTAMP NOT NULL
);

CREATE INDEX freezes_until ON freezes (until_at);

ALTER TABLE rollouts ADD COLUMN wait_for TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN freeze_override_by TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN freeze_override_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN freeze_override_at TIMESTAMP;
ALTER TABLE rollouts ADD COLUMN anytime_by TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN anytime_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN anytime_at TIMESTAMP;
