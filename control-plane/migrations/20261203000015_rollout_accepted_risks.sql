-- The lint rules an operator accepted when starting a rollout (`--accept-risk RULE,…` or the
-- dashboard's checkboxes): error-level findings in the migrations it applies that were let through.
ALTER TABLE rollouts ADD COLUMN accepted_risks text[] NOT NULL DEFAULT '{}';
