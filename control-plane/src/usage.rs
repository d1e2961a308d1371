//! Usage metering: requests per tenant per day (counted in router memory, added here in
//! batches), and the newest sample of each tenant's database size and counts (written by the
//! worker's sampler). Shown to super-admins and tenant owners.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::store::{Store, StoreResult};

/// Requests one tenant made on one day (UTC).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DailyRequests {
    pub day: NaiveDate,
    pub requests: i64,
}

/// The newest sample of a tenant's database.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct UsageSample {
    pub database_bytes: Option<i64>,
    pub users: Option<i32>,
    pub items: Option<i32>,
    pub branches: Option<i32>,
    pub sampled_at: DateTime<Utc>,
}

/// Everything metered about one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct TenantUsage {
    /// Newest day first, the last `days` days that had requests.
    pub requests: Vec<DailyRequests>,
    pub requests_today: i64,
    pub sample: Option<UsageSample>,
}

impl Store {
    /// Adds a batch of request counts to today's (UTC) totals, in one statement. Counts of
    /// tenants that do not exist are dropped.
    pub async fn add_requests(&self, batch: &[(Uuid, i64)]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (tenants, counts): (Vec<Uuid>, Vec<i64>) = batch.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO usage_daily (tenant_id, day, requests) \
             SELECT u.tenant_id, (now() AT TIME ZONE 'UTC')::date, u.requests \
             FROM unnest($1::uuid[], $2::bigint[]) AS u(tenant_id, requests) \
             JOIN tenants t ON t.id = u.tenant_id \
             ON CONFLICT (tenant_id, day) DO UPDATE SET requests = usage_daily.requests + EXCLUDED.requests",
        )
        .bind(tenants)
        .bind(counts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records the newest sample of a tenant.
    pub async fn record_usage_sample(
        &self,
        tenant_id: Uuid,
        sample: &UsageSample,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tenant_usage (tenant_id, database_bytes, users, items, branches, sampled_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id) DO UPDATE SET database_bytes = EXCLUDED.database_bytes, \
                 users = EXCLUDED.users, items = EXCLUDED.items, branches = EXCLUDED.branches, \
                 sampled_at = EXCLUDED.sampled_at",
        )
        .bind(tenant_id)
        .bind(sample.database_bytes)
        .bind(sample.users)
        .bind(sample.items)
        .bind(sample.branches)
        .bind(sample.sampled_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The tenant's requests over the last `days` days and its newest sample.
    pub async fn tenant_usage(&self, tenant_id: Uuid, days: i32) -> StoreResult<TenantUsage> {
        let requests: Vec<DailyRequests> = sqlx::query_as(
            "SELECT day, requests FROM usage_daily WHERE tenant_id = $1 \
             AND day > (now() AT TIME ZONE 'UTC')::date - $2 ORDER BY day DESC",
        )
        .bind(tenant_id)
        .bind(days)
        .fetch_all(self.pool())
        .await?;
        let today = Utc::now().date_naive();
        let requests_today = requests
            .iter()
            .find(|daily| daily.day == today)
            .map_or(0, |daily| daily.requests);
        let sample = sqlx::query_as(
            "SELECT database_bytes, users, items, branches, sampled_at FROM tenant_usage \
             WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(TenantUsage {
            requests,
            requests_today,
            sample,
        })
    }
}
