//! Stripe: verifying and applying the signed webhook events that move subscriptions (the HTTP
//! handler is the apex's); the outbound calls (customers, checkout sessions) are [`client`].
//!
//! Invariants: nothing is read from an event before its `Stripe-Signature` verified (HMAC-SHA256
//! over `timestamp.payload` with the signing secret, any of the `v1` signatures, constant-time,
//! timestamp within five minutes); each event id is processed once, in the same transaction as
//! its effect (`stripe_events`), so a redelivery changes nothing; an event older than the state
//! already applied to its subscription (`stripe_state_at`) is recorded as `stale` and changes
//! nothing, so out-of-order delivery cannot move a subscription back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use crate::store::{Store, StoreResult, insert_audit};
use crate::subscriptions::{self, Effects, Lifecycle, SubscriptionStatus};

mod client;
pub use client::{CheckoutSession, PortalSession, StripeClient, StripeError};

/// How far a signature's timestamp may be from now.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a webhook was refused (all 400 `invalid_signature`; the message says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature's timestamp is more than five minutes from now")]
    Stale,
    #[error("no v1 signature matches the payload")]
    Mismatch,
}

/// Verifies a `Stripe-Signature` header (`t=…,v1=…[,v1=…][,v0=…]`) for `payload` at `now`
/// (Unix seconds), as Stripe specifies. Returns the signed timestamp.
pub fn verify_signature(
    header: Option<&str>,
    payload: &[u8],
    secret: &SecretString,
    now: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let tolerance = i64::try_from(SIGNATURE_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let matched = signatures.iter().any(|signature| {
        hex::decode(signature).is_ok_and(|bytes| mac.clone().verify_slice(&bytes).is_ok())
    });
    if matched {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The parts of a Stripe event Silo reads.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: Value,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before (redelivery): nothing done.
    Duplicate,
    /// Older than the state already applied: recorded, nothing changed.
    Stale,
    /// The state machine does not allow what the event asks: recorded, nothing changed.
    Refused,
    /// No tenant matches the event's metadata, customer or subscription.
    Unmatched,
    /// An event type Silo does not act on.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Refused => "refused",
            Outcome::Unmatched => "unmatched",
            Outcome::Ignored => "ignored",
        }
    }
}

const HANDLED: [&str; 6] = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
];

pub(crate) fn text<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

fn unix_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_i64)
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
}

/// Stripe's subscription status → Silo's (`None`: not a state Silo acts on, e.g. `incomplete`).
fn map_stripe_status(status: &str) -> Option<SubscriptionStatus> {
    Some(match status {
        "trialing" => SubscriptionStatus::Trial,
        "active" => SubscriptionStatus::Active,
        "past_due" => SubscriptionStatus::PastDue,
        "unpaid" | "paused" => SubscriptionStatus::Suspended,
        "canceled" => SubscriptionStatus::Cancelled,
        _ => return None,
    })
}

/// What an event asks of the subscription.
struct Wanted {
    status: Option<SubscriptionStatus>,
    customer: Option<String>,
    subscription: Option<String>,
    plan: Option<String>,
    interval: Option<String>,
    current_period_end: Option<DateTime<Utc>>,
    trial_end: Option<DateTime<Utc>>,
    /// `Some(None)`: clear a scheduled cancellation.
    cancel_at: Option<Option<DateTime<Utc>>>,
}

fn wanted(kind: &str, object: &Value) -> Wanted {
    let metadata = object.get("metadata");
    let meta = |key: &str| metadata.and_then(|m| text(m, key)).map(str::to_owned);
    let mut wanted = Wanted {
        status: None,
        customer: text(object, "customer").map(str::to_owned),
        subscription: None,
        plan: meta("plan"),
        interval: meta("interval"),
        current_period_end: None,
        trial_end: None,
        cancel_at: None,
    };
    match kind {
        "checkout.session.completed" => {
            wanted.subscription = text(object, "subscription").map(str::to_owned);
            // A delayed payment method completes the session unpaid: record the ids, and let
            // the invoice events decide.
            let paid = text(object, "payment_status")
                .is_none_or(|status| matches!(status, "paid" | "no_payment_required"));
            wanted.status = paid.then_some(SubscriptionStatus::Active);
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            wanted.subscription = text(object, "id").map(str::to_owned);
            wanted.status = if kind == "customer.subscription.deleted" {
                Some(SubscriptionStatus::Cancelled)
            } else {
                text(object, "status").and_then(map_stripe_status)
            };
            // Newer API versions keep the period on the subscription's items.
            let period_end = unix_time(object.get("current_period_end"))
                .or_else(|| unix_time(object.pointer("/items/data/0/current_period_end")));
            wanted.current_period_end = period_end;
            wanted.trial_end = unix_time(object.get("trial_end"));
            if kind != "customer.subscription.deleted" {
                let scheduled = object
                    .get("cancel_at_period_end")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                wanted.cancel_at = Some(if scheduled {
                    period_end.or_else(|| unix_time(object.get("cancel_at")))
                } else {
                    unix_time(object.get("cancel_at"))
                });
            }
        }
        "invoice.payment_succeeded" => {
            wanted.subscription = text(object, "subscription").map(str::to_owned);
            wanted.status = Some(SubscriptionStatus::Active);
        }
        "invoice.payment_failed" => {
            wanted.subscription = text(object, "subscription").map(str::to_owned);
            wanted.status = Some(SubscriptionStatus::PastDue);
        }
        _ => {}
    }
    wanted
}

/// The tenant an event is about: metadata `tenant_id`, the checkout's `client_reference_id`,
/// then the customer or subscription id Silo recorded.
async fn find_tenant(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    object: &Value,
    wanted: &Wanted,
) -> StoreResult<Option<Uuid>> {
    let named = object
        .get("metadata")
        .and_then(|m| text(m, "tenant_id"))
        .or_else(|| text(object, "client_reference_id"))
        .and_then(|id| Uuid::parse_str(id).ok());
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT tenant_id FROM subscriptions \
         WHERE tenant_id = $1 OR stripe_customer_id = $2 OR stripe_subscription_id = $3 \
         ORDER BY (tenant_id = $1) DESC NULLS LAST LIMIT 1",
    )
    .bind(named)
    .bind(wanted.customer.as_deref())
    .bind(wanted.subscription.as_deref())
    .fetch_optional(&mut **transaction)
    .await?;
    Ok(found)
}

impl Store {
    /// Applies one verified Stripe event, once. See the module's invariants.
    pub async fn apply_stripe_event(
        &self,
        event: &Event,
        lifecycle: &Lifecycle,
    ) -> StoreResult<Outcome> {
        let created = DateTime::from_timestamp(event.created, 0).unwrap_or_else(Utc::now);
        let mut transaction = self.pool().begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO stripe_events (id, type, created, outcome) VALUES ($1, $2, $3, 'processing') \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(created)
        .execute(&mut *transaction)
        .await?;
        if fresh.rows_affected() == 0 {
            return Ok(Outcome::Duplicate);
        }
        let object = &event.data.object;
        let wanted = wanted(&event.kind, object);
        let (outcome, tenant_id) = if !HANDLED.contains(&event.kind.as_str()) {
            (Outcome::Ignored, None)
        } else {
            match find_tenant(&mut transaction, object, &wanted).await? {
                None => (Outcome::Unmatched, None),
                Some(tenant_id) => {
                    let outcome = apply(
                        &mut transaction,
                        tenant_id,
                        event,
                        created,
                        &wanted,
                        lifecycle,
                    )
                    .await?;
                    (outcome, Some(tenant_id))
                }
            }
        };
        sqlx::query("UPDATE stripe_events SET outcome = $2, tenant_id = $3 WHERE id = $1")
            .bind(&event.id)
            .bind(outcome.as_str())
            .bind(tenant_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(outcome)
    }

    /// How the events with these ids ended (`None`: never received).
    pub async fn stripe_event_outcome(&self, id: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT outcome FROM stripe_events WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Records the Stripe customer made for a tenant.
    pub async fn set_stripe_customer(&self, tenant_id: Uuid, customer: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE subscriptions SET stripe_customer_id = $2, updated_at = now() \
             WHERE tenant_id = $1 AND stripe_customer_id IS NULL",
        )
        .bind(tenant_id)
        .bind(customer)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

async fn apply(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    event: &Event,
    created: DateTime<Utc>,
    wanted: &Wanted,
    lifecycle: &Lifecycle,
) -> StoreResult<Outcome> {
    let current = subscriptions::lock(transaction, tenant_id).await?;
    if current
        .stripe_state_at
        .is_some_and(|applied| applied > created)
    {
        return Ok(Outcome::Stale);
    }
    // Events of a subscription the tenant no longer has (replaced through a new checkout) do
    // not act on it; only a completed checkout brings a new subscription id.
    if event.kind != "checkout.session.completed"
        && let (Some(theirs), Some(ours)) = (&wanted.subscription, &current.stripe_subscription_id)
        && theirs != ours
    {
        return Ok(Outcome::Ignored);
    }
    // A suspension an operator made (abuse, support) is not lifted by a payment.
    if current.status == SubscriptionStatus::Suspended
        && wanted
            .status
            .is_some_and(|to| to != SubscriptionStatus::Cancelled)
    {
        let suspended_by: Option<String> = sqlx::query_scalar(
            "SELECT actor FROM subscription_transitions WHERE tenant_id = $1 \
             AND to_status = 'suspended' ORDER BY id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut **transaction)
        .await?;
        if suspended_by.is_some_and(|actor| actor != "stripe" && !actor.starts_with("system:")) {
            return Ok(Outcome::Refused);
        }
    }
    let actor = "stripe";
    if let Some(to) = wanted.status
        && to != current.status
    {
        if !current.status.can_become(to) {
            return Ok(Outcome::Refused);
        }
        let reason = format!("stripe:{}", event.kind);
        subscriptions::transition(
            transaction,
            &current,
            to,
            &reason,
            actor,
            lifecycle,
            Effects {
                trial_ends_at: wanted.trial_end,
                since: None,
                detail: serde_json::json!({"stripe_event": event.id}),
            },
        )
        .await?;
    }
    sqlx::query(
        "UPDATE subscriptions SET \
            stripe_customer_id = coalesce(stripe_customer_id, $2), \
            stripe_subscription_id = coalesce($3, stripe_subscription_id), \
            current_period_end = coalesce($4, current_period_end), \
            trial_ends_at = CASE WHEN status = 'trial' THEN coalesce($5, trial_ends_at) ELSE trial_ends_at END, \
            cancel_at = CASE WHEN $6 THEN $7 ELSE cancel_at END, \
            billing_interval = coalesce($8, billing_interval), \
            stripe_state_at = $9, updated_at = now() \
         WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .bind(wanted.customer.as_deref())
    .bind(wanted.subscription.as_deref())
    .bind(wanted.current_period_end)
    .bind(wanted.trial_end)
    .bind(wanted.cancel_at.is_some() && wanted.status != Some(SubscriptionStatus::Cancelled))
    .bind(wanted.cancel_at.flatten())
    .bind(
        wanted
            .interval
            .as_deref()
            .filter(|interval| matches!(*interval, "month" | "year")),
    )
    .bind(created)
    .execute(&mut **transaction)
    .await?;
    if let Some(plan) = &wanted.plan {
        let before: Option<String> =
            sqlx::query_scalar("SELECT plan_code FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut **transaction)
                .await?;
        let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plans WHERE code = $1)")
            .bind(plan)
            .fetch_one(&mut **transaction)
            .await?;
        if known && before.as_deref() != Some(plan.as_str()) {
            sqlx::query("UPDATE tenants SET plan_code = $2, updated_at = now() WHERE id = $1")
                .bind(tenant_id)
                .bind(plan)
                .execute(&mut **transaction)
                .await?;
            insert_audit(
                transaction,
                actor,
                "tenant.plan",
                Some(tenant_id),
                serde_json::json!({"before": before, "after": plan, "stripe_event": event.id}),
            )
            .await?;
        }
    }
    Ok(Outcome::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(payload);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_are_checked_as_stripe_specifies() {
        let secret = SecretString::from("whsec_test");
        let payload = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        let good = sign("whsec_test", now, payload);
        let wrong = sign("whsec_other", now, payload);
        let check = |header: &str| verify_signature(Some(header), payload, &secret, now);
        assert_eq!(check(&format!("t={now},v1={good}")), Ok(now));
        // Any of several v1 signatures (secret rotation), other schemes ignored.
        assert_eq!(
            check(&format!("t={now},v1={wrong},v0=abc,v1={good}")),
            Ok(now)
        );
        assert_eq!(
            check(&format!("t={now},v1={wrong}")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&format!("t={now},v0={good}")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(check(&format!("v1={good}")), Err(SignatureError::Malformed));
        assert_eq!(
            verify_signature(None, payload, &secret, now),
            Err(SignatureError::Missing)
        );
        // Five minutes of tolerance, either way.
        let old = now - 301;
        assert_eq!(
            check(&format!("t={old},v1={}", sign("whsec_test", old, payload))),
            Err(SignatureError::Stale)
        );
        let recent = now - 299;
        assert_eq!(
            check(&format!(
                "t={recent},v1={}",
                sign("whsec_test", recent, payload)
            )),
            Ok(recent)
        );
        // A tampered body fails even with a fresh timestamp.
        assert_eq!(
            verify_signature(
                Some(&format!("t={now},v1={good}")),
                br#"{"id":"evt_2"}"#,
                &secret,
                now
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_unpaid_checkout_does_not_activate() {
        let unpaid = json_object(r#"{"subscription": "sub_1", "payment_status": "unpaid"}"#);
        assert_eq!(wanted("checkout.session.completed", &unpaid).status, None);
        let paid = json_object(r#"{"subscription": "sub_1", "payment_status": "paid"}"#);
        assert_eq!(
            wanted("checkout.session.completed", &paid).status,
            Some(SubscriptionStatus::Active)
        );
    }

    fn json_object(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn stripe_statuses_map_onto_the_lifecycle() {
        assert_eq!(
            map_stripe_status("trialing"),
            Some(SubscriptionStatus::Trial)
        );
        assert_eq!(
            map_stripe_status("unpaid"),
            Some(SubscriptionStatus::Suspended)
        );
        assert_eq!(
            map_stripe_status("canceled"),
            Some(SubscriptionStatus::Cancelled)
        );
        assert_eq!(map_stripe_status("incomplete"), None);
    }
}
