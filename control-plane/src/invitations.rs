//! Invitations an owner made to join their workspace. The link's token is sealed and carries
//! the invitation's id; this record is what makes an invitation listable while pending,
//! revocable by the owner, and usable once. Creating one counts against the plan's limit of
//! pending invitations.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::limits::{Counted, hold_within_limit};
use crate::store::{Store, StoreError, StoreResult, insert_audit};

/// An invitation as its workspace's owner sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PendingInvitation {
    pub id: i64,
    pub email: String,
    pub role: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, email, role, created_by, created_at, expires_at"
    };
}

impl Store {
    /// Records a new invitation (audited as `user.invite`); `PlanLimitReached` when the tenant
    /// already has `limit` pending ones.
    pub async fn create_invitation(
        &self,
        tenant_id: Uuid,
        email: &str,
        role: &str,
        expires_at: DateTime<Utc>,
        actor: &str,
        limit: Option<i32>,
    ) -> StoreResult<PendingInvitation> {
        let mut transaction = self.pool().begin().await?;
        hold_within_limit(
            &mut transaction,
            tenant_id,
            Counted::PendingInvitations,
            limit,
        )
        .await?;
        let invitation = sqlx::query_as::<_, PendingInvitation>(concat!(
            "INSERT INTO tenant_invitations (tenant_id, email, role, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            columns!()
        ))
        .bind(tenant_id)
        .bind(email)
        .bind(role)
        .bind(actor)
        .bind(expires_at)
        .fetch_one(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            actor,
            "user.invite",
            Some(tenant_id),
            serde_json::json!({"invitation_id": invitation.id, "email": email, "role": role,
                               "expires_at": expires_at}),
        )
        .await?;
        transaction.commit().await?;
        Ok(invitation)
    }

    /// One page of the tenant's pending invitations (not accepted, revoked or expired), oldest
    /// first: up to `limit + 1` (so the caller learns whether more follow) after the id `after`.
    pub async fn pending_invitations_page(
        &self,
        tenant_id: Uuid,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<PendingInvitation>> {
        let invitations = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM tenant_invitations WHERE tenant_id = $1 AND id > $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now() \
             ORDER BY id LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(after.unwrap_or(0))
        .bind(limit.saturating_add(1))
        .fetch_all(self.pool())
        .await?;
        Ok(invitations)
    }

    /// Revokes a pending invitation (audited); `NotFound` if the tenant has no such pending one.
    pub async fn revoke_invitation(
        &self,
        tenant_id: Uuid,
        id: i64,
        actor: &str,
    ) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let email: Option<String> = sqlx::query_scalar(
            "UPDATE tenant_invitations SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL RETURNING email",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *transaction)
        .await?;
        let email = email.ok_or(StoreError::NotFound)?;
        insert_audit(
            &mut transaction,
            actor,
            "invitation.revoke",
            Some(tenant_id),
            serde_json::json!({"invitation_id": id, "email": email}),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Marks a pending invitation used; `false` if it was revoked or used already (the caller
    /// then creates nothing).
    pub async fn use_invitation(&self, tenant_id: Uuid, id: i64) -> StoreResult<bool> {
        let used = sqlx::query(
            "UPDATE tenant_invitations SET accepted_at = now() WHERE tenant_id = $1 AND id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(used == 1)
    }
}
