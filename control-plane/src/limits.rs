//! Per-plan count limits on what a tenant's owner keeps in the control plane: custom domains,
//! API keys, integration credentials, pending invitations. Each create checks its count inside
//! its own transaction under a per-tenant, per-kind advisory lock, so parallel creates are
//! serialised and can never pass the limit together.

use uuid::Uuid;

use crate::plans::Plan;
use crate::store::{StoreError, StoreResult};

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    CustomDomains,
    ApiKeys,
    Integrations,
    PendingInvitations,
}

impl Counted {
    /// How the plan, the lock and a refusal name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::CustomDomains => "custom domains",
            Self::ApiKeys => "API keys",
            Self::Integrations => "integration credentials",
            Self::PendingInvitations => "pending invitations",
        }
    }

    /// The plan's limit (`None`: unlimited).
    pub fn limit(self, plan: &Plan) -> Option<i32> {
        match self {
            Self::CustomDomains => plan.max_custom_domains,
            Self::ApiKeys => plan.max_api_keys,
            Self::Integrations => plan.max_integrations,
            Self::PendingInvitations => plan.max_pending_invitations,
        }
    }

    /// Counts what a tenant (`$1`) holds now.
    fn count_sql(self) -> &'static str {
        match self {
            // A lapsed, unverified claim holds no place (it blocks nobody either).
            Self::CustomDomains => {
                "SELECT count(*) FROM tenant_domains WHERE tenant_id = $1 \
                 AND (verified_at IS NOT NULL OR expires_at > now())"
            }
            Self::ApiKeys => {
                "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL"
            }
            Self::Integrations => "SELECT count(*) FROM tenant_integrations WHERE tenant_id = $1",
            Self::PendingInvitations => {
                "SELECT count(*) FROM tenant_invitations WHERE tenant_id = $1 \
                 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()"
            }
        }
    }
}

/// Inside `transaction`: takes the tenant's lock for `counted` (held until the transaction
/// ends) and refuses with [`StoreError::PlanLimitReached`] when `limit` are already there.
pub(crate) async fn hold_within_limit(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    counted: Counted,
    limit: Option<i32>,
) -> StoreResult<()> {
    let Some(limit) = limit else {
        return Ok(());
    };
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("silo.limit.{}.{tenant_id}", counted.name()))
        .execute(&mut **transaction)
        .await?;
    let count: i64 = sqlx::query_scalar(counted.count_sql())
        .bind(tenant_id)
        .fetch_one(&mut **transaction)
        .await?;
    if count >= i64::from(limit) {
        return Err(StoreError::PlanLimitReached {
            what: counted.name(),
            limit,
            count,
        });
    }
    Ok(())
}

/// A page of a list: at most `limit` rows after the row `after` names (the first page when
/// `None`). Stores fetch `limit + 1` rows to learn whether another page follows.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub after: Option<&'a str>,
    pub limit: i64,
}

impl PageRequest<'_> {
    /// Rows to fetch: one more than the page.
    pub fn fetch(&self) -> i64 {
        self.limit.saturating_add(1)
    }
}

/// How many of each counted thing a tenant holds now.
#[derive(Debug, Clone, Copy, serde::Serialize, sqlx::FromRow)]
pub struct StoredCounts {
    pub custom_domains: i64,
    pub api_keys: i64,
    pub integrations: i64,
    pub pending_invitations: i64,
}

impl crate::store::Store {
    /// What the tenant holds of each counted thing, counted as the limits count it.
    pub async fn stored_counts(&self, tenant_id: Uuid) -> StoreResult<StoredCounts> {
        let sql = format!(
            "SELECT ({}) AS custom_domains, ({}) AS api_keys, ({}) AS integrations, \
             ({}) AS pending_invitations",
            Counted::CustomDomains.count_sql(),
            Counted::ApiKeys.count_sql(),
            Counted::Integrations.count_sql(),
            Counted::PendingInvitations.count_sql(),
        );
        // Made of this module's constant statements only: nothing from outside reaches it.
        let counts = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_one(self.pool())
            .await?;
        Ok(counts)
    }
}
