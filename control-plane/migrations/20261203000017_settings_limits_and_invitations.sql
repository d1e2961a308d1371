-- Count limits on what an owner stores in the control plane (issue 14, item 8): custom domains,
-- API keys (not revoked), integration credentials and pending invitations. They guard storage
-- rather than sell features, so even Enterprise has a (generous) number; NULL = unlimited.
ALTER TABLE plans
    ADD COLUMN max_custom_domains       integer CHECK (max_custom_domains > 0),
    ADD COLUMN max_api_keys             integer CHECK (max_api_keys > 0),
    ADD COLUMN max_integrations         integer CHECK (max_integrations > 0),
    ADD COLUMN max_pending_invitations  integer CHECK (max_pending_invitations > 0);

UPDATE plans SET max_custom_domains = 1, max_api_keys = 2, max_integrations = 5,
                 max_pending_invitations = 5 WHERE code = 'starter';
UPDATE plans SET max_custom_domains = 5, max_api_keys = 10, max_integrations = 25,
                 max_pending_invitations = 20 WHERE code = 'professional';
UPDATE plans SET max_custom_domains = 50, max_api_keys = 100, max_integrations = 100,
                 max_pending_invitations = 100 WHERE code = 'enterprise';

-- Invitations an owner made: the link's token stays sealed and stateless (email, role, expiry),
-- and carries this row's id, so a pending invitation can be listed, revoked and used once.
CREATE TABLE tenant_invitations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email        text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    role         text NOT NULL CHECK (role IN ('owner', 'staff', 'read_only')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX tenant_invitations_pending_idx ON tenant_invitations (tenant_id, id)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
