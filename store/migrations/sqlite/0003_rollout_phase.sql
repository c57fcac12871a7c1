-- 0003: a rollout's state is one phase (running, paused, halted, completed,
-- failed, rolling_back, rolled_back) with its stage, the stage's segment and one halt (by, reason, at),
-- instead of a state text that mixed stage and outcome and halt fields kept
-- in step by hand. epoch fences the hosts' commands: it grows each time a
-- process takes the rollout over. Rollouts active during the upgrade keep
-- their stage; their segment restarts at the stage's beginning. undo_* keep
-- a rollback of the rollout: who asked, and each host's part in it.

DROP INDEX rollouts_one_active;
ALTER TABLE rollouts ADD COLUMN phase TEXT NOT NULL DEFAULT 'running';
ALTER TABLE rollouts ADD COLUMN segment_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN segment_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN wait_until TIMESTAMP;
ALTER TABLE rollouts ADD COLUMN halt_by TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN halt_at TIMESTAMP;
ALTER TABLE rollouts ADD COLUMN error TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

UPDATE rollouts SET
	phase = CASE WHEN state LIKE 'stage\_%' ESCAPE '\' THEN 'running' ELSE state END,
	halt_by = CASE WHEN state = 'halted' THEN halted_by ELSE halt_requested_by END,
	halt_reason = CASE
		WHEN state <> 'halted' THEN halt_reason
		WHEN halted_by = 'rolloutbot' THEN reason
		WHEN substr(reason, 1, length('halted by ' || halted_by || ': ')) = 'halted by ' || halted_by || ': '
			THEN substr(reason, length('halted by ' || halted_by || ': ') + 1)
		WHEN reason = 'halted by ' || halted_by THEN ''
		ELSE reason END,
	halt_at = CASE WHEN state = 'halted' THEN COALESCE(finished_at, updated_at)
		WHEN halt_requested_by <> '' THEN updated_at END,
	error = CASE WHEN state = 'failed' THEN reason ELSE '' END;

ALTER TABLE rollouts DROP COLUMN active;
ALTER TABLE rollouts DROP COLUMN state;
ALTER TABLE rollouts DROP COLUMN segment_start;
ALTER TABLE rollouts DROP COLUMN reason;
ALTER TABLE rollouts DROP COLUMN halted_by;
ALTER TABLE rollouts DROP COLUMN halt_requested_by;

-- active is derived from phase: every phase that is not an end is active, so
-- waiting phases added later need no migration here.
ALTER TABLE rollouts ADD COLUMN active BOOLEAN GENERATED ALWAYS AS (phase NOT IN ('halted', 'completed', 'failed', 'rolled_back')) VIRTUAL;
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (active) WHERE active;

ALTER TABLE rollouts ADD COLUMN undo_by TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN undo_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN undo_at TIMESTAMP;
ALTER TABLE rollouts ADD COLUMN undo_epoch BIGINT NOT NULL DEFAULT 0;

ALTER TABLE rollout_hosts ADD COLUMN undo_status TEXT NOT NULL DEFAULT '';
ALTER TABLE rollout_hosts ADD COLUMN undo_error TEXT NOT NULL DEFAULT '';
ALTER TABLE rollout_hosts ADD COLUMN undo_output TEXT NOT NULL DEFAULT '';
ALTER TABLE rollout_hosts ADD COLUMN undo_started_at TIMESTAMP;
ALTER TABLE rollout_hosts ADD COLUMN undo_finished_at TIMESTAMP;

-- The store's own name, made once: hosts compare the fences of commands only
-- with fences of the same store, as a store set up anew counts rollouts from
-- 1 again.
CREATE TABLE store_info (id TEXT NOT NULL);
INSERT INTO store_info (id) VALUES (lower(hex(randomblob(16))));
