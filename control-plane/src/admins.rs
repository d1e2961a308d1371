//! Super-admin accounts and their sessions in the control-plane database. The password is an
//! argon2id hash, the TOTP secret is sealed to the admin's id, and a session token is stored only
//! as its SHA-256 hash, so a copy of the database logs nobody in.

use uuid::Uuid;

use crate::sealing::Sealed;
use crate::store::{Store, StoreError, StoreResult};

/// A super-admin as stored.
#[derive(Debug, Clone)]
pub struct AdminRecord {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub sealed_totp_secret: Sealed,
    pub last_totp_step: i64,
}

/// An `admin_users` row; the two sealed columns become a [`Sealed`].
/// No `Debug`: it holds the sealed blob.
#[derive(sqlx::FromRow)]
struct AdminRow {
    id: Uuid,
    email: String,
    password_hash: String,
    sealed_totp_secret: Vec<u8>,
    totp_key_id: String,
    last_totp_step: i64,
}

impl From<AdminRow> for AdminRecord {
    fn from(row: AdminRow) -> Self {
        AdminRecord {
            id: row.id,
            email: row.email,
            password_hash: row.password_hash,
            sealed_totp_secret: Sealed {
                blob: row.sealed_totp_secret,
                key_id: row.totp_key_id,
            },
            last_totp_step: row.last_totp_step,
        }
    }
}

/// Who a valid session belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminIdentity {
    pub id: Uuid,
    pub email: String,
}

impl Store {
    pub async fn create_admin(
        &self,
        id: Uuid,
        email: &str,
        password_hash: &str,
        sealed_totp_secret: &Sealed,
    ) -> StoreResult<()> {
        let inserted = sqlx::query(
            "INSERT INTO admin_users (id, email, password_hash, sealed_totp_secret, totp_key_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .bind(&sealed_totp_secret.blob)
        .bind(&sealed_totp_secret.key_id)
        .execute(self.pool())
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AdminExists);
        }
        Ok(())
    }

    pub async fn admin_by_email(&self, email: &str) -> StoreResult<Option<AdminRecord>> {
        let row = sqlx::query_as::<_, AdminRow>(
            "SELECT id, email, password_hash, sealed_totp_secret, totp_key_id, last_totp_step \
             FROM admin_users WHERE lower(email) = lower($1)",
        )
        .bind(email)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(AdminRecord::from))
    }

    /// Records a TOTP step as used; `false` if it (or a later one) was already used, so a code
    /// can never be replayed.
    pub async fn use_totp_step(&self, admin_id: Uuid, step: i64) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE admin_users SET last_totp_step = $2, last_login_at = now() \
             WHERE id = $1 AND last_totp_step < $2",
        )
        .bind(admin_id)
        .bind(step)
        .execute(self.pool())
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub async fn create_admin_session(
        &self,
        token_sha256: &[u8],
        admin_id: Uuid,
        lifetime: std::time::Duration,
    ) -> StoreResult<chrono::DateTime<chrono::Utc>> {
        let expires = sqlx::query_scalar(
            "INSERT INTO admin_sessions (token_sha256, admin_id, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING expires_at",
        )
        .bind(token_sha256)
        .bind(admin_id)
        .bind(lifetime.as_secs_f64())
        .fetch_one(self.pool())
        .await?;
        Ok(expires)
    }

    /// The admin a live session token (by hash) belongs to.
    pub async fn admin_session(&self, token_sha256: &[u8]) -> StoreResult<Option<AdminIdentity>> {
        let identity = sqlx::query_as(
            "SELECT a.id, a.email FROM admin_sessions s JOIN admin_users a ON a.id = s.admin_id \
             WHERE s.token_sha256 = $1 AND s.expires_at > now()",
        )
        .bind(token_sha256)
        .fetch_optional(self.pool())
        .await?;
        Ok(identity)
    }

    pub async fn delete_admin_session(&self, token_sha256: &[u8]) -> StoreResult<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE token_sha256 = $1 OR expires_at < now()")
            .bind(token_sha256)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
