//! Tenants whose provisioning failed: the list an operator's cleanup works through, and the
//! removal of one's record, which frees its subdomain for a new signup. (Dropping what was half
//! made on its host is the provisioner's part: `provisioner::purge`.)

use uuid::Uuid;

use crate::store::{Store, StoreResult, insert_audit};
use crate::tenants::TenantRecord;

impl Store {
    /// Every tenant whose provisioning failed, oldest first.
    pub async fn failed_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tenants WHERE status = 'failed' ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut tenants = Vec::with_capacity(ids.len());
        for id in ids {
            tenants.push(self.tenant(id).await?);
        }
        Ok(tenants)
    }

    /// Removes a failed tenant's record (its subscription, domains, links and history go with
    /// it; audit rows stay, no longer linked) and audits the purge with `detail`, in one
    /// transaction. Its subdomain is free from the commit on. `false`, changing nothing, when
    /// the tenant is no longer `failed` (an operator retried it meanwhile) or is gone.
    pub async fn forget_failed_tenant(
        &self,
        tenant_id: Uuid,
        actor: &str,
        detail: serde_json::Value,
    ) -> StoreResult<bool> {
        let mut transaction = self.pool().begin().await?;
        let slug: Option<String> = sqlx::query_scalar(
            "SELECT slug FROM tenants WHERE id = $1 AND status = 'failed' FOR UPDATE",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *transaction)
        .await?;
        if slug.is_none() {
            return Ok(false);
        }
        // Written while the tenant still exists; the row keeps its detail when the link to the
        // tenant is cleared by the delete below.
        insert_audit(
            &mut transaction,
            actor,
            "tenant.purge_failed",
            Some(tenant_id),
            detail,
        )
        .await?;
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(true)
    }
}
