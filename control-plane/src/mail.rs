//! Mail as jobs: what Silo sends and to whom, queued on the control-plane database (apalis queue
//! [`MAIL_QUEUE`]) in the same transaction as the change it tells of, and sent by a worker, never
//! inside a request. A mail that cannot be sent is retried by the worker and never undoes or
//! delays the change that queued it.
//!
//! A job carries no usable secret in clear: an invitation's link is sealed to the tenant
//! ([`Purpose::MailLink`]); a password reset carries only the address typed, and the worker makes
//! the reset link itself once it has found the user in the tenant's own database.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sealing::{Keyring, Purpose, Sealed, SealingError};
use crate::store::{Store, StoreError, StoreResult};

/// The apalis queue mail jobs travel on; producers and the worker must agree on it.
pub const MAIL_QUEUE: &str = "silo.mail";

/// One mail to send, on behalf of one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailJob {
    /// The tenant the mail is about; its name is in the mail and its links are its own.
    pub tenant_id: Uuid,
    /// The recipient's address.
    pub to: String,
    pub mail: Mail,
}

/// What a mail says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mail {
    /// The workspace is ready: its link.
    Welcome,
    /// Someone was invited to join with `role`; `link` opens the acceptance page.
    Invitation { role: String, link: SealedLink },
    /// Someone asked to reset the password of `to` on the host `origin` (scheme and host, as the
    /// browser addressed it). The worker sends a link only if `to` is an active user there.
    PasswordReset { origin: String },
    /// The trial ends soon.
    TrialEnding { trial_ends_at: DateTime<Utc> },
    /// The subscription is past due (a payment failed, or the trial ended unpaid), served until
    /// `grace_ends_at`.
    PaymentFailed {
        grace_ends_at: Option<DateTime<Utc>>,
    },
    /// The workspace is suspended for billing.
    Suspended,
}

impl Mail {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Mail::Welcome => "welcome",
            Mail::Invitation { .. } => "invitation",
            Mail::PasswordReset { .. } => "password_reset",
            Mail::TrialEnding { .. } => "trial_ending",
            Mail::PaymentFailed { .. } => "payment_failed",
            Mail::Suspended => "suspended",
        }
    }
}

/// A link sealed to its tenant for the time it waits in the queue.
#[derive(Clone, Serialize, Deserialize)]
pub struct SealedLink {
    key_id: String,
    /// Nonce, ciphertext and tag, base64url.
    blob: String,
}

impl std::fmt::Debug for SealedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedLink")
            .field("key_id", &self.key_id)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

impl SealedLink {
    pub fn seal(keyring: &Keyring, tenant_id: Uuid, link: &SecretString) -> Self {
        let sealed = keyring.seal(Purpose::MailLink, tenant_id, link);
        Self {
            key_id: sealed.key_id,
            blob: URL_SAFE_NO_PAD.encode(&sealed.blob),
        }
    }

    /// The link, if it was sealed for `tenant_id` under a loaded key and not altered.
    pub fn open(&self, keyring: &Keyring, tenant_id: Uuid) -> Result<SecretString, SealingError> {
        let blob = URL_SAFE_NO_PAD
            .decode(&self.blob)
            .map_err(|_| SealingError::Tampered)?;
        keyring.open(
            Purpose::MailLink,
            tenant_id,
            &Sealed {
                key_id: self.key_id.clone(),
                blob,
            },
        )
    }
}

/// Queues `job` inside `transaction`, so the mail goes if and only if the change commits. Fair
/// across tenants ([`crate::jobs`]): one tenant's burst of mail never holds up another's.
pub async fn enqueue_mail(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job: &MailJob,
) -> StoreResult<()> {
    let payload = serde_json::to_vec(job).map_err(|error| StoreError::Queue(error.to_string()))?;
    crate::jobs::enqueue_fair(transaction, MAIL_QUEUE, job.tenant_id, payload).await
}

impl Store {
    /// Queues one mail on its own.
    pub async fn enqueue_mail(&self, job: &MailJob) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        enqueue_mail(&mut transaction, job).await?;
        transaction.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn a_sealed_link_opens_only_for_its_tenant_and_unaltered() {
        let keyring = Keyring::parse(&Keyring::generate_entry("k1")).expect("a keyring");
        let tenant = Uuid::new_v4();
        let link = SecretString::from("http://a.localhost/invitation?token=secret".to_owned());
        let sealed = SealedLink::seal(&keyring, tenant, &link);
        let json = serde_json::to_string(&sealed).expect("serialises");
        assert!(!json.contains("secret"), "{json}");
        assert!(!format!("{sealed:?}").contains(&sealed.blob));
        let opened = sealed.open(&keyring, tenant).expect("opens");
        assert_eq!(opened.expose_secret(), link.expose_secret());
        assert!(sealed.open(&keyring, Uuid::new_v4()).is_err());
        let mut altered = sealed.clone();
        altered.blob.replace_range(0..1, "A");
        if altered.blob != sealed.blob {
            assert!(altered.open(&keyring, tenant).is_err());
        }
    }

    #[test]
    fn jobs_round_trip_as_json_with_their_kind() {
        let job = MailJob {
            tenant_id: Uuid::new_v4(),
            to: "owner@example.test".to_owned(),
            mail: Mail::PasswordReset {
                origin: "http://a.localhost:8080".to_owned(),
            },
        };
        let json = serde_json::to_value(&job).expect("serialises");
        assert_eq!(json["mail"]["kind"], "password_reset");
        let back: MailJob = serde_json::from_value(json).expect("parses");
        assert_eq!(back.mail.kind(), "password_reset");
    }
}
