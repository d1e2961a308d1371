-- Template databases: one per database host and tenant-schema version, built once and copied by
-- CREATE DATABASE … TEMPLATE for every new tenant on that host.
CREATE TABLE host_templates (
    host_id         uuid NOT NULL REFERENCES database_hosts (id) ON DELETE CASCADE,
    schema_version  integer NOT NULL,
    database_name   text NOT NULL,
    ready_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, schema_version)
);
