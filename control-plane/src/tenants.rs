//! Tenants as the control plane records them: signup (the tenant row and its provisioning job
//! in one transaction), placement, the provisioning record, status, offboarding and exports,
//! and the sealed database URL.

use std::time::Duration;

use apalis::prelude::TaskBuilder;
use uuid::Uuid;

use crate::mail::{Mail, MailJob, enqueue_mail};
use crate::model::{PROVISION_QUEUE, ProvisionTenant, TenantStatus};
use crate::sealing::Sealed;
use crate::store::{Store, StoreError, StoreResult, insert_audit};

/// A tenant as the control plane records it.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    pub status: TenantStatus,
    pub host_id: Option<Uuid>,
    pub database_name: Option<String>,
    pub role_name: Option<String>,
    pub sealed_database_url: Option<Sealed>,
    pub schema_version: Option<i32>,
    pub admin_email: String,
    pub pending_admin_password_hash: Option<String>,
    pub provisioning_step: Option<String>,
    pub provisioning_attempts: i32,
    pub failure_reason: Option<String>,
}
/// One pg_dump file Silo made of a tenant database.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantExport {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `offboarding` or `on_demand`.
    pub reason: String,
    pub path: String,
    pub bytes: i64,
    pub schema_version: Option<i32>,
}
/// What a new signup stores.
#[derive(Debug)]
pub struct NewTenant<'a> {
    pub slug: &'a str,
    pub display_name: &'a str,
    pub admin_email: &'a str,
    pub admin_password_hash: &'a str,
    /// How long the new tenant's trial lasts.
    pub trial: Duration,
}
/// Where a tenant was placed and what it will be called there.
#[derive(Debug)]
pub struct Placement {
    pub host_id: Uuid,
    pub database_name: String,
    pub role_name: String,
    pub sealed_database_url: Sealed,
}

/// `SELECT <every tenant column> FROM tenants <tail>`, as a static string (sqlx audits dynamic SQL).
macro_rules! select_tenants {
    ($tail:literal) => {
        concat!(
            "SELECT id, slug, display_name, status, host_id, database_name, role_name, ",
            "sealed_database_url, database_url_key_id, schema_version, admin_email, ",
            "pending_admin_password_hash, provisioning_step, provisioning_attempts, failure_reason ",
            "FROM tenants ",
            $tail
        )
    };
}

/// A `tenants` row as selected by `select_tenants!`; its status and sealed URL are checked and
/// assembled into a [`TenantRecord`]. No `Debug`: it holds the sealed blob.
#[derive(sqlx::FromRow)]
struct TenantRow {
    id: Uuid,
    slug: String,
    display_name: String,
    status: String,
    host_id: Option<Uuid>,
    database_name: Option<String>,
    role_name: Option<String>,
    sealed_database_url: Option<Vec<u8>>,
    database_url_key_id: Option<String>,
    schema_version: Option<i32>,
    admin_email: String,
    pending_admin_password_hash: Option<String>,
    provisioning_step: Option<String>,
    provisioning_attempts: i32,
    failure_reason: Option<String>,
}

impl TryFrom<TenantRow> for TenantRecord {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> StoreResult<Self> {
        let status = TenantStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown tenant status {}", row.status).into(),
            ))
        })?;
        Ok(TenantRecord {
            id: row.id,
            slug: row.slug,
            display_name: row.display_name,
            status,
            host_id: row.host_id,
            database_name: row.database_name,
            role_name: row.role_name,
            sealed_database_url: row
                .sealed_database_url
                .zip(row.database_url_key_id)
                .map(|(blob, key_id)| Sealed { key_id, blob }),
            schema_version: row.schema_version,
            admin_email: row.admin_email,
            pending_admin_password_hash: row.pending_admin_password_hash,
            provisioning_step: row.provisioning_step,
            provisioning_attempts: row.provisioning_attempts,
            failure_reason: row.failure_reason,
        })
    }
}
async fn enqueue_provisioning(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
) -> StoreResult<()> {
    let payload = serde_json::to_vec(&ProvisionTenant { tenant_id })
        .expect("a job of a uuid always serialises");
    let task = TaskBuilder::new(payload).build();
    apalis_postgres::queries::push_tasks(&mut **transaction, PROVISION_QUEUE, vec![task])
        .await
        .map_err(|error| StoreError::Queue(error.to_string()))
}

impl Store {
    // ---- tenants ----

    /// Inserts the tenant and enqueues its provisioning job in one transaction, so a crash can
    /// never leave a tenant without a job or a job without a tenant.
    pub async fn create_tenant_and_enqueue(&self, new: NewTenant<'_>) -> StoreResult<Uuid> {
        let id = Uuid::new_v4();
        let mut transaction = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, slug, display_name, status, admin_email, pending_admin_password_hash) \
             VALUES ($1, $2, $3, 'provisioning', $4, $5) ON CONFLICT (slug) DO NOTHING",
        )
        .bind(id)
        .bind(new.slug)
        .bind(new.display_name)
        .bind(new.admin_email)
        .bind(new.admin_password_hash)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::SubdomainTaken);
        }
        crate::subscriptions::start_trial(&mut transaction, id, new.trial).await?;
        enqueue_provisioning(&mut transaction, id).await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Puts a failed tenant back to `provisioning` and enqueues it again.
    pub async fn retry_provisioning(&self, tenant_id: Uuid, actor: &str) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE tenants SET status = 'provisioning', failure_reason = NULL, provisioning_attempts = 0, \
             updated_at = now() WHERE id = $1 AND status = 'failed'",
        )
        .bind(tenant_id)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        enqueue_provisioning(&mut transaction, tenant_id).await?;
        // The trial was off the billing clock while the tenant never worked: it starts again,
        // as long as it was, from the retry.
        sqlx::query(
            "UPDATE subscriptions s SET trial_ends_at = now() + (s.trial_ends_at - t.created_at), \
             updated_at = now() FROM tenants t \
             WHERE s.tenant_id = $1 AND t.id = s.tenant_id AND s.status = 'trial'",
        )
        .bind(tenant_id)
        .execute(&mut *transaction)
        .await?;
        let detail = serde_json::json!({"before": "failed", "after": "provisioning"});
        let action = "tenant.retry_provisioning";
        insert_audit(&mut transaction, actor, action, Some(tenant_id), detail).await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn tenant(&self, id: Uuid) -> StoreResult<TenantRecord> {
        sqlx::query_as::<_, TenantRow>(select_tenants!("WHERE id = $1"))
            .bind(id)
            .fetch_one(self.pool())
            .await?
            .try_into()
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<TenantRecord>> {
        sqlx::query_as::<_, TenantRow>(select_tenants!("WHERE slug = $1"))
            .bind(slug)
            .fetch_optional(self.pool())
            .await?
            .map(TenantRecord::try_from)
            .transpose()
    }

    pub async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        sqlx::query_as::<_, TenantRow>(select_tenants!("ORDER BY slug"))
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(TenantRecord::try_from)
            .collect()
    }

    /// Records where the tenant goes; only the first placement sticks, so a retried job reuses it.
    pub async fn place_tenant(
        &self,
        tenant_id: Uuid,
        placement: &Placement,
    ) -> StoreResult<TenantRecord> {
        sqlx::query(
            "UPDATE tenants SET host_id = $2, database_name = $3, role_name = $4, \
             sealed_database_url = $5, database_url_key_id = $6, updated_at = now() \
             WHERE id = $1 AND host_id IS NULL",
        )
        .bind(tenant_id)
        .bind(placement.host_id)
        .bind(&placement.database_name)
        .bind(&placement.role_name)
        .bind(&placement.sealed_database_url.blob)
        .bind(&placement.sealed_database_url.key_id)
        .execute(self.pool())
        .await?;
        self.tenant(tenant_id).await
    }
    /// Records one step attempt. On success the tenant's `provisioning_step` moves forward to
    /// `step` (never back: `order` lists every step in order).
    pub async fn record_step(
        &self,
        tenant_id: Uuid,
        step: &str,
        order: &[&str],
        attempt: i32,
        error: Option<&str>,
        duration: Duration,
    ) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO provisioning_events (tenant_id, step, attempt, outcome, error, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant_id)
        .bind(step)
        .bind(attempt)
        .bind(if error.is_none() { "succeeded" } else { "failed" })
        .bind(error)
        .bind(i32::try_from(duration.as_millis()).unwrap_or(i32::MAX))
        .execute(&mut *transaction)
        .await?;
        if error.is_none() {
            sqlx::query(
                "UPDATE tenants SET provisioning_step = $2, updated_at = now() WHERE id = $1 \
                 AND coalesce(array_position($3::text[], provisioning_step), 0) < array_position($3::text[], $2)",
            )
            .bind(tenant_id)
            .bind(step)
            .bind(order)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Counts one more provisioning attempt and returns the new count.
    pub async fn begin_attempt(&self, tenant_id: Uuid) -> StoreResult<i32> {
        let attempts = sqlx::query_scalar(
            "UPDATE tenants SET provisioning_attempts = provisioning_attempts + 1, updated_at = now() \
             WHERE id = $1 RETURNING provisioning_attempts",
        )
        .bind(tenant_id)
        .fetch_one(self.pool())
        .await?;
        Ok(attempts)
    }

    pub async fn set_schema_version(&self, tenant_id: Uuid, version: i32) -> StoreResult<()> {
        sqlx::query("UPDATE tenants SET schema_version = $2, updated_at = now() WHERE id = $1")
            .bind(tenant_id)
            .bind(version)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Marks the tenant active and forgets the admin password hash, which now lives in its
    /// database. The step is set in the same statement, so nobody reads `active` with an
    /// earlier step.
    ///
    /// The owner's welcome mail is queued in the same transaction, so it goes exactly once,
    /// whoever activates, and only for a tenant that is really served.
    pub async fn activate(&self, tenant_id: Uuid) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let activated: Option<String> = sqlx::query_scalar(
            "UPDATE tenants SET status = 'active', provisioning_step = 'activated', \
             pending_admin_password_hash = NULL, failure_reason = NULL, \
             activated_at = now(), updated_at = now() WHERE id = $1 AND status = 'provisioning' \
             RETURNING admin_email",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *transaction)
        .await?;
        if let Some(admin_email) = activated {
            let welcome = MailJob {
                tenant_id,
                to: admin_email,
                mail: Mail::Welcome,
            };
            enqueue_mail(&mut transaction, &welcome).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub async fn mark_failed(&self, tenant_id: Uuid, reason: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE tenants SET status = 'failed', failure_reason = $2, updated_at = now() \
             WHERE id = $1 AND status = 'provisioning'",
        )
        .bind(tenant_id)
        .bind(reason)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_status(&self, tenant_id: Uuid, status: TenantStatus) -> StoreResult<()> {
        let updated =
            sqlx::query("UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1")
                .bind(tenant_id)
                .bind(status.as_str())
                .execute(self.pool())
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- offboarding and audit ----

    /// Cancels a tenant: it stops being served at once (the status change is published to every
    /// router), is exported by a worker, and its database and role are dropped after `grace`.
    /// Recorded in the audit log in the same transaction.
    pub async fn cancel_tenant(
        &self,
        tenant_id: Uuid,
        grace: Duration,
        actor: &str,
    ) -> StoreResult<TenantRecord> {
        use crate::subscriptions::{self, Effects, Lifecycle, SubscriptionStatus};
        let mut transaction = self.pool().begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant_id)
                .fetch_optional(&mut *transaction)
                .await?;
        let before = before.ok_or(StoreError::NotFound)?;
        if let Some(status @ (TenantStatus::Cancelled | TenantStatus::Deprovisioned)) =
            TenantStatus::parse(&before)
        {
            return Err(StoreError::WrongStatus(status.as_str()));
        }
        // The subscription ends with the tenant (a tenant from before billing may have none).
        match subscriptions::lock(&mut transaction, tenant_id).await {
            Ok(current) if current.status != SubscriptionStatus::Cancelled => {
                let lifecycle = Lifecycle {
                    trial: Duration::ZERO,
                    past_due_grace: Duration::ZERO,
                    offboarding_grace: grace,
                };
                subscriptions::transition(
                    &mut transaction,
                    &current,
                    SubscriptionStatus::Cancelled,
                    "cancelled",
                    actor,
                    &lifecycle,
                    Effects::default(),
                )
                .await?;
            }
            Ok(_) | Err(StoreError::NotFound) => {
                subscriptions::cancel_tenant_in(&mut transaction, tenant_id, grace, actor).await?;
            }
            Err(error) => return Err(error),
        }
        transaction.commit().await?;
        self.tenant(tenant_id).await
    }

    /// Cancelled tenants, with whether each is past its grace period.
    pub async fn cancelled_tenants(&self) -> StoreResult<Vec<(Uuid, bool)>> {
        let rows = sqlx::query_as(
            "SELECT id, purge_after <= now() AS due FROM tenants WHERE status = 'cancelled' \
             ORDER BY purge_after",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Ends offboarding: the database and role are gone, so the tenant no longer counts against
    /// its host and its connection string is forgotten.
    pub async fn mark_deprovisioned(&self, tenant_id: Uuid, actor: &str) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let host: Option<Option<String>> = sqlx::query_scalar(
            "SELECT h.name FROM tenants t LEFT JOIN database_hosts h ON h.id = t.host_id \
             WHERE t.id = $1 AND t.status = 'cancelled' FOR UPDATE OF t",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(host) = host else {
            return Err(StoreError::WrongStatus("not cancelled"));
        };
        sqlx::query(
            "UPDATE tenants SET status = 'deprovisioned', deprovisioned_at = now(), host_id = NULL, \
             sealed_database_url = NULL, database_url_key_id = NULL, updated_at = now() WHERE id = $1",
        )
        .bind(tenant_id)
        .execute(&mut *transaction)
        .await?;
        // Its custom domains are released, so their real owners (or anyone) can claim them.
        let released: Vec<String> =
            sqlx::query_scalar("DELETE FROM tenant_domains WHERE tenant_id = $1 RETURNING domain")
                .bind(tenant_id)
                .fetch_all(&mut *transaction)
                .await?;
        insert_audit(
            &mut transaction,
            actor,
            "tenant.deprovision",
            Some(tenant_id),
            serde_json::json!({"before": "cancelled", "after": "deprovisioned", "host": host,
                               "released_domains": released}),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Records a finished export file.
    pub async fn record_export(&self, export: &TenantExport) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tenant_exports (id, tenant_id, reason, path, bytes, schema_version) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(export.id)
        .bind(export.tenant_id)
        .bind(&export.reason)
        .bind(&export.path)
        .bind(export.bytes)
        .bind(export.schema_version)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A tenant's exports, oldest first.
    pub async fn exports_of(&self, tenant_id: Uuid) -> StoreResult<Vec<TenantExport>> {
        let exports = sqlx::query_as(
            "SELECT id, tenant_id, reason, path, bytes, schema_version FROM tenant_exports \
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        Ok(exports)
    }

    /// Stores a tenant's new sealed database URL (after a credential rotation), audited. The
    /// change trigger tells every router, which then builds a new pool with it.
    pub async fn replace_tenant_url(
        &self,
        tenant_id: Uuid,
        sealed: &Sealed,
        actor: &str,
    ) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE tenants SET sealed_database_url = $2, database_url_key_id = $3, \
             updated_at = now() WHERE id = $1 AND sealed_database_url IS NOT NULL",
        )
        .bind(tenant_id)
        .bind(&sealed.blob)
        .bind(&sealed.key_id)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(
            &mut transaction,
            actor,
            "tenant.rotate_credentials",
            Some(tenant_id),
            serde_json::json!({}),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }
}
