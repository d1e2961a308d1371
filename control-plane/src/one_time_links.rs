//! One-time links: random tokens for a URL, bound to a tenant and a purpose, with an expiry and
//! single use. The token leaves Silo once (in the URL it was made for); only its SHA-256 is
//! stored, so a copy of the database opens nothing. A token presented on another tenant's host,
//! for another purpose, after its expiry or a second time finds nothing.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::store::{Store, StoreResult};

/// What a link is for; a token made for one purpose is refused for every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Lets the browser that signed up ask for sign-in links while its workspace is set up;
    /// used up when one of them signs the owner in.
    SignupLanding,
    /// Signs a user in once, straight from a link.
    SignIn,
    /// Lets one user (the subject, `user:<id>`) set a new password once, from a mailed link.
    PasswordReset,
}

impl LinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::SignupLanding => "signup_landing",
            Self::SignIn => "sign_in",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// How long the browser that signed up may fetch sign-in links.
pub const SIGNUP_LANDING_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How long a sign-in link works.
pub const SIGN_IN_LINK_LIFETIME: Duration = Duration::from_secs(60);
/// How long a mailed password reset link works.
pub const PASSWORD_RESET_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The subject of a password reset link: the user it resets, by id in the tenant's database.
pub fn password_reset_subject(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// The user id a password reset link's subject names.
pub fn password_reset_user(subject: &str) -> Option<i64> {
    subject.strip_prefix("user:")?.parse().ok()
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    // `rand::rng()` is a CSPRNG (ChaCha, seeded and reseeded from the operating system).
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

fn seconds(lifetime: Duration) -> f64 {
    lifetime.as_secs_f64()
}

impl Store {
    /// Makes a link token for `subject` of `tenant_id`, valid for `lifetime`. Expired links of
    /// every tenant are swept at the same time, so the table holds only live ones.
    pub async fn create_link(
        &self,
        purpose: LinkPurpose,
        tenant_id: Uuid,
        subject: &str,
        lifetime: Duration,
    ) -> StoreResult<SecretString> {
        let token = new_token();
        let mut transaction = self.pool().begin().await?;
        sqlx::query("DELETE FROM one_time_links WHERE expires_at < now() - interval '1 hour'")
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "INSERT INTO one_time_links (token_hash, purpose, tenant_id, subject, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(token_hash(token.expose_secret()))
        .bind(purpose.as_str())
        .bind(tenant_id)
        .bind(subject)
        .bind(seconds(lifetime))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(token)
    }

    /// The subject of a live, unused link of this tenant and purpose, without using it up.
    pub async fn peek_link(
        &self,
        purpose: LinkPurpose,
        tenant_id: Uuid,
        token: &SecretString,
    ) -> StoreResult<Option<String>> {
        self.live_link(
            "SELECT subject FROM one_time_links WHERE",
            "",
            purpose,
            tenant_id,
            token,
        )
        .await
    }

    /// Uses a live link of this tenant and purpose up, answering its subject; `None` when there
    /// is no such link or it was used (two racing uses: exactly one wins).
    pub async fn use_link(
        &self,
        purpose: LinkPurpose,
        tenant_id: Uuid,
        token: &SecretString,
    ) -> StoreResult<Option<String>> {
        self.live_link(
            "UPDATE one_time_links SET used_at = now() WHERE",
            "RETURNING subject",
            purpose,
            tenant_id,
            token,
        )
        .await
    }

    /// `head` + "this token, live, unused" + `tail`, answering the subject.
    async fn live_link(
        &self,
        head: &str,
        tail: &str,
        purpose: LinkPurpose,
        tenant_id: Uuid,
        token: &SecretString,
    ) -> StoreResult<Option<String>> {
        let sql = format!(
            "{head} token_hash = $1 AND purpose = $2 AND tenant_id = $3 \
             AND used_at IS NULL AND expires_at > now() {tail}"
        );
        // `head` and `tail` are this module's constants; every value is bound.
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(token_hash(token.expose_secret()))
            .bind(purpose.as_str())
            .bind(tenant_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Uses up every live link of this tenant, purpose and subject (a landing key once the
    /// owner has landed).
    pub async fn use_links_of(
        &self,
        purpose: LinkPurpose,
        tenant_id: Uuid,
        subject: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE one_time_links SET used_at = now() WHERE purpose = $1 AND tenant_id = $2 \
             AND subject = $3 AND used_at IS NULL",
        )
        .bind(purpose.as_str())
        .bind(tenant_id)
        .bind(subject)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_only_as_their_hash() {
        let first = new_token();
        let second = new_token();
        assert_ne!(first.expose_secret(), second.expose_secret());
        assert_eq!(first.expose_secret().len(), 43);
        let hash = token_hash(first.expose_secret());
        assert_eq!(hash.len(), 32);
        assert_ne!(hash, first.expose_secret().as_bytes());
    }
}
