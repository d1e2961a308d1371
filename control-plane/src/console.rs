//! What the super-admin console reads: the tenant list with optional filters applied in SQL
//! (status, subscription status, plan, host, schema version, a search on slug or name), paged
//! by slug so a fleet of thousands never loads at once; a tenant's provisioning history; and
//! its audit trail newest first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::model::TenantStatus;
use crate::store::{Store, StoreError, StoreResult};
use crate::subscriptions::SubscriptionStatus;

/// The most rows one page of the tenant list may ask for.
pub const MAX_PAGE: i64 = 1000;

/// Which tenants to list. Every `None` filter matches everything.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub subscription: Option<SubscriptionStatus>,
    /// A plan code (`starter`, `professional`, …).
    pub plan: Option<String>,
    /// A database host's name.
    pub host: Option<String>,
    pub schema_version: Option<i32>,
    /// Part of the slug or of the display name, case-insensitive, matched literally.
    pub search: Option<String>,
    /// Only tenants whose slug sorts after this one (the next page).
    pub after: Option<String>,
    /// At most this many rows (clamped to 1..=[`MAX_PAGE`]).
    pub limit: i64,
}

/// One row of the tenant list.
#[derive(Debug, Clone, Serialize)]
pub struct TenantSummary {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    /// `None` for a tenant from before billing, without a subscription.
    pub subscription: Option<SubscriptionStatus>,
    pub plan: String,
    pub host_id: Option<Uuid>,
    pub host: Option<String>,
    pub schema_version: Option<i32>,
    pub provisioning_step: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One page of the tenant list; `next_after` is set when more rows match.
#[derive(Debug, Clone)]
pub struct TenantPage {
    pub tenants: Vec<TenantSummary>,
    pub next_after: Option<String>,
}

/// One recorded provisioning step attempt.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProvisioningEvent {
    pub step: String,
    pub attempt: i32,
    pub outcome: String,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub recorded_at: DateTime<Utc>,
}

/// One row of a tenant's audit trail.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// A row of the tenant list as selected; the status is checked and an unknown subscription
/// status reads as none.
#[derive(Debug, sqlx::FromRow)]
struct TenantSummaryRow {
    id: Uuid,
    slug: String,
    display_name: String,
    status: String,
    subscription_status: Option<String>,
    plan_code: String,
    host_id: Option<Uuid>,
    host_name: Option<String>,
    schema_version: Option<i32>,
    provisioning_step: Option<String>,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<TenantSummaryRow> for TenantSummary {
    type Error = StoreError;

    fn try_from(row: TenantSummaryRow) -> StoreResult<Self> {
        let status = TenantStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown tenant status {}", row.status).into(),
            ))
        })?;
        Ok(TenantSummary {
            id: row.id,
            slug: row.slug,
            name: row.display_name,
            status,
            subscription: row
                .subscription_status
                .as_deref()
                .and_then(SubscriptionStatus::parse),
            plan: row.plan_code,
            host_id: row.host_id,
            host: row.host_name,
            schema_version: row.schema_version,
            provisioning_step: row.provisioning_step,
            failure_reason: row.failure_reason,
            created_at: row.created_at,
        })
    }
}

/// `%needle%` for `LIKE … ESCAPE '\'`, with the needle's own wildcards taken literally.
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for character in needle.to_lowercase().chars() {
        if matches!(character, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// One page of tenants matching `filter`, ordered by slug.
    pub async fn search_tenants(&self, filter: &TenantFilter) -> StoreResult<TenantPage> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let rows = sqlx::query_as::<_, TenantSummaryRow>(
            "SELECT t.id, t.slug, t.display_name, t.status, t.plan_code, t.host_id, \
                    h.name AS host_name, s.status AS subscription_status, t.schema_version, \
                    t.provisioning_step, t.failure_reason, t.created_at \
             FROM tenants t \
             LEFT JOIN database_hosts h ON h.id = t.host_id \
             LEFT JOIN subscriptions s ON s.tenant_id = t.id \
             WHERE ($1::text IS NULL OR t.status = $1) \
               AND ($2::text IS NULL OR s.status = $2) \
               AND ($3::text IS NULL OR t.plan_code = $3) \
               AND ($4::text IS NULL OR h.name = $4) \
               AND ($5::integer IS NULL OR t.schema_version = $5) \
               AND ($6::text IS NULL OR t.slug LIKE $6 ESCAPE '\\' \
                    OR lower(t.display_name) LIKE $6 ESCAPE '\\') \
               AND ($7::text IS NULL OR t.slug > $7) \
             ORDER BY t.slug LIMIT $8",
        )
        .bind(filter.status.map(TenantStatus::as_str))
        .bind(filter.subscription.map(SubscriptionStatus::as_str))
        .bind(filter.plan.as_deref())
        .bind(filter.host.as_deref())
        .bind(filter.schema_version)
        .bind(
            filter
                .search
                .as_deref()
                .filter(|needle| !needle.is_empty())
                .map(like_pattern),
        )
        .bind(filter.after.as_deref())
        // One more than asked, to know whether there is a next page.
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await?;
        let mut tenants = rows
            .into_iter()
            .map(TenantSummary::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        let next_after = if i64::try_from(tenants.len()).unwrap_or(i64::MAX) > limit {
            tenants.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            tenants.last().map(|tenant| tenant.slug.clone())
        } else {
            None
        };
        Ok(TenantPage {
            tenants,
            next_after,
        })
    }

    /// Every provisioning step attempt of a tenant, oldest first.
    pub async fn provisioning_history(
        &self,
        tenant_id: Uuid,
    ) -> StoreResult<Vec<ProvisioningEvent>> {
        let events = sqlx::query_as(
            "SELECT step, attempt, outcome, error, duration_ms, recorded_at \
             FROM provisioning_events WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        Ok(events)
    }

    /// The newest `limit` rows of a tenant's audit trail, newest first.
    pub async fn audit_trail(&self, tenant_id: Uuid, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let entries = sqlx::query_as(
            "SELECT at, actor, action, detail FROM audit_log WHERE tenant_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn search_wildcards_are_taken_literally() {
        for (needle, pattern) in [
            ("acme", "%acme%"),
            ("ACME", "%acme%"),
            ("50%", "%50\\%%"),
            ("a_b", "%a\\_b%"),
            ("back\\slash", "%back\\\\slash%"),
        ] {
            assert_eq!(like_pattern(needle), pattern, "{needle}");
        }
    }
}
