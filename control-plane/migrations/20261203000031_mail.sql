-- Mail: password reset links are one-time links of their own purpose (subject `user:<id>`),
-- and a subscription remembers when its "trial ends soon" mail was queued, so the billing
-- clock queues it once.
ALTER TABLE one_time_links DROP CONSTRAINT one_time_links_purpose_check;
ALTER TABLE one_time_links ADD CONSTRAINT one_time_links_purpose_check
    CHECK (purpose IN ('signup_landing', 'sign_in', 'password_reset'));

ALTER TABLE subscriptions ADD COLUMN trial_reminder_sent_at timestamptz;
