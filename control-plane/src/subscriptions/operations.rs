//! What moves a subscription besides Stripe: operator actions (suspend, reactivate, cancel now or
//! at the period's end, keep, extend the trial), the time-based transitions the billing clock
//! applies, and the clock's worker loop. Each goes through [`super::transition`].

use crate::store::{Store, StoreError, StoreResult, insert_audit};
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

use super::*;

impl Store {
    pub async fn subscription(&self, tenant_id: Uuid) -> StoreResult<Subscription> {
        sqlx::query_as::<_, SubscriptionRow>("SELECT * FROM subscriptions WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?
            .try_into()
    }

    /// The tenant's recorded transitions, oldest first.
    pub async fn subscription_transitions(&self, tenant_id: Uuid) -> StoreResult<Vec<Transition>> {
        let transitions = sqlx::query_as(
            "SELECT from_status, to_status, reason, actor, detail, at FROM subscription_transitions \
             WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        Ok(transitions)
    }

    /// Applies an operator's action; refused (changing nothing) when the machine does not allow it.
    pub async fn change_subscription(
        &self,
        tenant_id: Uuid,
        action: Action,
        actor: &str,
        lifecycle: &Lifecycle,
    ) -> StoreResult<Subscription> {
        let mut transaction = self.pool().begin().await?;
        let current = lock(&mut transaction, tenant_id).await?;
        // The one decision, shared with the console's confirmation.
        let to = current.after(action, Utc::now())?;
        match action {
            Action::Suspend | Action::Reactivate | Action::CancelNow => {
                let reason = match action {
                    Action::Suspend => "operator_suspended",
                    Action::Reactivate => "operator_reactivated",
                    _ => "cancelled",
                };
                // A trial returns with its own end date, not a fresh one.
                let effects = Effects {
                    trial_ends_at: current.trial_ends_at,
                    ..Effects::default()
                };
                transition(
                    &mut transaction,
                    &current,
                    to,
                    reason,
                    actor,
                    lifecycle,
                    effects,
                )
                .await?;
            }
            Action::CancelAtPeriodEnd | Action::KeepSubscription => {
                let cancel_at = match action {
                    Action::CancelAtPeriodEnd => Some(
                        match current.status {
                            Trial => current.trial_ends_at,
                            _ => current.current_period_end,
                        }
                        .unwrap_or_else(Utc::now),
                    ),
                    _ => None,
                };
                sqlx::query(
                    "UPDATE subscriptions SET cancel_at = $2, updated_at = now() WHERE tenant_id = $1",
                )
                .bind(tenant_id)
                .bind(cancel_at)
                .execute(&mut *transaction)
                .await?;
                insert_audit(
                    &mut transaction,
                    actor,
                    "subscription.cancel_at",
                    Some(tenant_id),
                    serde_json::json!({"before": current.cancel_at, "after": cancel_at}),
                )
                .await?;
            }
        }
        transaction.commit().await?;
        self.subscription(tenant_id).await
    }

    /// Extends (or restarts, after it lapsed) a tenant's trial, to a moment or by a duration
    /// (read under the row lock, so two extensions at once both count).
    pub async fn extend_trial(
        &self,
        tenant_id: Uuid,
        extension: TrialExtension,
        actor: &str,
        lifecycle: &Lifecycle,
    ) -> StoreResult<Subscription> {
        let mut transaction = self.pool().begin().await?;
        let current = lock(&mut transaction, tenant_id).await?;
        let until = match extension {
            TrialExtension::Until(until) => until,
            TrialExtension::By(by) => current.trial_extended_by(by, Utc::now()),
        };
        let detail = serde_json::json!({"before": current.trial_ends_at, "after": until});
        if current.status == Trial {
            if current.trial_ends_at.is_some_and(|ends| until <= ends) {
                return Err(StoreError::InvalidTransition {
                    from: "trial",
                    to: "an earlier trial end",
                });
            }
            sqlx::query(
                "UPDATE subscriptions SET trial_ends_at = $2, updated_at = now() WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .bind(until)
            .execute(&mut *transaction)
            .await?;
            record_transition(
                &mut transaction,
                tenant_id,
                Some(Trial),
                Trial,
                "trial_extended",
                actor,
                detail,
            )
            .await?;
        } else {
            transition(
                &mut transaction,
                &current,
                Trial,
                "trial_extended",
                actor,
                lifecycle,
                Effects {
                    trial_ends_at: Some(until),
                    since: None,
                    detail,
                },
            )
            .await?;
        }
        transaction.commit().await?;
        self.subscription(tenant_id).await
    }

    /// One pass of the time-based transitions, as of `now`: ended trials → `past_due`, past-due
    /// subscriptions past their grace → `suspended`, scheduled cancellations due → `cancelled`.
    /// A tenant that never worked (still provisioning, or failed) is off the clock: its trial
    /// restarts when an operator retries it ([`Store::retry_provisioning`]).
    /// Each subscription is moved in its own transaction under its row lock, re-checked there,
    /// so several workers running this at once never apply one transition twice.
    pub async fn apply_due_transitions(
        &self,
        now: DateTime<Utc>,
        lifecycle: &Lifecycle,
    ) -> StoreResult<DueTransitions> {
        let tenant_ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT s.tenant_id FROM subscriptions s JOIN tenants t ON t.id = s.tenant_id \
             WHERE ((s.status = 'trial' AND s.trial_ends_at <= $1) \
                OR (s.status = 'past_due' AND s.grace_ends_at <= $1) \
                OR (s.status <> 'cancelled' AND s.cancel_at <= $1)) \
               AND t.status NOT IN ('provisioning', 'failed') \
             ORDER BY s.tenant_id LIMIT 1000",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let mut done = DueTransitions {
            trial_reminders: self.queue_trial_reminders(now).await?,
            ..DueTransitions::default()
        };
        for tenant_id in tenant_ids {
            let mut transaction = self.pool().begin().await?;
            let current = lock(&mut transaction, tenant_id).await?;
            let due = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= now);
            let (to, reason, since) = if current.status != Cancelled && due(current.cancel_at) {
                (Cancelled, "period_ended", current.cancel_at)
            } else if current.status == Trial && due(current.trial_ends_at) {
                (PastDue, "trial_ended", current.trial_ends_at)
            } else if current.status == PastDue && due(current.grace_ends_at) {
                (Suspended, "grace_expired", current.grace_ends_at)
            } else {
                continue;
            };
            let detail = serde_json::json!({"as_of": now});
            transition(
                &mut transaction,
                &current,
                to,
                reason,
                "system:billing",
                lifecycle,
                Effects {
                    since,
                    detail,
                    ..Effects::default()
                },
            )
            .await?;
            transaction.commit().await?;
            match to {
                PastDue => done.trials_ended += 1,
                Suspended => done.suspended += 1,
                _ => done.cancelled += 1,
            }
        }
        Ok(done)
    }
}

impl Store {
    /// Queues the "trial ends soon" mail of every served trial ending within
    /// [`TRIAL_REMINDER_BEFORE`] of `now`, once per subscription: marked and queued in one
    /// transaction, so several workers never queue it twice.
    async fn queue_trial_reminders(&self, now: DateTime<Utc>) -> StoreResult<usize> {
        let mut transaction = self.pool().begin().await?;
        let due: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE subscriptions s SET trial_reminder_sent_at = $1 FROM tenants t \
             WHERE t.id = s.tenant_id AND t.status = 'active' AND s.status = 'trial' \
             AND s.trial_reminder_sent_at IS NULL AND s.trial_ends_at > $1 \
             AND s.trial_ends_at <= $1 + make_interval(secs => $2) \
             RETURNING s.tenant_id, t.admin_email, s.trial_ends_at",
        )
        .bind(now)
        .bind(TRIAL_REMINDER_BEFORE.as_secs_f64())
        .fetch_all(&mut *transaction)
        .await?;
        for (tenant_id, to, trial_ends_at) in &due {
            let job = MailJob {
                tenant_id: *tenant_id,
                to: to.clone(),
                mail: Mail::TrialEnding {
                    trial_ends_at: *trial_ends_at,
                },
            };
            enqueue_mail(&mut transaction, &job).await?;
        }
        transaction.commit().await?;
        Ok(due.len())
    }
}

/// How long before a trial ends its owner is told.
pub const TRIAL_REMINDER_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);

/// Applies time-based transitions every `interval` until `shutdown` resolves (a worker job).
pub async fn run_billing_clock(
    store: Store,
    lifecycle: Lifecycle,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        loop {
            match store.apply_due_transitions(Utc::now(), &lifecycle).await {
                Ok(done) if done != DueTransitions::default() => {
                    tracing::info!(?done, "subscription transitions applied");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "billing pass failed; will try again"),
            }
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        () = work => {},
        () = shutdown => {},
    }
}
