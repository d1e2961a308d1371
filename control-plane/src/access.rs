//! Whether a tenant is served, as one decision from its status and its subscription: served
//! (perhaps with a billing warning for its clients), still being set up, suspended, unavailable,
//! or gone. The router answers from this and nothing else, so the table below is the whole rule.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::TenantStatus;
use crate::plans::Billing;
use crate::subscriptions::SubscriptionStatus;

/// What a request for a tenant gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Served, with a warning for clients when billing needs attention.
    Serve(Option<BillingWarning>),
    /// Still being set up: try again in a moment (503).
    Provisioning,
    /// Suspended by an operator or for non-payment (403).
    Suspended,
    /// Its provisioning failed: nothing to serve (503).
    Unavailable,
    /// Cancelled or deprovisioned (410).
    Gone,
}

/// A billing problem the tenant's clients are told of while it is still served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingWarning {
    /// Past due: suspended at this moment unless paid.
    PastDue { suspends_at: DateTime<Utc> },
    /// A cancellation is scheduled: access ends at this moment.
    Cancelling { access_ends: DateTime<Utc> },
}

impl BillingWarning {
    /// The `Silo-Billing-Warning` header's value: `past_due; suspends-at=<RFC 3339>` or
    /// `cancelling; access-ends=<RFC 3339>`.
    pub fn header_value(self) -> String {
        let when = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
        match self {
            BillingWarning::PastDue { suspends_at } => {
                format!("past_due; suspends-at={}", when(suspends_at))
            }
            BillingWarning::Cancelling { access_ends } => {
                format!("cancelling; access-ends={}", when(access_ends))
            }
        }
    }
}

/// The decision. The subscription decides too: a tenant activated by the provisioner while its
/// subscription was suspended or cancelled is not served.
pub fn decide(status: TenantStatus, billing: Option<&Billing>) -> Access {
    let subscription = billing.map(|billing| billing.status);
    let status = match (status, subscription) {
        (TenantStatus::Active, Some(SubscriptionStatus::Suspended)) => TenantStatus::Suspended,
        (TenantStatus::Active, Some(SubscriptionStatus::Cancelled)) => TenantStatus::Cancelled,
        (status, _) => status,
    };
    match status {
        TenantStatus::Active => Access::Serve(billing.and_then(warning)),
        TenantStatus::Provisioning => Access::Provisioning,
        TenantStatus::Suspended => Access::Suspended,
        TenantStatus::Failed => Access::Unavailable,
        TenantStatus::Cancelled | TenantStatus::Deprovisioned => Access::Gone,
    }
}

fn warning(billing: &Billing) -> Option<BillingWarning> {
    match (billing.status, billing.grace_ends_at, billing.cancel_at) {
        (SubscriptionStatus::PastDue, Some(suspends_at), _) => {
            Some(BillingWarning::PastDue { suspends_at })
        }
        (_, _, Some(access_ends)) => Some(BillingWarning::Cancelling { access_ends }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn billing(
        status: SubscriptionStatus,
        grace_ends_at: Option<DateTime<Utc>>,
        cancel_at: Option<DateTime<Utc>>,
    ) -> Billing {
        Billing {
            status,
            grace_ends_at,
            cancel_at,
            trial_ends_at: None,
        }
    }

    #[test]
    fn status_and_subscription_decide_together() {
        use SubscriptionStatus::{Active, Cancelled, PastDue, Suspended, Trial};
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("a valid instant");
        let past_due = Some(BillingWarning::PastDue { suspends_at: at });
        let cancelling = Some(BillingWarning::Cancelling { access_ends: at });
        let cases: &[(TenantStatus, Option<Billing>, Access)] = &[
            (TenantStatus::Active, None, Access::Serve(None)),
            (
                TenantStatus::Active,
                Some(billing(Trial, None, None)),
                Access::Serve(None),
            ),
            (
                TenantStatus::Active,
                Some(billing(Active, None, None)),
                Access::Serve(None),
            ),
            (
                TenantStatus::Active,
                Some(billing(PastDue, Some(at), None)),
                Access::Serve(past_due),
            ),
            // Past due without a known grace end: served, nothing to announce.
            (
                TenantStatus::Active,
                Some(billing(PastDue, None, None)),
                Access::Serve(None),
            ),
            (
                TenantStatus::Active,
                Some(billing(Active, None, Some(at))),
                Access::Serve(cancelling),
            ),
            (
                TenantStatus::Active,
                Some(billing(PastDue, Some(at), Some(at))),
                Access::Serve(past_due),
            ),
            (
                TenantStatus::Active,
                Some(billing(Suspended, None, None)),
                Access::Suspended,
            ),
            (
                TenantStatus::Active,
                Some(billing(Cancelled, None, None)),
                Access::Gone,
            ),
            (TenantStatus::Provisioning, None, Access::Provisioning),
            (
                TenantStatus::Provisioning,
                Some(billing(Suspended, None, None)),
                Access::Provisioning,
            ),
            (
                TenantStatus::Suspended,
                Some(billing(Active, None, None)),
                Access::Suspended,
            ),
            (TenantStatus::Failed, None, Access::Unavailable),
            (
                TenantStatus::Cancelled,
                Some(billing(Active, None, None)),
                Access::Gone,
            ),
            (TenantStatus::Deprovisioned, None, Access::Gone),
        ];
        for (status, billing, expected) in cases {
            assert_eq!(
                decide(*status, billing.as_ref()),
                *expected,
                "{status:?} with {billing:?}"
            );
        }
    }

    #[test]
    fn the_warning_header_names_the_moment() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("a valid instant");
        assert_eq!(
            BillingWarning::PastDue { suspends_at: at }.header_value(),
            "past_due; suspends-at=2027-01-15T08:00:00Z"
        );
        assert_eq!(
            BillingWarning::Cancelling { access_ends: at }.header_value(),
            "cancelling; access-ends=2027-01-15T08:00:00Z"
        );
    }
}
