-- Plans and modules. A tenant has one plan; its modules are the plan's plus any add-ons (an
-- add-on may expire, e.g. a trial of a module). Limits NULL = unlimited.
CREATE TABLE plans (
    code                  text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name                  text NOT NULL,
    monthly_price_cents   bigint NOT NULL CHECK (monthly_price_cents >= 0),
    yearly_price_cents    bigint NOT NULL CHECK (yearly_price_cents >= 0),
    max_branches          integer CHECK (max_branches > 0),
    max_users             integer CHECK (max_users > 0),
    max_items             integer CHECK (max_items > 0),
    requests_per_second   integer CHECK (requests_per_second > 0),
    modules               text[] NOT NULL,
    position              integer NOT NULL
);

INSERT INTO plans (code, name, monthly_price_cents, yearly_price_cents, max_branches, max_users,
                   max_items, requests_per_second, modules, position) VALUES
    ('starter', 'Starter', 2900, 29000, 1, 5, 10000, 50,
     ARRAY['inventory', 'sales', 'purchases'], 1),
    ('professional', 'Professional', 9900, 99000, 5, 20, 50000, 200,
     ARRAY['inventory', 'sales', 'purchases', 'reports', 'stock_take', 'multi_branch',
           'api_access', 'advanced_reports', 'custom_branding'], 2),
    ('enterprise', 'Enterprise', 29900, 299000, NULL, NULL, NULL, NULL,
     ARRAY['inventory', 'sales', 'purchases', 'reports', 'stock_take', 'multi_branch',
           'api_access', 'advanced_reports', 'custom_branding'], 3);

ALTER TABLE tenants ADD COLUMN plan_code text NOT NULL DEFAULT 'starter' REFERENCES plans (code);

CREATE TABLE tenant_modules (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    module      text NOT NULL,
    expires_at  timestamptz,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, module)
);

-- A plan change reaches the routers like any other routing change.
DROP TRIGGER tenants_publish_change ON tenants;
CREATE TRIGGER tenants_publish_change
    AFTER INSERT OR UPDATE OF slug, status, host_id, database_name, sealed_database_url, plan_code
    ON tenants
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_change();

CREATE FUNCTION silo_publish_module_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed_tenant uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed_tenant := OLD.tenant_id;
    ELSE
        changed_tenant := NEW.tenant_id;
    END IF;
    PERFORM pg_notify('silo_tenant_changes',
                      json_build_object('id', changed_tenant,
                                        'slug', (SELECT slug FROM tenants WHERE id = changed_tenant))::text);
    RETURN NULL;
END $$;
CREATE TRIGGER tenant_modules_publish_change
    AFTER INSERT OR UPDATE OR DELETE ON tenant_modules
    FOR EACH ROW EXECUTE FUNCTION silo_publish_module_change();
