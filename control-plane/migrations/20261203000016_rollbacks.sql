-- Rollbacks and what a stage's failure limit does.
-- direction: 'forward' applies migrations up to the target; 'back' runs revert scripts down to it.
-- on_failure: 'pause' (stop and wait for the operator) or 'revert' (move the tenants this rollout
-- already moved back to where they were, then end it aborted), when a stage passes its limit.
ALTER TABLE rollouts
    ADD COLUMN direction text NOT NULL DEFAULT 'forward' CHECK (direction IN ('forward', 'back')),
    ADD COLUMN on_failure text NOT NULL DEFAULT 'pause' CHECK (on_failure IN ('pause', 'revert'));

-- 'reverting': an `--on-failure revert` rollout undoing what it did; still open (one at a time).
ALTER TABLE rollouts DROP CONSTRAINT rollouts_state_check,
    ADD CONSTRAINT rollouts_state_check
        CHECK (state IN ('pending', 'running', 'paused', 'reverting', 'completed', 'aborted'));
DROP INDEX rollouts_one_open_idx;
CREATE UNIQUE INDEX rollouts_one_open_idx ON rollouts ((true))
    WHERE state IN ('pending', 'running', 'paused', 'reverting');

-- 'reverted': moved by the rollout, then moved back by its `--on-failure revert`.
ALTER TABLE rollout_tenants DROP CONSTRAINT rollout_tenants_status_check,
    ADD CONSTRAINT rollout_tenants_status_check
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'reverted'));
