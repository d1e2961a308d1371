-- Subscriptions: the billing state of each tenant, as a state machine whose allowed transitions
-- live in the code (control-plane/src/subscriptions.rs); every transition is a row in
-- subscription_transitions. Access follows the state: `suspended` here sets the tenant's own
-- status to `suspended` (and back), `cancelled` starts offboarding.
CREATE TABLE subscriptions (
    tenant_id               uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    status                  text NOT NULL
                            CHECK (status IN ('trial', 'active', 'past_due', 'suspended', 'cancelled')),
    billing_interval        text NOT NULL DEFAULT 'month' CHECK (billing_interval IN ('month', 'year')),
    trial_ends_at           timestamptz,
    current_period_end      timestamptz,
    past_due_since          timestamptz,
    -- When a past_due subscription is suspended unless paid.
    grace_ends_at           timestamptz,
    -- A cancellation scheduled for the end of the paid period: access is kept until then.
    cancel_at               timestamptz,
    cancelled_at            timestamptz,
    stripe_customer_id      text UNIQUE,
    stripe_subscription_id  text UNIQUE,
    -- The `created` time of the newest Stripe event applied: older events arriving late are
    -- recorded but do not move the state back.
    stripe_state_at         timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'trial' OR trial_ends_at IS NOT NULL),
    CHECK (status <> 'past_due' OR grace_ends_at IS NOT NULL)
);
CREATE INDEX subscriptions_due_idx ON subscriptions (status, trial_ends_at, grace_ends_at, cancel_at);

CREATE TABLE subscription_transitions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    from_status  text,
    to_status    text NOT NULL,
    reason       text NOT NULL,
    actor        text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}',
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_transitions_tenant_idx ON subscription_transitions (tenant_id, id);

-- Every Stripe event received, once: its id is the idempotency key.
CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    created      timestamptz NOT NULL,
    tenant_id    uuid REFERENCES tenants (id) ON DELETE SET NULL,
    -- applied | stale (older than the state already applied) | refused (transition not allowed)
    -- | unmatched (no tenant found) | ignored (a type Silo does not act on)
    outcome      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- Tenants that existed before billing are kept serving: they start `active`.
INSERT INTO subscriptions (tenant_id, status)
    SELECT id, 'active' FROM tenants WHERE status NOT IN ('cancelled', 'deprovisioned');
INSERT INTO subscription_transitions (tenant_id, from_status, to_status, reason, actor)
    SELECT tenant_id, NULL, 'active', 'billing_introduced', 'system:migration' FROM subscriptions;

-- A subscription change reaches the routers (past_due is served with a warning header), through
-- migration 0008's publisher for rows that belong to a tenant (it reads `tenant_id`).
CREATE TRIGGER subscriptions_publish_change
    AFTER INSERT OR UPDATE OF status, cancel_at, grace_ends_at ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION silo_publish_module_change();
