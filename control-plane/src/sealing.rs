//! Sealed secrets: tenant connection strings and host admin URLs encrypted at rest with
//! XChaCha20-Poly1305 under named master keys.
//!
//! Invariant: a sealed blob opens only with the associated data it was sealed with (the owning
//! record's id and the secret's purpose), so a ciphertext copied onto another row fails to open.
//! Invariant: keys and plaintexts never appear in `Debug`, `Display` or error text.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// What went wrong while loading keys or sealing. Never carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error(
        "no master keys are configured; set SILO_MASTER_KEYS to `id:base64key[,id:base64key…]`"
    )]
    NoKeys,
    #[error("master key entry {position} is malformed: {reason}")]
    MalformedKey {
        position: usize,
        reason: &'static str,
    },
    #[error("master key id `{0}` appears more than once")]
    DuplicateKeyId(String),
    #[error(
        "the secret was sealed with key `{0}`, which is not loaded; add it to SILO_MASTER_KEYS"
    )]
    UnknownKey(String),
    #[error(
        "the sealed secret failed authentication: it was tampered with or belongs to another record"
    )]
    Tampered,
}

/// One named 256-bit master key.
struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// A sealed secret as stored: the key id travels beside the blob (`nonce ‖ ciphertext ‖ tag`).
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// What a secret is for; part of the associated data so a host URL never opens as a tenant URL.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    TenantDatabaseUrl,
    HostAdminUrl,
    /// A warm-pool database's URL, sealed to the warm row until a tenant claims it.
    WarmDatabaseUrl,
    /// A super-admin's TOTP secret, sealed to the admin's id.
    AdminTotpSecret,
    /// A tenant app session token, sealed to the tenant's id (so it opens on no other tenant).
    TenantSession,
    /// A credential a tenant connected (e.g. a marketplace token), sealed to the tenant's id
    /// and the integration's name (the context), so it opens for no other tenant or name.
    IntegrationSecret,
    /// A tenant user invitation (email, role, expiry), sealed to the tenant's id, so it is
    /// accepted on no other tenant and cannot be altered.
    TenantInvitation,
    /// A link (with its token) carried by a queued mail job, sealed to the tenant's id, so the
    /// job table holds no usable link in clear.
    MailLink,
    /// A CSV file waiting in the import queue, sealed to the tenant's id, so the control plane
    /// holds no tenant's data in clear and a job opens no other tenant's file.
    ItemImport,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::TenantDatabaseUrl => "silo/tenant-database-url/v1",
            Purpose::HostAdminUrl => "silo/host-admin-url/v1",
            Purpose::WarmDatabaseUrl => "silo/warm-database-url/v1",
            Purpose::AdminTotpSecret => "silo/admin-totp-secret/v1",
            Purpose::TenantSession => "silo/tenant-session/v1",
            Purpose::IntegrationSecret => "silo/integration-secret/v1",
            Purpose::TenantInvitation => "silo/tenant-invitation/v1",
            Purpose::MailLink => "silo/mail-link/v1",
            Purpose::ItemImport => "silo/item-import/v1",
        }
    }
}

/// The loaded master keys, newest first. New secrets are sealed with the newest; any loaded key
/// opens, so keys rotate without downtime.
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl Keyring {
    /// Parses `id:base64key[,id:base64key…]`, newest first.
    pub fn parse(spec: &SecretString) -> Result<Self, SealingError> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for (index, entry) in spec
            .expose_secret()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty() && !entry.starts_with('#'))
            .enumerate()
        {
            let position = index + 1;
            let (id, encoded) = entry.split_once(':').ok_or(SealingError::MalformedKey {
                position,
                reason: "expected `id:base64key`",
            })?;
            let id = id.trim();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(SealingError::MalformedKey {
                    position,
                    reason: "the key id must be letters, digits, `-` or `_`",
                });
            }
            let bytes = SecretBox::new(Box::new(BASE64.decode(encoded.trim()).map_err(|_| {
                SealingError::MalformedKey {
                    position,
                    reason: "the key is not valid base64",
                }
            })?));
            let key: [u8; KEY_LEN] = bytes.expose_secret().as_slice().try_into().map_err(|_| {
                SealingError::MalformedKey {
                    position,
                    reason: "the key must be exactly 32 bytes",
                }
            })?;
            if keys.iter().any(|existing| existing.id == id) {
                return Err(SealingError::DuplicateKeyId(id.to_owned()));
            }
            keys.push(MasterKey {
                id: id.to_owned(),
                cipher: XChaCha20Poly1305::new(&key.into()),
            });
        }
        if keys.is_empty() {
            return Err(SealingError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// A fresh random key entry `id:base64key`, for `silo dev` and `silo keys generate`.
    pub fn generate_entry(id: &str) -> SecretString {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        let entry = format!("{id}:{}", BASE64.encode(key));
        key.fill(0);
        SecretString::from(entry)
    }

    /// The key ids, newest first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.id.as_str()).collect()
    }

    /// The id of the key new secrets are sealed with.
    pub fn newest_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `plaintext` for the record `owner` under the newest key.
    pub fn seal(&self, purpose: Purpose, owner: uuid::Uuid, plaintext: &SecretString) -> Sealed {
        self.seal_in_context(purpose, owner, "", plaintext)
    }

    /// Seals `plaintext` for the record `owner` and a `context` within it (e.g. an
    /// integration's name), both bound into the associated data.
    pub fn seal_in_context(
        &self,
        purpose: Purpose,
        owner: uuid::Uuid,
        context: &str,
        plaintext: &SecretString,
    ) -> Sealed {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(purpose, owner, context);
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Sealed {
            key_id: key.id.clone(),
            blob,
        }
    }

    /// Opens a sealed secret of the record `owner`.
    pub fn open(
        &self,
        purpose: Purpose,
        owner: uuid::Uuid,
        sealed: &Sealed,
    ) -> Result<SecretString, SealingError> {
        self.open_in_context(purpose, owner, "", sealed)
    }

    /// Opens a secret sealed with [`Self::seal_in_context`] for `owner` and `context`.
    pub fn open_in_context(
        &self,
        purpose: Purpose,
        owner: uuid::Uuid,
        context: &str,
        sealed: &Sealed,
    ) -> Result<SecretString, SealingError> {
        let key = self
            .keys
            .iter()
            .find(|key| key.id == sealed.key_id)
            .ok_or_else(|| SealingError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.blob.len() < NONCE_LEN {
            return Err(SealingError::Tampered);
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealingError::Tampered)?;
        let aad = associated_data(purpose, owner, context);
        let plaintext = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealingError::Tampered)?;
        let plaintext = String::from_utf8(plaintext).map_err(|_| SealingError::Tampered)?;
        Ok(SecretString::from(plaintext))
    }
}

/// `label ‖ 0 ‖ owner (16 bytes) ‖ context`. The label and the owner have fixed lengths per
/// purpose, so the context needs no length prefix; an empty context gives the same bytes as
/// before contexts existed, so older blobs still open.
fn associated_data(purpose: Purpose, owner: uuid::Uuid, context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + context.len());
    aad.extend_from_slice(purpose.label().as_bytes());
    aad.push(0);
    aad.extend_from_slice(owner.as_bytes());
    aad.extend_from_slice(context.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(entries: &[&SecretString]) -> Keyring {
        let spec = entries
            .iter()
            .map(|entry| entry.expose_secret().to_owned())
            .collect::<Vec<_>>()
            .join(",");
        Keyring::parse(&SecretString::from(spec)).expect("generated keys parse")
    }

    #[test]
    fn seal_then_open_round_trips_and_uses_a_fresh_nonce() {
        let ring = keyring(&[&Keyring::generate_entry("k1")]);
        let owner = uuid::Uuid::new_v4();
        let secret = SecretString::from("postgres://role:pw@host/db");
        let first = ring.seal(Purpose::TenantDatabaseUrl, owner, &secret);
        let second = ring.seal(Purpose::TenantDatabaseUrl, owner, &secret);
        assert_ne!(first.blob, second.blob, "each seal draws a new nonce");
        let opened = ring
            .open(Purpose::TenantDatabaseUrl, owner, &first)
            .unwrap();
        assert_eq!(opened.expose_secret(), secret.expose_secret());
        assert!(!String::from_utf8_lossy(&first.blob).contains("role:pw"));
    }

    #[test]
    fn a_blob_moved_to_another_owner_or_purpose_or_flipped_fails() {
        let ring = keyring(&[&Keyring::generate_entry("k1")]);
        let owner = uuid::Uuid::new_v4();
        let sealed = ring.seal(Purpose::TenantDatabaseUrl, owner, &SecretString::from("x"));
        let other_owner = ring.open(Purpose::TenantDatabaseUrl, uuid::Uuid::new_v4(), &sealed);
        assert!(matches!(other_owner, Err(SealingError::Tampered)));
        let other_purpose = ring.open(Purpose::HostAdminUrl, owner, &sealed);
        assert!(matches!(other_purpose, Err(SealingError::Tampered)));
        let mut flipped = sealed.clone();
        let last = flipped.blob.len() - 1;
        flipped.blob[last] ^= 1;
        assert!(matches!(
            ring.open(Purpose::TenantDatabaseUrl, owner, &flipped),
            Err(SealingError::Tampered)
        ));
        let truncated = Sealed {
            key_id: "k1".into(),
            blob: vec![1, 2, 3],
        };
        assert!(matches!(
            ring.open(Purpose::TenantDatabaseUrl, owner, &truncated),
            Err(SealingError::Tampered)
        ));
    }

    #[test]
    fn a_blob_sealed_in_a_context_opens_only_in_that_context() {
        let ring = keyring(&[&Keyring::generate_entry("k1")]);
        let tenant = uuid::Uuid::new_v4();
        let secret = SecretString::from("shp_token_1234");
        let sealed = ring.seal_in_context(Purpose::IntegrationSecret, tenant, "shopify", &secret);
        let opened = ring
            .open_in_context(Purpose::IntegrationSecret, tenant, "shopify", &sealed)
            .unwrap();
        assert_eq!(opened.expose_secret(), secret.expose_secret());
        for (owner, context) in [
            (tenant, "shippo"),
            (tenant, ""),
            (uuid::Uuid::new_v4(), "shopify"),
        ] {
            assert!(matches!(
                ring.open_in_context(Purpose::IntegrationSecret, owner, context, &sealed),
                Err(SealingError::Tampered)
            ));
        }
    }

    #[test]
    fn older_keys_still_open_and_new_seals_use_the_newest() {
        let old = Keyring::generate_entry("old");
        let new = Keyring::generate_entry("new");
        let before = keyring(&[&old]);
        let owner = uuid::Uuid::new_v4();
        let sealed = before.seal(Purpose::HostAdminUrl, owner, &SecretString::from("admin"));
        let after = keyring(&[&new, &old]);
        assert_eq!(after.newest_key_id(), "new");
        assert_eq!(
            after
                .open(Purpose::HostAdminUrl, owner, &sealed)
                .unwrap()
                .expose_secret(),
            "admin"
        );
        assert_eq!(
            after
                .seal(Purpose::HostAdminUrl, owner, &SecretString::from("a"))
                .key_id,
            "new"
        );
        let only_new = keyring(&[&new]);
        assert!(matches!(
            only_new.open(Purpose::HostAdminUrl, owner, &sealed),
            Err(SealingError::UnknownKey(id)) if id == "old"
        ));
    }

    #[test]
    fn malformed_key_specs_are_refused_without_echoing_the_key() {
        let cases: &[(&str, &str)] = &[
            ("", "no master keys"),
            ("nocolon", "expected `id:base64key`"),
            ("k1:!!!notbase64", "not valid base64"),
            ("k1:c2hvcnQ=", "exactly 32 bytes"),
            ("bad id:c2hvcnQ=", "key id must be"),
        ];
        for (spec, expected) in cases {
            let error = Keyring::parse(&SecretString::from(*spec))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{spec:?} gave {error:?}");
            assert!(
                !error.contains("c2hvcnQ") && !error.contains("notbase64"),
                "{error}"
            );
        }
        let entry = Keyring::generate_entry("dup");
        let twice = format!("{},{}", entry.expose_secret(), entry.expose_secret());
        assert!(matches!(
            Keyring::parse(&SecretString::from(twice)),
            Err(SealingError::DuplicateKeyId(_))
        ));
    }
}
