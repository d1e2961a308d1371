//! Password hashing with argon2id (default parameters), run off the async threads.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use secrecy::{ExposeSecret as _, SecretString};

/// Hashes a password to a PHC string. CPU-heavy (tens of ms): call from blocking context.
pub fn hash(password: &SecretString) -> String {
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes())
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Checks a password against a PHC string; a malformed hash never verifies.
pub fn verify(password: &SecretString, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok()
    })
}

/// [`hash`] on tokio's blocking pool.
pub async fn hash_async(password: SecretString) -> String {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .expect("password hashing does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let password = SecretString::from("correct horse battery");
        let phc = hash(&password);
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct horse"));
        assert!(verify(&password, &phc));
        assert!(!verify(&SecretString::from("wrong horse battery"), &phc));
        assert!(!verify(&password, "not a hash"));
    }
}
