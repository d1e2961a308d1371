-- Reactivation returns a subscription to the state it was suspended from (a trial stays a
-- trial, never a free upgrade to `active`), so a suspension records where it came from.
ALTER TABLE subscriptions ADD COLUMN suspended_from text
    CHECK (suspended_from IN ('trial', 'active', 'past_due'));

-- Subscriptions suspended before this column existed: the state their last suspension left.
UPDATE subscriptions s SET suspended_from = (
    SELECT t.from_status FROM subscription_transitions t
    WHERE t.tenant_id = s.tenant_id AND t.to_status = 'suspended'
      AND t.from_status IN ('trial', 'active', 'past_due')
    ORDER BY t.id DESC LIMIT 1)
WHERE s.status = 'suspended';
