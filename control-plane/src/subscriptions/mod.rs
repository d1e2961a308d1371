//! The subscription lifecycle: `trial → active → past_due → suspended → cancelled`, as a state
//! machine whose allowed transitions are [`SubscriptionStatus::can_become`]. Every transition
//! runs in one transaction that locks the subscription row, checks the transition, records it
//! (`subscription_transitions` and the audit log, with before and after) and makes access
//! follow: `suspended` suspends the tenant, leaving `suspended` reactivates it, `cancelled`
//! starts offboarding. The routers hear of it on commit (the tables' triggers).
//!
//! Time moves the machine too: [`Store::apply_due_transitions`] (run by a worker job) ends
//! trials, suspends past-due subscriptions whose grace ran out and carries out cancellations
//! scheduled for the end of the paid period.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::mail::{Mail, MailJob, enqueue_mail};
use crate::store::{StoreError, StoreResult, insert_audit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Free trial until `trial_ends_at`.
    Trial,
    /// Paid up.
    Active,
    /// A payment failed (or the trial ended unpaid): still served, with a warning, until
    /// `grace_ends_at`.
    PastDue,
    /// Not served (403 `tenant_suspended`); its data is kept.
    Suspended,
    /// Ended: the tenant is offboarded (exported, then dropped after the offboarding grace).
    Cancelled,
}

use SubscriptionStatus::{Active, Cancelled, PastDue, Suspended, Trial};

/// Every allowed transition. Anything else is refused with `invalid_transition`.
pub const TRANSITIONS: &[(SubscriptionStatus, SubscriptionStatus)] = &[
    (Trial, Active),
    (Trial, PastDue),
    (Trial, Suspended),
    (Trial, Cancelled),
    (Active, PastDue),
    (Active, Suspended),
    (Active, Cancelled),
    (PastDue, Active),
    (PastDue, Trial),
    (PastDue, Suspended),
    (PastDue, Cancelled),
    (Suspended, Active),
    (Suspended, Trial),
    (Suspended, PastDue),
    (Suspended, Cancelled),
];

pub const ALL_STATUSES: [SubscriptionStatus; 5] = [Trial, Active, PastDue, Suspended, Cancelled];

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Trial => "trial",
            Active => "active",
            PastDue => "past_due",
            Suspended => "suspended",
            Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        ALL_STATUSES
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Whether the machine may go from `self` to `to`. Staying put is never a transition;
    /// extending a trial is its own operation ([`Store::extend_trial`]).
    pub fn can_become(self, to: SubscriptionStatus) -> bool {
        TRANSITIONS.contains(&(self, to))
    }
}

/// The durations the lifecycle runs on (from `[billing]` and `[offboarding]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    /// How long a new tenant's trial lasts.
    pub trial: Duration,
    /// How long a past-due subscription is still served before it is suspended.
    pub past_due_grace: Duration,
    /// How long a cancelled tenant's database is kept before it is dropped.
    pub offboarding_grace: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub tenant_id: Uuid,
    pub status: SubscriptionStatus,
    pub billing_interval: String,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub past_due_since: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub cancel_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    #[serde(skip)]
    pub stripe_state_at: Option<DateTime<Utc>>,
    /// While suspended: the state it was suspended from, where reactivation returns.
    pub suspended_from: Option<SubscriptionStatus>,
}

impl Subscription {
    /// Where `action` takes this subscription as of `now`, or why the machine refuses it: the
    /// one decision that the store carries out and the admin console's confirmation shows.
    /// Scheduling or withdrawing a cancellation leaves the state as it is.
    pub fn after(&self, action: Action, now: DateTime<Utc>) -> StoreResult<SubscriptionStatus> {
        let refuse = |to: &'static str| StoreError::InvalidTransition {
            from: self.status.as_str(),
            to,
        };
        let allowed = |to: SubscriptionStatus| {
            self.status
                .can_become(to)
                .then_some(to)
                .ok_or_else(|| refuse(to.as_str()))
        };
        match action {
            Action::Suspend => allowed(Suspended),
            Action::Reactivate => {
                if self.status != Suspended {
                    return Err(refuse("reactivated"));
                }
                allowed(self.reactivation_target(now))
            }
            Action::CancelNow => allowed(Cancelled),
            Action::CancelAtPeriodEnd | Action::KeepSubscription => {
                allowed(Cancelled).map(|_| self.status)
            }
        }
    }

    /// The state a suspended subscription returns to when reactivated: the one it was
    /// suspended from. A trial stays a trial (with its end date) while that end is ahead, and is
    /// `past_due` once it has passed — a trial never becomes a paid subscription by being
    /// suspended and reactivated. A past-due one is past due again (its grace counted from the
    /// reactivation); a paid one is `active`. Where the earlier state is not recorded (suspended
    /// before it was), `past_due`: served, with a warning, until paid.
    fn reactivation_target(&self, now: DateTime<Utc>) -> SubscriptionStatus {
        match self.suspended_from {
            Some(Trial) if self.trial_ends_at.is_some_and(|ends| ends > now) => Trial,
            Some(Active) => Active,
            _ => PastDue,
        }
    }

    /// Whether an operator may extend (or restart) this subscription's trial.
    pub fn may_extend_trial(&self) -> bool {
        self.status == Trial || self.status.can_become(Trial)
    }

    /// Where the trial would end if extended by `by`: from its current end, or from `now` if
    /// it has lapsed (or never had one). Past the calendar's end it stops there, never panics.
    pub fn trial_extended_by(&self, by: chrono::Duration, now: DateTime<Utc>) -> DateTime<Utc> {
        let from = self.trial_ends_at.filter(|ends| *ends > now).unwrap_or(now);
        from.checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The furthest ahead an operator may set a trial's end, an add-on's expiry or a grace period
/// (five years): further is a typing mistake, and far enough out it overflows date arithmetic.
pub fn max_ahead() -> chrono::Duration {
    chrono::Duration::days(5 * 366)
}

/// A duration an operator typed (`7days`, `36h`), if it parses and is above zero and at most
/// [`max_ahead`].
pub fn parse_span(text: &str) -> Option<chrono::Duration> {
    humantime::parse_duration(text.trim())
        .ok()
        .and_then(|span| chrono::Duration::from_std(span).ok())
        .filter(|span| *span > chrono::Duration::zero() && *span <= max_ahead())
}

/// A grace period an operator typed (`30days`, `0s`), if it parses and is at most
/// [`max_ahead`].
pub fn parse_grace(text: &str) -> Option<std::time::Duration> {
    humantime::parse_duration(text.trim())
        .ok()
        .filter(|grace| chrono::Duration::from_std(*grace).is_ok_and(|grace| grace <= max_ahead()))
}

/// Whether `at` is after `now` and at most [`max_ahead`] from it.
pub fn within_reach(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    at > now && at - now <= max_ahead()
}

/// How [`Store::extend_trial`] extends a trial.
#[derive(Debug, Clone, Copy)]
pub enum TrialExtension {
    Until(DateTime<Utc>),
    By(chrono::Duration),
}

/// A `subscriptions` row; its status is checked (an unknown one reads as no subscription).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SubscriptionRow {
    tenant_id: Uuid,
    status: String,
    billing_interval: String,
    trial_ends_at: Option<DateTime<Utc>>,
    current_period_end: Option<DateTime<Utc>>,
    past_due_since: Option<DateTime<Utc>>,
    grace_ends_at: Option<DateTime<Utc>>,
    cancel_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    stripe_state_at: Option<DateTime<Utc>>,
    suspended_from: Option<String>,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = StoreError;

    fn try_from(row: SubscriptionRow) -> StoreResult<Self> {
        Ok(Subscription {
            tenant_id: row.tenant_id,
            status: SubscriptionStatus::parse(&row.status).ok_or(StoreError::NotFound)?,
            billing_interval: row.billing_interval,
            trial_ends_at: row.trial_ends_at,
            current_period_end: row.current_period_end,
            past_due_since: row.past_due_since,
            grace_ends_at: row.grace_ends_at,
            cancel_at: row.cancel_at,
            cancelled_at: row.cancelled_at,
            stripe_customer_id: row.stripe_customer_id,
            stripe_subscription_id: row.stripe_subscription_id,
            stripe_state_at: row.stripe_state_at,
            suspended_from: row
                .suspended_from
                .as_deref()
                .and_then(SubscriptionStatus::parse),
        })
    }
}

/// One recorded transition.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Transition {
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    pub actor: String,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// What a transition is asked to do besides changing the state.
#[derive(Debug, Clone)]
pub(crate) struct Effects {
    /// A new end of the trial (when entering `trial`).
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// When the new state began, if not now: a trial that ended at its end date is past due
    /// (and its grace runs) from then, however late the clock noticed.
    pub since: Option<DateTime<Utc>>,
    /// Recorded with the transition (e.g. the Stripe event id).
    pub detail: serde_json::Value,
}

impl Default for Effects {
    fn default() -> Self {
        Self {
            trial_ends_at: None,
            since: None,
            detail: serde_json::json!({}),
        }
    }
}

/// How many subscriptions one pass of [`Store::apply_due_transitions`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DueTransitions {
    /// "Your trial ends soon" mails queued.
    pub trial_reminders: usize,
    pub trials_ended: usize,
    pub suspended: usize,
    pub cancelled: usize,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Creates a new tenant's subscription in its trial (inside the signup's transaction).
pub(crate) async fn start_trial(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    trial: Duration,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO subscriptions (tenant_id, status, trial_ends_at) \
         VALUES ($1, 'trial', now() + make_interval(secs => $2))",
    )
    .bind(tenant_id)
    .bind(seconds(trial))
    .execute(&mut **transaction)
    .await?;
    // Recorded as a transition only: signups themselves are not audited.
    sqlx::query(
        "INSERT INTO subscription_transitions (tenant_id, from_status, to_status, reason, actor, detail) \
         VALUES ($1, NULL, 'trial', 'signup', 'system:signup', $2)",
    )
    .bind(tenant_id)
    .bind(serde_json::json!({"trial_seconds": seconds(trial)}))
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

async fn record_transition(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    from: Option<SubscriptionStatus>,
    to: SubscriptionStatus,
    reason: &str,
    actor: &str,
    detail: serde_json::Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO subscription_transitions (tenant_id, from_status, to_status, reason, actor, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant_id)
    .bind(from.map(SubscriptionStatus::as_str))
    .bind(to.as_str())
    .bind(reason)
    .bind(actor)
    .bind(&detail)
    .execute(&mut **transaction)
    .await?;
    insert_audit(
        transaction,
        actor,
        &format!("subscription.{}", to.as_str()),
        Some(tenant_id),
        serde_json::json!({
            "before": from.map(SubscriptionStatus::as_str),
            "after": to.as_str(),
            "reason": reason,
            "detail": detail,
        }),
    )
    .await
}

/// Locks and reads a subscription inside `transaction`.
pub(crate) async fn lock(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
) -> StoreResult<Subscription> {
    sqlx::query_as::<_, SubscriptionRow>(
        "SELECT * FROM subscriptions WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant_id)
    .fetch_optional(&mut **transaction)
    .await?
    .ok_or(StoreError::NotFound)?
    .try_into()
}

/// Moves a locked subscription to `to` if the machine allows it, records the transition and
/// makes the tenant's access follow. Callers hold the row lock (see [`lock`]).
pub(crate) async fn transition(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    current: &Subscription,
    to: SubscriptionStatus,
    reason: &str,
    actor: &str,
    lifecycle: &Lifecycle,
    effects: Effects,
) -> StoreResult<()> {
    let from = current.status;
    if !from.can_become(to) {
        return Err(StoreError::InvalidTransition {
            from: from.as_str(),
            to: to.as_str(),
        });
    }
    let tenant_id = current.tenant_id;
    match to {
        Trial => {
            sqlx::query(
                "UPDATE subscriptions SET status = 'trial', trial_ends_at = $2, \
                 past_due_since = NULL, grace_ends_at = NULL, updated_at = now() WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .bind(effects.trial_ends_at.unwrap_or_else(|| {
                Utc::now() + chrono::Duration::from_std(lifecycle.trial).unwrap_or_default()
            }))
            .execute(&mut **transaction)
            .await?;
        }
        Active => {
            sqlx::query(
                "UPDATE subscriptions SET status = 'active', past_due_since = NULL, \
                 grace_ends_at = NULL, updated_at = now() WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .execute(&mut **transaction)
            .await?;
        }
        PastDue => {
            sqlx::query(
                "UPDATE subscriptions SET status = 'past_due', past_due_since = coalesce($3, now()), \
                 grace_ends_at = coalesce($3, now()) + make_interval(secs => $2), updated_at = now() \
                 WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .bind(seconds(lifecycle.past_due_grace))
            .bind(effects.since)
            .execute(&mut **transaction)
            .await?;
        }
        Suspended => {
            sqlx::query(
                "UPDATE subscriptions SET status = 'suspended', suspended_from = $2, \
                 updated_at = now() WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .bind(from.as_str())
            .execute(&mut **transaction)
            .await?;
        }
        Cancelled => {
            sqlx::query(
                "UPDATE subscriptions SET status = 'cancelled', cancelled_at = now(), cancel_at = NULL, \
                 grace_ends_at = NULL, updated_at = now() WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .execute(&mut **transaction)
            .await?;
        }
    }
    if from == Suspended {
        sqlx::query("UPDATE subscriptions SET suspended_from = NULL WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&mut **transaction)
            .await?;
    }
    record_transition(
        transaction,
        tenant_id,
        Some(from),
        to,
        reason,
        actor,
        effects.detail,
    )
    .await?;
    // Access follows the subscription. Only a served (or billing-suspended) tenant is touched:
    // one still provisioning keeps provisioning and picks up the state when it is served.
    match to {
        Suspended => {
            sqlx::query(
                "UPDATE tenants SET status = 'suspended', updated_at = now() \
                 WHERE id = $1 AND status = 'active'",
            )
            .bind(tenant_id)
            .execute(&mut **transaction)
            .await?;
        }
        Cancelled => {
            cancel_tenant_in(transaction, tenant_id, lifecycle.offboarding_grace, actor).await?;
        }
        Trial | Active | PastDue if from == Suspended => {
            sqlx::query(
                "UPDATE tenants SET status = 'active', updated_at = now() \
                 WHERE id = $1 AND status = 'suspended'",
            )
            .bind(tenant_id)
            .execute(&mut **transaction)
            .await?;
        }
        Trial | Active | PastDue => {}
    }
    // The owner hears of a failed payment and of a suspension, by a mail queued with the change.
    if matches!(to, PastDue | Suspended) {
        queue_billing_mail(transaction, tenant_id, to).await?;
    }
    Ok(())
}

/// Queues the owner's mail about the subscription having just become `to` (past due or
/// suspended), inside the transition's transaction.
async fn queue_billing_mail(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    to: SubscriptionStatus,
) -> StoreResult<()> {
    let (admin_email, grace_ends_at): (String, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT t.admin_email, s.grace_ends_at FROM tenants t \
         JOIN subscriptions s ON s.tenant_id = t.id WHERE t.id = $1",
    )
    .bind(tenant_id)
    .fetch_one(&mut **transaction)
    .await?;
    let mail = match to {
        PastDue => Mail::PaymentFailed { grace_ends_at },
        _ => Mail::Suspended,
    };
    let job = MailJob {
        tenant_id,
        to: admin_email,
        mail,
    };
    enqueue_mail(transaction, &job).await
}

/// Marks the tenant cancelled (not served from now; exported, then dropped after `grace`) and
/// audits it. A tenant already cancelled or gone is left alone.
pub(crate) async fn cancel_tenant_in(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    grace: Duration,
    actor: &str,
) -> StoreResult<bool> {
    let before: Option<String> =
        sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant_id)
            .fetch_optional(&mut **transaction)
            .await?;
    let before = before.ok_or(StoreError::NotFound)?;
    if matches!(before.as_str(), "cancelled" | "deprovisioned") {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE tenants SET status = 'cancelled', cancelled_at = now(), \
         purge_after = now() + make_interval(secs => $2), updated_at = now() WHERE id = $1",
    )
    .bind(tenant_id)
    .bind(seconds(grace))
    .execute(&mut **transaction)
    .await?;
    insert_audit(
        transaction,
        actor,
        "tenant.cancel",
        Some(tenant_id),
        serde_json::json!({"before": before, "after": "cancelled", "grace_seconds": seconds(grace)}),
    )
    .await?;
    Ok(true)
}

/// What an operator (or the tenant's owner) asks of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Suspend,
    /// Back from `suspended` to the state it was suspended from
    /// ([`Subscription::after`] says which).
    Reactivate,
    /// Cancel now: access ends and offboarding starts.
    CancelNow,
    /// Keep access until the end of the paid period (or the trial), then cancel.
    CancelAtPeriodEnd,
    /// Undo a scheduled cancellation.
    KeepSubscription,
}

mod operations;
pub use operations::run_billing_clock;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_allows_exactly_the_documented_transitions() {
        // The lifecycle as README.md documents it, written out independently of TRANSITIONS.
        let documented: [(&str, &[&str]); 5] = [
            ("trial", &["active", "past_due", "suspended", "cancelled"]),
            ("active", &["past_due", "suspended", "cancelled"]),
            ("past_due", &["active", "trial", "suspended", "cancelled"]),
            ("suspended", &["active", "trial", "past_due", "cancelled"]),
            ("cancelled", &[]),
        ];
        for (from, allowed) in documented {
            let from = SubscriptionStatus::parse(from).unwrap();
            for to in ALL_STATUSES {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&to.as_str()),
                    "{from:?} → {to:?}"
                );
            }
        }
    }

    fn subscription(
        status: SubscriptionStatus,
        suspended_from: Option<SubscriptionStatus>,
        trial_ends_in_days: Option<i64>,
    ) -> Subscription {
        let now = Utc::now();
        Subscription {
            tenant_id: Uuid::nil(),
            status,
            billing_interval: "month".to_owned(),
            trial_ends_at: trial_ends_in_days.map(|days| now + chrono::Duration::days(days)),
            current_period_end: None,
            past_due_since: None,
            grace_ends_at: None,
            cancel_at: None,
            cancelled_at: None,
            stripe_customer_id: None,
            stripe_subscription_id: None,
            stripe_state_at: None,
            suspended_from,
        }
    }

    /// (state, suspended from, trial ends in days, action, after — `None`: refused)
    type Case = (
        SubscriptionStatus,
        Option<SubscriptionStatus>,
        Option<i64>,
        Action,
        Option<SubscriptionStatus>,
    );

    #[test]
    fn each_action_moves_exactly_where_the_machine_allows() {
        use Action::*;
        use SubscriptionStatus::{Active, Cancelled, PastDue, Suspended, Trial};
        // (state, suspended from, trial ends in days, action, after — None: refused)
        let cases: &[Case] = &[
            (Trial, None, Some(5), Suspend, Some(Suspended)),
            (Trial, None, Some(5), Reactivate, None),
            (Trial, None, Some(5), CancelNow, Some(Cancelled)),
            (Trial, None, Some(5), CancelAtPeriodEnd, Some(Trial)),
            (Active, None, None, Suspend, Some(Suspended)),
            (Active, None, None, Reactivate, None),
            (PastDue, None, None, Reactivate, None),
            (PastDue, None, None, Suspend, Some(Suspended)),
            // Reactivation returns to where the suspension came from: never a free upgrade.
            (Suspended, Some(Trial), Some(5), Reactivate, Some(Trial)),
            (Suspended, Some(Trial), Some(-1), Reactivate, Some(PastDue)),
            (Suspended, Some(Active), None, Reactivate, Some(Active)),
            (Suspended, Some(PastDue), None, Reactivate, Some(PastDue)),
            (Suspended, None, Some(5), Reactivate, Some(PastDue)),
            (Suspended, Some(Trial), Some(5), Suspend, None),
            (Suspended, Some(Active), None, CancelNow, Some(Cancelled)),
            (Cancelled, None, None, Reactivate, None),
            (Cancelled, None, None, Suspend, None),
            (Cancelled, None, None, CancelNow, None),
            (Cancelled, None, None, KeepSubscription, None),
        ];
        for &(status, suspended_from, trial_ends, action, expected) in cases {
            let current = subscription(status, suspended_from, trial_ends);
            assert_eq!(
                current.after(action, Utc::now()).ok(),
                expected,
                "{status:?} (suspended from {suspended_from:?}, trial ends in {trial_ends:?} days) + {action:?}"
            );
        }
    }

    #[test]
    fn only_a_trial_or_a_state_that_may_become_one_extends_a_trial() {
        use SubscriptionStatus::{Active, Cancelled, PastDue, Suspended, Trial};
        for (status, allowed) in [
            (Trial, true),
            (PastDue, true),
            (Suspended, true),
            (Active, false),
            (Cancelled, false),
        ] {
            assert_eq!(
                subscription(status, None, Some(1)).may_extend_trial(),
                allowed,
                "{status:?}"
            );
        }
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in ALL_STATUSES {
            assert_eq!(SubscriptionStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(SubscriptionStatus::parse("trialing"), None);
    }
}
