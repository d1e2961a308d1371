-- Offboarding: a cancelled tenant stops being served at once, is exported with pg_dump, and after
-- a grace period its database and role are dropped; the tenant row ends `deprovisioned`, and the
-- export and the audit rows remain.
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check CHECK (
    status IN ('provisioning', 'active', 'failed', 'suspended', 'cancelled', 'deprovisioned'));
ALTER TABLE tenants
    ADD COLUMN cancelled_at      timestamptz,
    -- When a cancelled tenant's database and role may be dropped (after its export exists).
    ADD COLUMN purge_after       timestamptz,
    ADD COLUMN deprovisioned_at  timestamptz,
    ADD CHECK (status <> 'cancelled' OR purge_after IS NOT NULL);
CREATE INDEX tenants_cancelled_idx ON tenants (purge_after) WHERE status = 'cancelled';

-- Every pg_dump Silo made: on cancellation (`offboarding`) or by `silo tenants export`.
CREATE TABLE tenant_exports (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    reason          text NOT NULL CHECK (reason IN ('offboarding', 'on_demand')),
    path            text NOT NULL,
    bytes           bigint NOT NULL,
    schema_version  integer,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_exports_tenant_idx ON tenant_exports (tenant_id, created_at);

-- Who did what, when: operator commands, consoles and background transitions alike.
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    tenant_id  uuid REFERENCES tenants (id) ON DELETE SET NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, at);

-- Routers cache tenants; every change that affects routing is published on this channel (on
-- commit, by PostgreSQL) so each router drops the entry at once. A trigger rather than calls in
-- the code: no writer, present or future, can forget it.
CREATE FUNCTION silo_publish_tenant_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('silo_tenant_changes',
                      json_build_object('id', NEW.id, 'slug', NEW.slug)::text);
    IF TG_OP = 'UPDATE' AND OLD.slug IS DISTINCT FROM NEW.slug THEN
        PERFORM pg_notify('silo_tenant_changes',
                          json_build_object('id', OLD.id, 'slug', OLD.slug)::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_publish_change
    AFTER INSERT OR UPDATE OF slug, status, host_id, database_name, sealed_database_url ON tenants
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_change();
