-- Custom domains as claims: while nobody has verified a domain, several tenants may claim it,
-- each with its own token, and the TXT record at `_silo-challenge.<domain>` decides who owns it
-- (the first claim no longer blocks the real owner). A verified claim is unique, routes the
-- domain and wins: verifying one removes the other tenants' claims, and no new claim is taken
-- while it stands. An unverified claim expires (`expires_at`, from `[domains] claim_ttl`).
ALTER TABLE tenant_domains DROP CONSTRAINT tenant_domains_pkey;
ALTER TABLE tenant_domains ADD PRIMARY KEY (domain, tenant_id);
CREATE UNIQUE INDEX tenant_domains_verified_idx ON tenant_domains (domain)
    WHERE verified_at IS NOT NULL;
ALTER TABLE tenant_domains ADD COLUMN expires_at timestamptz;
UPDATE tenant_domains SET expires_at = created_at + interval '7 days' WHERE verified_at IS NULL;
ALTER TABLE tenant_domains ADD CONSTRAINT tenant_domains_claim_expires
    CHECK ((verified_at IS NULL) = (expires_at IS NOT NULL));

-- Deprovisioned tenants release their domains (done at deprovisioning from now on).
DELETE FROM tenant_domains
    WHERE tenant_id IN (SELECT id FROM tenants WHERE status = 'deprovisioned');
