-- Usage metering. Requests are counted in each router's memory and added here in batches (one
-- statement per flush, never one write per request); the rest is sampled by a worker job.
CREATE TABLE usage_daily (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day        date NOT NULL,
    requests   bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    PRIMARY KEY (tenant_id, day)
);

-- The newest sample of each tenant: its database's size (pg_database_size) and its counts.
CREATE TABLE tenant_usage (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    database_bytes  bigint,
    users           integer,
    items           integer,
    branches        integer,
    sampled_at      timestamptz NOT NULL
);
