-- API keys of tenants and sealed integration credentials.
--
-- An API key is shown once as `silo_<prefix>_<secret>`; only the prefix (for lookup) and the
-- SHA-256 of the secret are stored. Keys act with their own role, never as an owner.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix        text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z2-7]{8}$'),
    secret_hash   bytea NOT NULL CHECK (length(secret_hash) = 32),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role          text NOT NULL CHECK (role IN ('staff', 'read_only')),
    -- The actor that created it, as in the audit log (`tenant:<slug>:user:<id>`).
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Written at most about once a minute per key, not on every request.
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);

-- Routers cache keys by prefix; a key's creation, revocation or removal is published on the
-- tenant channel with its prefix, so every router drops that entry at once. `last_used_at` is
-- not among the columns: using a key is no change worth telling anyone about.
CREATE FUNCTION silo_publish_api_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed api_keys;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_notify('silo_tenant_changes',
                      json_build_object('id', changed.tenant_id,
                                        'slug', (SELECT slug FROM tenants WHERE id = changed.tenant_id),
                                        'api_key', changed.prefix)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER api_keys_publish_change
    AFTER INSERT OR DELETE OR UPDATE OF prefix, secret_hash, role, tenant_id, revoked_at
    ON api_keys
    FOR EACH ROW EXECUTE FUNCTION silo_publish_api_key_change();

-- Credentials a tenant connects (a marketplace or shipping API token), sealed with the master
-- keyring (XChaCha20-Poly1305, associated data = purpose ‖ tenant id ‖ name, so a blob copied
-- onto another tenant or name fails to open). Only the last four characters are kept in clear.
CREATE TABLE tenant_integrations (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{1,39}$'),
    sealed_secret  bytea NOT NULL,
    key_id         text NOT NULL,
    last4          text NOT NULL CHECK (length(last4) <= 4),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
