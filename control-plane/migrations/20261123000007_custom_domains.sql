-- Custom domains: a tenant's owner adds a domain and gets a verification token; once an operator
-- (or a check) marks it verified, requests whose Host is that domain are that tenant's.
CREATE TABLE tenant_domains (
    domain              text PRIMARY KEY CHECK (domain = lower(domain) AND length(domain) <= 253),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    verification_token  text NOT NULL,
    verified_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_domains_tenant_idx ON tenant_domains (tenant_id);

-- Routers cache domain → tenant; every change is published on the tenant channel with the
-- domain, so each router drops that entry at once.
CREATE FUNCTION silo_publish_domain_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed tenant_domains;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_notify('silo_tenant_changes',
                      json_build_object('id', changed.tenant_id,
                                        'slug', (SELECT slug FROM tenants WHERE id = changed.tenant_id),
                                        'domain', changed.domain)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER tenant_domains_publish_change
    AFTER INSERT OR UPDATE OR DELETE ON tenant_domains
    FOR EACH ROW EXECUTE FUNCTION silo_publish_domain_change();
