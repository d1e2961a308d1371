-- Staged schema rollouts across every tenant database, and the released schema version.
--
-- The released version is the newest row of schema_releases: new tenants are provisioned at it.
-- Only a completed rollout adds a row; the first start records the build's newest migration.
CREATE TABLE schema_releases (
    version      integer PRIMARY KEY,
    rollout_id   uuid,
    released_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollouts (
    id                   uuid PRIMARY KEY,
    target_version       integer NOT NULL CHECK (target_version > 0),
    -- Cumulative percentages of the fleet, ascending, the last one 100.
    stages               integer[] NOT NULL,
    -- Index into stages of the stage being run (or next to run).
    current_stage        integer NOT NULL DEFAULT 0,
    concurrency_per_host integer NOT NULL CHECK (concurrency_per_host > 0),
    -- Failures per stage that pause the rollout: a count, or a percentage of the stage.
    max_failures         integer CHECK (max_failures >= 0),
    max_failure_percent  real CHECK (max_failure_percent >= 0 AND max_failure_percent <= 100),
    bake_seconds         integer NOT NULL DEFAULT 0 CHECK (bake_seconds >= 0),
    manual_approval      boolean NOT NULL DEFAULT false,
    -- Read each tenant's own history instead of trusting the control plane's version.
    verify               boolean NOT NULL DEFAULT false,
    state                text NOT NULL DEFAULT 'running'
                         CHECK (state IN ('pending', 'running', 'paused', 'completed', 'aborted')),
    pause_reason         text,
    created_by           text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    stage_started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    CHECK ((max_failures IS NULL) <> (max_failure_percent IS NULL))
);
-- At most one rollout is unfinished at a time.
CREATE UNIQUE INDEX rollouts_one_open_idx ON rollouts ((true))
    WHERE state IN ('pending', 'running', 'paused');

CREATE TABLE rollout_tenants (
    rollout_id    uuid NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    stage         integer NOT NULL,
    -- Order in the plan: canaries first, then by a hash of the tenant id (stable on re-plan).
    position      integer NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    from_version  integer,
    to_version    integer,
    attempts      integer NOT NULL DEFAULT 0,
    error         text,
    started_at    timestamptz,
    finished_at   timestamptz,
    PRIMARY KEY (rollout_id, tenant_id)
);
CREATE INDEX rollout_tenants_stage_idx ON rollout_tenants (rollout_id, stage, status);

ALTER TABLE tenants ADD COLUMN canary boolean NOT NULL DEFAULT false;
