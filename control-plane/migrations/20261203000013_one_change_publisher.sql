-- One publisher for every row that belongs to a tenant (custom domains, add-on modules,
-- subscriptions, branding, API keys), instead of a copy per table. It publishes the owning
-- tenant's id and slug on the routers' channel; called with two arguments (a key and a column),
-- it adds that column's value under that key, so routers can drop exactly one cached entry
-- (`domain`, `api_key`). The tenants table keeps its own publisher: it also announces a
-- renamed tenant's old slug.
CREATE FUNCTION silo_publish_tenant_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
    owner uuid;
    payload jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    owner := (changed ->> 'tenant_id')::uuid;
    payload := jsonb_build_object('id', owner,
                                  'slug', (SELECT slug FROM tenants WHERE id = owner));
    IF TG_NARGS = 2 THEN
        payload := payload || jsonb_build_object(TG_ARGV[0], changed ->> TG_ARGV[1]);
    END IF;
    PERFORM pg_notify('silo_tenant_changes', payload::text);
    RETURN NULL;
END $$;

DROP TRIGGER tenant_domains_publish_change ON tenant_domains;
CREATE TRIGGER tenant_domains_publish_change
    AFTER INSERT OR UPDATE OR DELETE ON tenant_domains
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_row_change('domain', 'domain');

DROP TRIGGER api_keys_publish_change ON api_keys;
CREATE TRIGGER api_keys_publish_change
    AFTER INSERT OR DELETE OR UPDATE OF prefix, secret_hash, role, tenant_id, revoked_at
    ON api_keys
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_row_change('api_key', 'prefix');

DROP TRIGGER tenant_modules_publish_change ON tenant_modules;
CREATE TRIGGER tenant_modules_publish_change
    AFTER INSERT OR UPDATE OR DELETE ON tenant_modules
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_row_change();

DROP TRIGGER subscriptions_publish_change ON subscriptions;
CREATE TRIGGER subscriptions_publish_change
    AFTER INSERT OR UPDATE OF status, cancel_at, grace_ends_at ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_row_change();

DROP TRIGGER tenant_branding_publish_change ON tenant_branding;
CREATE TRIGGER tenant_branding_publish_change
    AFTER INSERT OR UPDATE OR DELETE ON tenant_branding
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_row_change();

DROP FUNCTION silo_publish_domain_change();
DROP FUNCTION silo_publish_module_change();
DROP FUNCTION silo_publish_api_key_change();
