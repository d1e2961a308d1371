-- Tenant sessions ended before they expire: one session (its user signed out) or every session
-- of a user issued before a moment (their password was reset). Session tokens are sealed and
-- carry their own expiry, so this is the one place that can end one early. Routers hold these
-- rows in memory and reload a tenant's when told on the tenant channel; rows go once the
-- sessions they end would have expired anyway.
CREATE TABLE ended_sessions (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id  uuid,
    user_id     bigint,
    ended_at    timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((session_id IS NULL) <> (user_id IS NULL))
);
CREATE INDEX ended_sessions_tenant_idx ON ended_sessions (tenant_id);
CREATE INDEX ended_sessions_expires_idx ON ended_sessions (expires_at);

CREATE TRIGGER ended_sessions_publish_change
    AFTER INSERT ON ended_sessions
    FOR EACH ROW EXECUTE FUNCTION silo_publish_tenant_row_change('sessions_ended', 'tenant_id');
