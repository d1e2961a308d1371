-- A tenant's white-label settings, served to its app (and its login page) on its own host.
-- Each column is optional: what is NULL falls back to a default (the tenant's display name, no
-- logo, Silo's colour).
CREATE TABLE tenant_branding (
    tenant_id      uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    display_name   text CHECK (length(display_name) BETWEEN 1 AND 200),
    logo_url       text CHECK (logo_url ~ '^https://' AND length(logo_url) <= 2048),
    primary_color  text CHECK (primary_color ~ '^#[0-9a-f]{6}$'),
    updated_by     text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Routers cache the branding with the resolved tenant: a change is published on the tenant
-- channel (by migration 0008's publisher for rows that belong to a tenant), which drops that
-- tenant's entry at once on every router.
CREATE TRIGGER tenant_branding_publish_change
    AFTER INSERT OR UPDATE OR DELETE ON tenant_branding
    FOR EACH ROW EXECUTE FUNCTION silo_publish_module_change();
