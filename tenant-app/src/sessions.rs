//! Session tokens: what they carry (sealed to the tenant, so a client can neither read nor
//! change them), making and opening them, and ending sessions before they expire — signing out
//! (`POST /sign-out`, `DELETE /api/v1/sessions/current`) and a password reset — recorded in the
//! control plane and held by every router (see `tenant_router`'s `resolve/sessions.rs`). The
//! HTTP handlers that sign in and out are in `auth.rs`, above this module.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use control_plane::{Purpose, Sealed};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use web::ApiError;

use tenant_router::RouterState;

/// How long a session token is valid.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// What a session token carries (sealed, so the client can neither read nor change it).
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    user_id: i64,
    expires_at: u64,
    /// The session's own id, so signing out can end it (absent from tokens made before).
    #[serde(default)]
    session: Option<uuid::Uuid>,
    /// When the token was made (unix milliseconds): a password reset ends the sessions made
    /// before it.
    #[serde(default)]
    issued_at_ms: u64,
}

pub(crate) fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The user a session token of `tenant_id` signs in, if it is one of its sessions, not expired
/// and not ended (no database needed).
pub(crate) fn live_session(
    router: &RouterState,
    tenant_id: uuid::Uuid,
    token: &SecretString,
) -> Option<i64> {
    open_token(router, tenant_id, token)
        .filter(|claims| claims.expires_at > unix_now())
        .filter(|claims| {
            !router.session_ended(
                tenant_id,
                claims.session,
                claims.user_id,
                claims.issued_at_ms,
            )
        })
        .map(|claims| claims.user_id)
}

/// `st.<key id>.<nonce ‖ ciphertext ‖ tag>`, both parts base64url.
fn mint_token(router: &RouterState, tenant_id: uuid::Uuid, claims: &Claims) -> String {
    let plaintext = SecretString::from(serde_json::to_string(claims).unwrap_or_default());
    let sealed = router
        .keyring()
        .seal(Purpose::TenantSession, tenant_id, &plaintext);
    format!(
        "st.{}.{}",
        URL_SAFE_NO_PAD.encode(sealed.key_id.as_bytes()),
        URL_SAFE_NO_PAD.encode(&sealed.blob)
    )
}

fn open_token(router: &RouterState, tenant_id: uuid::Uuid, token: &SecretString) -> Option<Claims> {
    let mut parts = token.expose_secret().splitn(3, '.');
    if parts.next()? != "st" {
        return None;
    }
    let key_id = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
    let blob = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    let plaintext = router
        .keyring()
        .open(Purpose::TenantSession, tenant_id, &Sealed { key_id, blob })
        .ok()?;
    serde_json::from_str(plaintext.expose_secret()).ok()
}

/// A new session token for `user_id` and its lifetime in seconds.
pub(crate) fn new_session(
    router: &RouterState,
    tenant_id: uuid::Uuid,
    user_id: i64,
) -> (String, u64) {
    let now = unix_now_ms();
    let claims = Claims {
        user_id,
        expires_at: now / 1000 + SESSION_LIFETIME.as_secs(),
        session: Some(uuid::Uuid::new_v4()),
        issued_at_ms: now,
    };
    (
        mint_token(router, tenant_id, &claims),
        SESSION_LIFETIME.as_secs(),
    )
}

/// Ends the session `token` names on `tenant_id`, on every router: it no longer signs anyone
/// in, though it has not expired. A token that is not a live session of this tenant ends nothing.
pub(crate) async fn end_session(
    router: &RouterState,
    tenant_id: uuid::Uuid,
    token: &SecretString,
) -> Result<(), ApiError> {
    let Some(claims) = open_token(router, tenant_id, token) else {
        return Ok(());
    };
    let expires_at = expiry(claims.expires_at);
    match claims.session {
        Some(session) => {
            router
                .store()
                .end_session(tenant_id, session, expires_at)
                .await?
        }
        // A token from before sessions had ids: end its user's sessions up to now.
        None => {
            router
                .store()
                .end_user_sessions(tenant_id, claims.user_id, at_ms(unix_now_ms()), expires_at)
                .await?
        }
    }
    router.note_sessions_ended(tenant_id).await;
    Ok(())
}

/// Ends every session of `user_id` made until now (after a password reset), on every router.
pub(crate) async fn end_user_sessions(
    router: &RouterState,
    tenant_id: uuid::Uuid,
    user_id: i64,
) -> Result<(), ApiError> {
    let now = unix_now_ms();
    let expires_at = expiry(now / 1000 + SESSION_LIFETIME.as_secs());
    router
        .store()
        .end_user_sessions(tenant_id, user_id, at_ms(now), expires_at)
        .await?;
    router.note_sessions_ended(tenant_id).await;
    Ok(())
}

fn at_ms(unix_ms: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(i64::try_from(unix_ms).unwrap_or(i64::MAX))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

fn expiry(unix: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(i64::try_from(unix).unwrap_or(i64::MAX), 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}
