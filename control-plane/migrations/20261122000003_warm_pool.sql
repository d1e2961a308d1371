-- The warm pool: databases (with their roles) created ahead of demand from a host's template, so
-- a signup only claims one, seeds its admin and activates. A row is `creating` until its role and
-- database exist, then `ready`; claiming deletes it in the same transaction that places the tenant.
CREATE TABLE warm_databases (
    id                   uuid PRIMARY KEY,
    host_id              uuid NOT NULL REFERENCES database_hosts (id) ON DELETE CASCADE,
    database_name        text NOT NULL UNIQUE,
    role_name            text NOT NULL UNIQUE,
    sealed_database_url  bytea NOT NULL,
    database_url_key_id  text NOT NULL,
    schema_version       integer NOT NULL,
    status               text NOT NULL DEFAULT 'creating' CHECK (status IN ('creating', 'ready')),
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX warm_databases_claim_idx ON warm_databases (host_id, schema_version, created_at)
    WHERE status = 'ready';
