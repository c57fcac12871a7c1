-- 0004: gates. A rollout keeps its gate settings (the stages that end in a
-- manual gate, their timeout, the two-person rule, the bake time of its
-- checks), who counts as its starter for that rule (a schedule's creator
-- for a scheduled rollout), and the latest promotion asked for: who, for the
-- gate after which stage, when. The driver acts on the promotion as it acts
-- on a halt request.

ALTER TABLE rollouts ADD COLUMN gates TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN gate_timeout_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN promote_by_other BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE rollouts ADD COLUMN bake_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN starter TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN promote_by TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN promote_stage INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN promote_at TIMESTAMP;

UPDATE rollouts SET starter = started_by;
