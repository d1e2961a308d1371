-- Items imported from CSV, as tenant-scoped jobs: the file waits here sealed to its tenant
-- (dropped once the import ends), the record keeps the state, the progress and the problems
-- found (line, field, message: never a cell's value). One import at a time per tenant.
CREATE TABLE item_imports (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'imported', 'refused', 'failed')),
    rows_total   integer NOT NULL DEFAULT 0,
    rows_done    integer NOT NULL DEFAULT 0,
    problems     jsonb NOT NULL DEFAULT '[]',
    problem_count integer NOT NULL DEFAULT 0,
    file_key_id  text,
    file_sealed  bytea,
    finished_at  timestamptz
);

CREATE UNIQUE INDEX item_imports_one_at_a_time ON item_imports (tenant_id)
    WHERE state IN ('queued', 'running');
CREATE INDEX item_imports_by_tenant ON item_imports (tenant_id, id DESC);
