-- One-time links: a random token, kept only as its SHA-256, bound to one tenant and one purpose,
-- with an expiry and (for single-use purposes) the moment it was used. A signup's landing key
-- (lets the browser that signed up fetch sign-in links while it waits) and the sign-in links
-- themselves live here; password resets will too.
CREATE TABLE one_time_links (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    purpose     text NOT NULL CHECK (purpose IN ('signup_landing', 'sign_in')),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Whom the link is for, in the tenant's terms (an email for both purposes so far).
    subject     text NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX one_time_links_expiry ON one_time_links (expires_at);
CREATE INDEX one_time_links_tenant ON one_time_links (tenant_id);
