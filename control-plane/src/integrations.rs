//! Integration credentials a tenant connects (a marketplace or shipping API token): sealed with
//! the master keyring like connection strings, under [`Purpose::IntegrationSecret`] with the
//! tenant's id and the integration's name as associated data, so a blob copied onto another
//! tenant or name fails to open. Only the last four characters are ever shown; changes are
//! audited without the secret; `silo keys rotate` re-seals them under the newest key.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use uuid::Uuid;

use crate::limits::{Counted, PageRequest, hold_within_limit};
use crate::sealing::{Keyring, Purpose, Sealed};
use crate::store::{Store, StoreError, StoreResult, insert_audit};

/// Shortest and longest credential accepted, in characters. Eight at least, so that the four
/// shown are at most half of it.
pub const SECRET_LENGTH: std::ops::RangeInclusive<usize> = 8..=4096;

/// `^[a-z][a-z0-9_]{1,39}$`, as the table's check.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|first| first.is_ascii_lowercase())
        && (2..=40).contains(&name.len())
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

/// What anyone sees of a credential.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Integration {
    pub name: String,
    /// The credential's last four characters.
    pub last4: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What storing a credential returns: what may be shown and whether the row is new.
#[derive(Debug, sqlx::FromRow)]
struct PutIntegrationRow {
    #[sqlx(flatten)]
    integration: Integration,
    created: bool,
}

/// A credential's sealed columns. No `Debug`: it holds the sealed blob.
#[derive(sqlx::FromRow)]
struct SealedSecretRow {
    sealed_secret: Vec<u8>,
    key_id: String,
}

impl From<SealedSecretRow> for Sealed {
    fn from(row: SealedSecretRow) -> Self {
        Sealed {
            blob: row.sealed_secret,
            key_id: row.key_id,
        }
    }
}

fn last4(secret: &str) -> String {
    let count = secret.chars().count();
    secret.chars().skip(count.saturating_sub(4)).collect()
}

impl Store {
    /// Stores (creates or replaces) one credential of the tenant, sealed; audited without the
    /// secret. Returns what may be shown and whether it was created (not replaced). A new name
    /// past the plan's `limit` is `PlanLimitReached`; replacing one is always allowed.
    pub async fn put_integration(
        &self,
        keyring: &Keyring,
        tenant_id: Uuid,
        name: &str,
        secret: &SecretString,
        actor: &str,
        limit: Option<i32>,
    ) -> StoreResult<(Integration, bool)> {
        let sealed = keyring.seal_in_context(Purpose::IntegrationSecret, tenant_id, name, secret);
        let mut transaction = self.pool().begin().await?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tenant_integrations WHERE tenant_id = $1 AND name = $2)",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_one(&mut *transaction)
        .await?;
        if !exists {
            hold_within_limit(&mut transaction, tenant_id, Counted::Integrations, limit).await?;
        }
        let row = sqlx::query_as::<_, PutIntegrationRow>(
            "INSERT INTO tenant_integrations (tenant_id, name, sealed_secret, key_id, last4) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
             key_id = excluded.key_id, last4 = excluded.last4, updated_at = now() \
             RETURNING name, last4, created_at, updated_at, (xmax = 0) AS created",
        )
        .bind(tenant_id)
        .bind(name)
        .bind(&sealed.blob)
        .bind(&sealed.key_id)
        .bind(last4(secret.expose_secret()))
        .fetch_one(&mut *transaction)
        .await?;
        let created = row.created;
        insert_audit(
            &mut transaction,
            actor,
            if created {
                "integration.create"
            } else {
                "integration.replace"
            },
            Some(tenant_id),
            serde_json::json!({"name": name, "key_id": sealed.key_id}),
        )
        .await?;
        transaction.commit().await?;
        Ok((row.integration, created))
    }

    /// One page of the tenant's credentials (never the secrets), by name.
    pub async fn integrations_page(
        &self,
        tenant_id: Uuid,
        page: PageRequest<'_>,
    ) -> StoreResult<Vec<Integration>> {
        let integrations = sqlx::query_as(
            "SELECT name, last4, created_at, updated_at FROM tenant_integrations \
             WHERE tenant_id = $1 AND ($2::text IS NULL OR name > $2) ORDER BY name LIMIT $3",
        )
        .bind(tenant_id)
        .bind(page.after)
        .bind(page.fetch())
        .fetch_all(self.pool())
        .await?;
        Ok(integrations)
    }

    /// Removes one credential (audited); `NotFound` if the tenant has none by that name.
    pub async fn remove_integration(
        &self,
        tenant_id: Uuid,
        name: &str,
        actor: &str,
    ) -> StoreResult<()> {
        self.delete_audited(
            "DELETE FROM tenant_integrations WHERE tenant_id = $1 AND name = $2",
            tenant_id,
            name,
            actor,
            "integration.remove",
            serde_json::json!({"name": name}),
        )
        .await
    }

    /// Opens one credential, for the code that calls the integration on the tenant's behalf.
    /// A blob that was moved to another tenant or name fails with `Sealing(Tampered)`.
    pub async fn integration_secret(
        &self,
        keyring: &Keyring,
        tenant_id: Uuid,
        name: &str,
    ) -> StoreResult<SecretString> {
        let sealed: Sealed = sqlx::query_as::<_, SealedSecretRow>(
            "SELECT sealed_secret, key_id FROM tenant_integrations \
             WHERE tenant_id = $1 AND name = $2",
        )
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?
        .into();
        Ok(keyring.open_in_context(Purpose::IntegrationSecret, tenant_id, name, &sealed)?)
    }

    /// Re-seals every credential not yet under the newest key, each row in its own transaction
    /// under a row lock (so rotation may be interrupted and run again beside live traffic).
    /// Returns how many were re-sealed.
    pub async fn reseal_integrations(&self, keyring: &Keyring) -> StoreResult<u64> {
        let newest = keyring.newest_key_id();
        let pending: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT tenant_id, name FROM tenant_integrations WHERE key_id <> $1 \
             ORDER BY tenant_id, name",
        )
        .bind(newest)
        .fetch_all(self.pool())
        .await?;
        let mut resealed = 0;
        for (tenant_id, name) in pending {
            let mut transaction = self.pool().begin().await?;
            let row = sqlx::query_as::<_, SealedSecretRow>(
                "SELECT sealed_secret, key_id FROM tenant_integrations \
                 WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
            )
            .bind(tenant_id)
            .bind(&name)
            .fetch_optional(&mut *transaction)
            .await?;
            // Removed, or re-sealed by a replacement, meanwhile.
            let Some(row) = row else { continue };
            let sealed = Sealed::from(row);
            if sealed.key_id == newest {
                continue;
            }
            let secret =
                keyring.open_in_context(Purpose::IntegrationSecret, tenant_id, &name, &sealed)?;
            let resealed_blob =
                keyring.seal_in_context(Purpose::IntegrationSecret, tenant_id, &name, &secret);
            sqlx::query(
                "UPDATE tenant_integrations SET sealed_secret = $3, key_id = $4 \
                 WHERE tenant_id = $1 AND name = $2",
            )
            .bind(tenant_id)
            .bind(&name)
            .bind(&resealed_blob.blob)
            .bind(&resealed_blob.key_id)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            resealed += 1;
        }
        Ok(resealed)
    }
}

#[cfg(test)]
mod tests {
    use super::{last4, valid_name};

    #[test]
    fn names_follow_the_table_check() {
        for good in [
            "shopify",
            "dhl_express",
            "s3",
            "a234567890123456789012345678901234567890",
        ] {
            assert!(valid_name(good), "{good:?}");
        }
        for bad in [
            "",
            "a",
            "Shopify",
            "3pl",
            "_x",
            "dhl-express",
            "a2345678901234567890123456789012345678901",
            "shöp",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_the_last_four_characters_are_kept() {
        assert_eq!(last4("sk_live_abcdWXYZ"), "WXYZ");
        assert_eq!(last4("ünïcödé€"), "ödé€");
    }
}
