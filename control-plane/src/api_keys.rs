//! API keys of tenants: created by an owner, shown once as `silo_<prefix>_<secret>`, stored as
//! the prefix (for lookup) and the SHA-256 of the secret; revoked or regenerated (audited).
//! The tenant router authenticates `Authorization: Bearer silo_…` with them; other services
//! ask the apex's validate endpoint.
//!
//! Why SHA-256 and not argon2: the secret is 40 random base32 characters (200 bits) from a
//! CSPRNG, so there is nothing to brute-force and a slow hash buys no safety; argon2 would cost
//! ~15 ms of CPU on every API request. GitHub and Stripe hash their tokens the same way.

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::limits::{Counted, hold_within_limit};
use crate::store::{Store, StoreError, StoreResult, insert_audit};

/// What every key starts with, so leaked keys are easy to recognise (and scan for).
pub const KEY_PREFIX: &str = "silo_";
/// The roles a key may have: never owner, so a key cannot manage users, keys or integrations.
pub const KEY_ROLES: [&str; 2] = ["staff", "read_only"];
/// The module a tenant needs for its keys to be managed and to work.
pub const API_ACCESS_MODULE: &str = "api_access";

const PREFIX_LEN: usize = 8;
const SECRET_LEN: usize = 40;
/// RFC 4648 base32, lower case: no `_`, so the key splits unambiguously, and 32 symbols, so a
/// random byte masked to five bits picks each one with equal chance.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn random_text(length: usize) -> String {
    let mut bytes = vec![0u8; length];
    // `rand::rng()` is a CSPRNG (ChaCha, seeded and reseeded from the operating system).
    rand::rng().fill_bytes(&mut bytes);
    let text = bytes
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(byte & 31)]))
        .collect();
    bytes.fill(0);
    text
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A key as presented by a client, split into its prefix and secret.
pub struct PresentedKey {
    pub prefix: String,
    secret: SecretString,
}

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl PresentedKey {
    /// `Some` if `text` has the shape of a Silo API key (`silo_<8>_<40>`, base32).
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.trim().strip_prefix(KEY_PREFIX)?;
        let (prefix, secret) = rest.split_once('_')?;
        let valid = |part: &str, length: usize| {
            part.len() == length && part.bytes().all(|byte| ALPHABET.contains(&byte))
        };
        (valid(prefix, PREFIX_LEN) && valid(secret, SECRET_LEN)).then(|| Self {
            prefix: prefix.to_owned(),
            secret: SecretString::from(secret.to_owned()),
        })
    }
}

/// What a tenant sees of a key: never the secret nor its hash.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub prefix: String,
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key as the authenticating side holds it: the public record and the secret's hash.
#[derive(Clone)]
pub struct StoredApiKey {
    pub key: ApiKey,
    secret_hash: [u8; 32],
}

impl std::fmt::Debug for StoredApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredApiKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl StoredApiKey {
    /// Whether `presented` is this key and it is not revoked. The secret's hash is compared in
    /// constant time.
    pub fn accepts(&self, presented: &PresentedKey) -> bool {
        let hash = hash_secret(presented.secret.expose_secret());
        let same: bool = hash.ct_eq(&self.secret_hash).into();
        same && presented.prefix == self.key.prefix && self.key.revoked_at.is_none()
    }
}

/// A new key: its record and, once, the whole key.
pub struct NewApiKey {
    pub key: ApiKey,
    /// `silo_<prefix>_<secret>`: hand it to the client once; it is not stored.
    pub secret: SecretString,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What the validate endpoint tells another service about a valid key.
#[derive(Debug, Clone, Serialize)]
pub struct ValidKey {
    pub valid: bool,
    pub tenant_id: Uuid,
    pub subdomain: String,
    pub key_id: Uuid,
    pub name: String,
    pub role: String,
}

macro_rules! columns {
    () => {
        "id, tenant_id, prefix, secret_hash, name, role, created_by, created_at, last_used_at, revoked_at"
    };
}

/// An `api_keys` row as `columns!()` selects it; the hash is checked to be 32 bytes.
/// No `Debug`: it holds the secret's hash, which [`StoredApiKey`] never prints either.
#[derive(sqlx::FromRow)]
struct StoredApiKeyRow {
    #[sqlx(flatten)]
    key: ApiKey,
    secret_hash: Vec<u8>,
}

impl TryFrom<StoredApiKeyRow> for StoredApiKey {
    type Error = StoreError;

    fn try_from(row: StoredApiKeyRow) -> StoreResult<Self> {
        Ok(StoredApiKey {
            key: row.key,
            secret_hash: row.secret_hash.as_slice().try_into().map_err(|_| {
                StoreError::Database(sqlx::Error::Decode(
                    "an API key hash is not 32 bytes".into(),
                ))
            })?,
        })
    }
}

/// Inserts a fresh key (a new prefix on the rare collision) in `transaction`.
async fn insert_key(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    name: &str,
    role: &str,
    actor: &str,
) -> StoreResult<NewApiKey> {
    for _ in 0..4 {
        let prefix = random_text(PREFIX_LEN);
        let secret = SecretString::from(random_text(SECRET_LEN));
        // A savepoint, so a prefix collision does not abort the caller's transaction.
        let mut attempt = sqlx::Connection::begin(&mut **transaction).await?;
        let inserted = sqlx::query_as::<_, StoredApiKeyRow>(concat!(
            "INSERT INTO api_keys (id, tenant_id, prefix, secret_hash, name, role, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            columns!()
        ))
        .bind(Uuid::new_v4())
        .bind(tenant_id)
        .bind(&prefix)
        .bind(hash_secret(secret.expose_secret()).as_slice())
        .bind(name)
        .bind(role)
        .bind(actor)
        .fetch_one(&mut *attempt)
        .await;
        match inserted {
            Ok(row) => {
                attempt.commit().await?;
                let stored = StoredApiKey::try_from(row)?;
                let whole = format!("{KEY_PREFIX}{prefix}_{}", secret.expose_secret());
                return Ok(NewApiKey {
                    key: stored.key,
                    secret: SecretString::from(whole),
                });
            }
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
                attempt.rollback().await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(StoreError::Database(sqlx::Error::Protocol(
        "four random API key prefixes in a row were taken".into(),
    )))
}

impl Store {
    /// Creates a key for the tenant (audited without the secret); `PlanLimitReached` when the
    /// tenant already has `limit` keys that are not revoked.
    pub async fn create_api_key(
        &self,
        tenant_id: Uuid,
        name: &str,
        role: &str,
        actor: &str,
        limit: Option<i32>,
    ) -> StoreResult<NewApiKey> {
        let mut transaction = self.pool().begin().await?;
        hold_within_limit(&mut transaction, tenant_id, Counted::ApiKeys, limit).await?;
        let created = insert_key(&mut transaction, tenant_id, name, role, actor).await?;
        insert_audit(
            &mut transaction,
            actor,
            "api_key.create",
            Some(tenant_id),
            serde_json::json!({
                "key_id": created.key.id, "prefix": created.key.prefix,
                "name": name, "role": role,
            }),
        )
        .await?;
        transaction.commit().await?;
        Ok(created)
    }

    /// One page of the tenant's keys, revoked ones included, oldest first: up to `limit + 1`
    /// (so the caller learns whether more follow) after the key whose id is `after`.
    pub async fn api_keys_page(
        &self,
        tenant_id: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query_as::<_, StoredApiKeyRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys WHERE tenant_id = $1 AND ($2::uuid IS NULL OR (created_at, id) > \
             (SELECT created_at, id FROM api_keys WHERE tenant_id = $1 AND id = $2)) \
             ORDER BY created_at, id LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(after)
        .bind(limit.saturating_add(1))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| StoredApiKey::try_from(row).map(|stored| stored.key))
            .collect()
    }

    /// Revokes one of the tenant's keys (audited); revoking a revoked key changes nothing.
    /// `NotFound` if the tenant has no such key.
    pub async fn revoke_api_key(
        &self,
        tenant_id: Uuid,
        key_id: Uuid,
        actor: &str,
    ) -> StoreResult<ApiKey> {
        let mut transaction = self.pool().begin().await?;
        let row = sqlx::query_as::<_, StoredApiKeyRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
        ))
        .bind(tenant_id)
        .bind(key_id)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or(StoreError::NotFound)?;
        let key = StoredApiKey::try_from(row)?.key;
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let row = sqlx::query_as::<_, StoredApiKeyRow>(concat!(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING ",
            columns!()
        ))
        .bind(key_id)
        .fetch_one(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            actor,
            "api_key.revoke",
            Some(tenant_id),
            serde_json::json!({"key_id": key_id, "prefix": key.prefix, "name": key.name}),
        )
        .await?;
        transaction.commit().await?;
        Ok(StoredApiKey::try_from(row)?.key)
    }

    /// Revokes an active key and creates its replacement (same name and role) in one
    /// transaction, audited. Returns the old key's record and the new key.
    /// `NotFound` if the tenant has no such active key.
    pub async fn regenerate_api_key(
        &self,
        tenant_id: Uuid,
        key_id: Uuid,
        actor: &str,
    ) -> StoreResult<(ApiKey, NewApiKey)> {
        let mut transaction = self.pool().begin().await?;
        let row = sqlx::query_as::<_, StoredApiKeyRow>(concat!(
            "UPDATE api_keys SET revoked_at = now() \
             WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING ",
            columns!()
        ))
        .bind(tenant_id)
        .bind(key_id)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or(StoreError::NotFound)?;
        let old = StoredApiKey::try_from(row)?.key;
        let created = insert_key(&mut transaction, tenant_id, &old.name, &old.role, actor).await?;
        insert_audit(
            &mut transaction,
            actor,
            "api_key.regenerate",
            Some(tenant_id),
            serde_json::json!({
                "before": {"key_id": old.id, "prefix": old.prefix},
                "after": {"key_id": created.key.id, "prefix": created.key.prefix},
                "name": old.name,
            }),
        )
        .await?;
        transaction.commit().await?;
        Ok((old, created))
    }

    /// The key with this prefix, revoked or not; the caller checks the secret.
    pub async fn api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<StoredApiKey>> {
        let row = sqlx::query_as::<_, StoredApiKeyRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM api_keys WHERE prefix = $1"
        ))
        .bind(prefix)
        .fetch_optional(self.pool())
        .await?;
        row.map(StoredApiKey::try_from).transpose()
    }

    /// Records that a key was used, unless that was recorded less than a minute ago (callers
    /// also call this at most about once a minute per key).
    pub async fn touch_api_key(&self, key_id: Uuid) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        )
        .bind(key_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether `text` is a key that works now: known, the secret matches, not revoked, its
    /// tenant active and entitled to `api_access`. For the apex validate endpoint.
    pub async fn validate_api_key(&self, text: &SecretString) -> StoreResult<Option<ValidKey>> {
        let Some(presented) = PresentedKey::parse(text.expose_secret()) else {
            return Ok(None);
        };
        let Some(stored) = self.api_key_by_prefix(&presented.prefix).await? else {
            return Ok(None);
        };
        if !stored.accepts(&presented) {
            return Ok(None);
        }
        let tenant = self.tenant(stored.key.tenant_id).await?;
        if tenant.status != crate::model::TenantStatus::Active
            || !self.entitlements(tenant.id).await?.has(API_ACCESS_MODULE)
        {
            return Ok(None);
        }
        self.touch_api_key(stored.key.id).await?;
        Ok(Some(ValidKey {
            valid: true,
            tenant_id: tenant.id,
            subdomain: tenant.slug,
            key_id: stored.key.id,
            name: stored.key.name,
            role: stored.key.role,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(prefix: &str, secret: &str) -> StoredApiKey {
        StoredApiKey {
            key: ApiKey {
                id: Uuid::new_v4(),
                tenant_id: Uuid::new_v4(),
                prefix: prefix.to_owned(),
                name: "n".into(),
                role: "staff".into(),
                created_by: "t".into(),
                created_at: Utc::now(),
                last_used_at: None,
                revoked_at: None,
            },
            secret_hash: hash_secret(secret),
        }
    }

    #[test]
    fn generated_keys_parse_and_only_the_right_secret_is_accepted() {
        let prefix = random_text(PREFIX_LEN);
        let secret = random_text(SECRET_LEN);
        assert_ne!(
            secret,
            random_text(SECRET_LEN),
            "fresh randomness each time"
        );
        let key = stored(&prefix, &secret);
        let presented = PresentedKey::parse(&format!("silo_{prefix}_{secret}")).unwrap();
        assert!(key.accepts(&presented));
        let mut wrong = secret.clone().into_bytes();
        wrong[0] = if wrong[0] == b'a' { b'b' } else { b'a' };
        let wrong = String::from_utf8(wrong).unwrap();
        assert!(!key.accepts(&PresentedKey::parse(&format!("silo_{prefix}_{wrong}")).unwrap()));
        let mut revoked = key.clone();
        revoked.key.revoked_at = Some(Utc::now());
        assert!(!revoked.accepts(&presented));
        assert!(!format!("{presented:?}{key:?}").contains(&secret));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let secret = "a".repeat(SECRET_LEN);
        for bad in [
            String::new(),
            "silo_".into(),
            format!("silo_abcdefgh{secret}"),
            format!("silo_abcdefg_{secret}"),
            format!("silo_abcdefgh_{}", &secret[1..]),
            format!("silo_ABCDEFGH_{secret}"),
            format!("silo_abcdefg1_{secret}"),
            format!("key_abcdefgh_{secret}"),
            format!("silo_abcdefgh_{secret}_"),
        ] {
            assert!(PresentedKey::parse(&bad).is_none(), "{bad:?}");
        }
    }
}
