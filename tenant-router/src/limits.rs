//! Request budgets per tenant, kept apart so that a flood cannot lock out signed-in users:
//!
//! - **Authenticated**: the plan's rate (capped by `tenant_requests_per_second`), spent only by
//!   requests whose credential was verified.
//! - **Anonymous**: everything else — public routes (branding, sign-in, health, invitations),
//!   and requests to signed-in routes that bring no credential. Two budgets, both must allow:
//!   one per (tenant, client address), so one client's flood stops at its own budget, and one
//!   per tenant (`anonymous_requests_per_second`, never above the tenant's own rate).
//! - A credential that fails its check is charged to the anonymous per-address budget; once that
//!   is spent, the address's credentialed requests are refused (429) before anything is checked,
//!   until it refills. So a bogus token never reaches the authenticated budget, nor buys more
//!   checks than an anonymous client gets requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control_plane::settings::RouterSettings;
use uuid::Uuid;
use web::{ApiError, ErrorCode, RateLimit};

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    Authenticated,
    Anonymous,
}

/// One rate's limiter, keyed by tenant and budget.
type TenantLimit = RateLimit<(Uuid, Budget)>;

/// Past this many penalised addresses, expired entries are swept before another is added.
const MAX_PENALISED: usize = 100_000;

#[derive(Debug)]
pub(crate) struct RequestBudgets {
    /// The tenant's own rate cap (0: no limit at all).
    tenant_cap: u32,
    anonymous_per_tenant: u32,
    /// Per-tenant limiters, one per distinct rate (plans differ), keyed by tenant and budget.
    per_tenant: Mutex<HashMap<u32, Arc<TenantLimit>>>,
    anonymous_per_client: RateLimit<(Uuid, IpAddr)>,
    /// Addresses whose failed credentials spent their anonymous budget: refused until then.
    penalised: Mutex<HashMap<(Uuid, IpAddr), Instant>>,
}

impl RequestBudgets {
    pub(crate) fn new(settings: &RouterSettings) -> Self {
        let per_client = settings.anonymous_requests_per_client_per_second;
        Self {
            tenant_cap: settings.tenant_requests_per_second,
            anonymous_per_tenant: settings.anonymous_requests_per_second,
            per_tenant: Mutex::new(HashMap::new()),
            anonymous_per_client: RateLimit::per_second(per_client, per_client.saturating_mul(2)),
            penalised: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request against `budget`; `Err(seconds to wait)` when it is spent.
    /// `plan_rate`: the tenant's plan's requests per second, if it has one.
    pub(crate) fn check(
        &self,
        tenant: Uuid,
        plan_rate: Option<u32>,
        budget: Budget,
        client: Option<IpAddr>,
    ) -> Result<(), u32> {
        if self.tenant_cap == 0 {
            return Ok(());
        }
        let rate = plan_rate.map_or(self.tenant_cap, |rate| rate.min(self.tenant_cap));
        let rate = match budget {
            Budget::Authenticated => rate,
            Budget::Anonymous => {
                if let Some(client) = client {
                    self.anonymous_per_client.check(&(tenant, client))?;
                }
                match self.anonymous_per_tenant {
                    0 => rate,
                    anonymous => anonymous.min(rate),
                }
            }
        };
        let limit = match self.per_tenant.lock() {
            Ok(mut limits) => limits
                .entry(rate)
                .or_insert_with(|| Arc::new(RateLimit::per_second(rate, rate.saturating_mul(2))))
                .clone(),
            Err(_) => return Ok(()),
        };
        limit.check(&(tenant, budget))
    }

    /// `Err(seconds)` while the address is penalised for failed credentials: checked before a
    /// credential is, so a forger's requests cost no more checks than its budget allows.
    pub(crate) fn penalty(&self, tenant: Uuid, client: IpAddr) -> Result<(), u32> {
        let Ok(penalised) = self.penalised.lock() else {
            return Ok(());
        };
        match penalised.get(&(tenant, client)) {
            Some(until) if *until > Instant::now() => Err(seconds_until(*until)),
            _ => Ok(()),
        }
    }

    /// Charges a failed credential to the address's anonymous budget; `Err(seconds)` when that
    /// is spent (the address is then penalised for as long).
    pub(crate) fn credential_failed(&self, tenant: Uuid, client: IpAddr) -> Result<(), u32> {
        if self.tenant_cap == 0 {
            return Ok(());
        }
        let Err(seconds) = self.anonymous_per_client.check(&(tenant, client)) else {
            return Ok(());
        };
        if let Ok(mut penalised) = self.penalised.lock() {
            if penalised.len() >= MAX_PENALISED {
                let now = Instant::now();
                penalised.retain(|_, until| *until > now);
            }
            penalised.insert(
                (tenant, client),
                Instant::now() + Duration::from_secs(u64::from(seconds)),
            );
        }
        Err(seconds)
    }
}

fn seconds_until(until: Instant) -> u32 {
    let left = until.saturating_duration_since(Instant::now());
    u32::try_from(left.as_secs().saturating_add(1)).unwrap_or(u32::MAX)
}

/// The answer to a request over a budget.
pub(crate) fn rate_limited(budget: Budget, seconds: u32) -> ApiError {
    let message = match budget {
        Budget::Authenticated => {
            "This workspace is making requests faster than its plan allows. Slow down and retry."
        }
        Budget::Anonymous => {
            "Too many requests without signing in, from this address or to this workspace. \
             Slow down and retry, or sign in."
        }
    };
    ApiError::new(ErrorCode::RateLimited, message).retry_after(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(tenant_rate: u32, anonymous: u32, per_client: u32) -> RequestBudgets {
        let mut settings = control_plane::settings::Settings::default().router;
        settings.tenant_requests_per_second = tenant_rate;
        settings.anonymous_requests_per_second = anonymous;
        settings.anonymous_requests_per_client_per_second = per_client;
        RequestBudgets::new(&settings)
    }

    /// How many of `count` requests at once are allowed.
    fn allowed(count: usize, mut check: impl FnMut() -> Result<(), u32>) -> usize {
        (0..count).filter(|_| check().is_ok()).count()
    }

    #[test]
    fn an_anonymous_flood_leaves_the_authenticated_budget_whole() {
        let limits = budgets(10, 5, 100);
        let tenant = Uuid::new_v4();
        let flooder = Some(IpAddr::from([198, 51, 100, 1]));
        // Bursts of twice the rate: anonymous 10 of 100, then refused.
        assert_eq!(
            allowed(100, || limits.check(
                tenant,
                None,
                Budget::Anonymous,
                flooder
            )),
            10
        );
        assert_eq!(
            allowed(20, || limits.check(
                tenant,
                None,
                Budget::Authenticated,
                Some(IpAddr::from([203, 0, 113, 5]))
            )),
            20
        );
    }

    #[test]
    fn one_clients_anonymous_flood_leaves_other_clients_room() {
        let limits = budgets(100, 50, 2);
        let tenant = Uuid::new_v4();
        let flooder = Some(IpAddr::from([198, 51, 100, 1]));
        assert_eq!(
            allowed(50, || limits.check(
                tenant,
                None,
                Budget::Anonymous,
                flooder
            )),
            4
        );
        let other = Some(IpAddr::from([198, 51, 100, 2]));
        assert!(limits.check(tenant, None, Budget::Anonymous, other).is_ok());
        // Another tenant's anonymous budget is its own.
        assert!(
            limits
                .check(Uuid::new_v4(), None, Budget::Anonymous, flooder)
                .is_ok()
        );
    }

    #[test]
    fn failed_credentials_spend_the_anonymous_budget_then_are_refused_up_front() {
        let limits = budgets(100, 50, 2);
        let tenant = Uuid::new_v4();
        let forger = IpAddr::from([198, 51, 100, 1]);
        let failures = allowed(10, || limits.credential_failed(tenant, forger));
        assert_eq!(failures, 4, "as many failures as anonymous requests");
        assert!(
            limits.penalty(tenant, forger).is_err(),
            "a penalised address is refused before its credential is checked"
        );
        let honest = IpAddr::from([198, 51, 100, 2]);
        assert!(limits.penalty(tenant, honest).is_ok());
        assert!(
            limits
                .check(tenant, None, Budget::Authenticated, Some(honest))
                .is_ok()
        );
    }

    #[test]
    fn no_tenant_cap_means_no_limit_and_plans_lower_the_rate() {
        let unlimited = budgets(0, 1, 1);
        let tenant = Uuid::new_v4();
        let client = Some(IpAddr::from([198, 51, 100, 1]));
        assert_eq!(
            allowed(100, || unlimited.check(
                tenant,
                None,
                Budget::Anonymous,
                client
            )),
            100
        );
        let limits = budgets(100, 0, 1000);
        assert_eq!(
            allowed(100, || limits.check(
                tenant,
                Some(3),
                Budget::Authenticated,
                None
            )),
            6
        );
        // Without an anonymous rate, anonymous requests get the tenant's rate, separately.
        assert_eq!(
            allowed(100, || limits.check(
                tenant,
                Some(3),
                Budget::Anonymous,
                None
            )),
            6
        );
    }
}
