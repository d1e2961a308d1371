//! Tenant sessions ended before they expire. A session token is sealed and carries its own
//! expiry, so without this a copied token would outlive its user's sign-out. Signing out ends
//! one session; a password reset ends every session of that user issued before it. Each insert
//! is published on the tenant channel (`sessions_ended`), and the routers hold the live rows in
//! memory, so checking a session costs no query.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{Store, StoreResult};

/// One row: a session, or every session of a user issued before `ended_at`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndedSession {
    pub tenant_id: Uuid,
    pub session_id: Option<Uuid>,
    pub user_id: Option<i64>,
    pub ended_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Ends one session of `tenant_id` (it would have expired at `expires_at`).
    pub async fn end_session(
        &self,
        tenant_id: Uuid,
        session_id: Uuid,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.insert_ended(tenant_id, Some(session_id), None, None, expires_at)
            .await
    }

    /// Ends every session of `user_id` issued before `before` (by the clock of the process that
    /// mints the user's next session, so that one is never ended by a skewed clock);
    /// `expires_at` is when the newest of them would have expired.
    pub async fn end_user_sessions(
        &self,
        tenant_id: Uuid,
        user_id: i64,
        before: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.insert_ended(tenant_id, None, Some(user_id), Some(before), expires_at)
            .await
    }

    async fn insert_ended(
        &self,
        tenant_id: Uuid,
        session_id: Option<Uuid>,
        user_id: Option<i64>,
        ended_at: Option<DateTime<Utc>>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        // Rows whose sessions have expired on their own end nothing more: cleared on the way.
        sqlx::query(
            "WITH gone AS (DELETE FROM ended_sessions WHERE expires_at < now()) \
             INSERT INTO ended_sessions (tenant_id, session_id, user_id, ended_at, expires_at) \
             VALUES ($1, $2, $3, coalesce($4, now()), $5)",
        )
        .bind(tenant_id)
        .bind(session_id)
        .bind(user_id)
        .bind(ended_at)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The rows still ending something: of one tenant, or of every tenant.
    pub async fn ended_sessions(&self, tenant_id: Option<Uuid>) -> StoreResult<Vec<EndedSession>> {
        Ok(sqlx::query_as(
            "SELECT tenant_id, session_id, user_id, ended_at, expires_at FROM ended_sessions \
             WHERE expires_at > now() AND ($1::uuid IS NULL OR tenant_id = $1)",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?)
    }
}
