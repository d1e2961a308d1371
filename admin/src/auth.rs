//! Super-admin authentication: argon2id password plus a TOTP code (RFC 6238, 30 s steps, one step
//! of clock skew either way, each step accepted once), then a random session token sent as
//! `Authorization: Bearer` or in the `silo_admin` cookie (HttpOnly, SameSite=Strict).
//!
//! Invariants: a failed login says only `invalid_credentials`, whichever factor was wrong, and
//! costs the same argon2 work for unknown emails; tokens and TOTP secrets are never logged; the
//! database holds only SHA-256 hashes of tokens and sealed TOTP secrets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, extract::rejection::JsonRejection};
use control_plane::admins::AdminIdentity;
use control_plane::{Keyring, Purpose, Store};
use rand::distr::{Alphanumeric, SampleString as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;
use web::client::ClientAddr;
use web::{ApiError, ErrorCode};

use crate::AdminState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "silo_admin";
const TOTP_STEP_SECONDS: u64 = 30;

/// What `silo admin create` shows once: the TOTP secret for the admin's authenticator app.
pub struct Enrollment {
    pub admin_id: Uuid,
    /// Base32, for typing into an authenticator app.
    pub totp_secret: SecretString,
    /// `otpauth://totp/…`, for a QR code.
    pub otpauth_url: SecretString,
}

/// Why an admin could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateAdminError {
    #[error("`{0}` is not an email address like name@example.com")]
    InvalidEmail(String),
    #[error("the password must be at least 12 characters")]
    WeakPassword,
    #[error(transparent)]
    Store(#[from] control_plane::store::StoreError),
    #[error(transparent)]
    Busy(#[from] control_plane::passwords::Busy),
}

fn totp_for(secret: Vec<u8>, email: &str) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP_SECONDS,
        secret,
        Some("Silo".to_owned()),
        email.replace(':', "_"),
    )
    .ok()
}

/// Creates a super-admin with a fresh TOTP secret (sealed to the admin's id).
pub async fn create_admin(
    store: &Store,
    keyring: &Keyring,
    email: &str,
    password: SecretString,
) -> Result<Enrollment, CreateAdminError> {
    let email = email.trim().to_owned();
    if !control_plane::signup::is_plausible_email(&email) {
        return Err(CreateAdminError::InvalidEmail(email));
    }
    if password.expose_secret().chars().count() < 12 {
        return Err(CreateAdminError::WeakPassword);
    }
    let id = Uuid::new_v4();
    let secret_bytes = Secret::generate_secret()
        .to_bytes()
        .expect("a generated secret is raw bytes");
    let totp = totp_for(secret_bytes, &email).expect("a generated 160-bit secret is valid");
    let totp_secret = SecretString::from(totp.get_secret_base32());
    let sealed = keyring.seal(Purpose::AdminTotpSecret, id, &totp_secret);
    let hash = control_plane::passwords::hash_async(password).await?;
    store.create_admin(id, &email, &hash, &sealed).await?;
    Ok(Enrollment {
        admin_id: id,
        otpauth_url: SecretString::from(totp.get_url()),
        totp_secret,
    })
}

/// The current TOTP code for a base32 secret (for tests and for scripted enrolment checks).
pub fn current_code(secret_base32: &SecretString) -> Option<String> {
    let bytes = Secret::Encoded(secret_base32.expose_secret().to_owned())
        .to_bytes()
        .ok()?;
    Some(totp_for(bytes, "x")?.generate(unix_now()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The TOTP step `code` matches (now, or one step either side), if any.
fn matching_step(totp: &TOTP, code: &str) -> Option<i64> {
    let now_step = unix_now() / TOTP_STEP_SECONDS;
    [now_step.saturating_sub(1), now_step, now_step + 1]
        .into_iter()
        .find(|step| {
            let expected = totp.generate(step * TOTP_STEP_SECONDS);
            constant_time_equal(expected.as_bytes(), code.as_bytes())
        })
        .and_then(|step| i64::try_from(step).ok())
}

fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: SecretString,
    pub totp_code: String,
}

#[derive(Debug, Serialize)]
pub struct LoginAnswer {
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "The email, password or authenticator code is wrong. Check all three and try again.",
    )
}

/// Checks email, password and TOTP code; on success opens a session and returns its token.
pub async fn login(
    state: &AdminState,
    client: std::net::IpAddr,
    request: LoginRequest,
) -> Result<LoginAnswer, ApiError> {
    if let Err(wait) = state.login_limiter.check(&client) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("Too many login attempts. Try again in {wait} seconds."),
        )
        .retry_after(wait));
    }
    let admin = state.store.admin_by_email(request.email.trim()).await?;
    // Unknown emails cost the same argon2 work as known ones, so timing reveals nothing.
    let phc = admin.as_ref().map(|admin| admin.password_hash.clone());
    let password_ok = control_plane::passwords::verify_async(request.password, phc).await?;
    let Some(admin) = admin.filter(|_| password_ok) else {
        return Err(invalid_credentials());
    };
    let secret = state
        .keyring
        .open(
            Purpose::AdminTotpSecret,
            admin.id,
            &admin.sealed_totp_secret,
        )
        .map_err(|error| {
            tracing::error!(admin = %admin.id, %error, "cannot open an admin's TOTP secret");
            ApiError::internal()
        })?;
    let totp = Secret::Encoded(secret.expose_secret().to_owned())
        .to_bytes()
        .ok()
        .and_then(|bytes| totp_for(bytes, &admin.email))
        .ok_or_else(ApiError::internal)?;
    let code: String = request
        .totp_code
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let Some(step) = matching_step(&totp, &code) else {
        return Err(invalid_credentials());
    };
    if !state.store.use_totp_step(admin.id, step).await? {
        // The code was right but already used: a replay.
        return Err(invalid_credentials());
    }
    let token = format!(
        "silo_admin_{}",
        Alphanumeric.sample_string(&mut rand::rng(), 43)
    );
    let expires_at = state
        .store
        .create_admin_session(&token_hash(&token), admin.id, state.session_lifetime)
        .await?;
    state
        .store
        .audit(
            &actor(&admin.email),
            "admin.login",
            None,
            serde_json::json!({"client": client.to_string()}),
        )
        .await?;
    Ok(LoginAnswer { token, expires_at })
}

/// `POST /api/v1/admin/sessions`: the JSON login. Answers the token and also sets the cookie.
pub async fn create_session(
    State(state): State<AdminState>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "Send JSON {{\"email\", \"password\", \"totp_code\"}}: {}",
                rejection.body_text()
            ),
        )
    })?;
    let answer = login(&state, client, request).await?;
    let cookie = session_cookie(&answer.token, state.session_lifetime);
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(answer),
    )
        .into_response())
}

/// `DELETE /api/v1/admin/sessions/current`: logs out.
pub async fn delete_session(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = presented_token(&headers) {
        state
            .store
            .delete_admin_session(&token_hash(&token))
            .await?;
    }
    let expired =
        HeaderValue::from_static("silo_admin=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response())
}

pub fn session_cookie(token: &str, lifetime: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        lifetime.as_secs()
    ))
    .expect("a token is visible ASCII")
}

/// The bearer token, else the session cookie.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned());
    bearer.or_else(|| web::headers::cookie(headers, SESSION_COOKIE).map(str::to_owned))
}

/// The audit log's name for an admin.
pub fn actor(email: &str) -> String {
    format!("admin:{email}")
}

/// A request made by a logged-in super-admin. Handlers that take it are admin-only.
#[derive(Debug, Clone)]
pub struct Admin(pub AdminIdentity);

impl Admin {
    pub fn actor(&self) -> String {
        actor(&self.0.email)
    }
}

impl<S> FromRequestParts<S> for Admin
where
    AdminState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AdminState::from_ref(state);
        let unauthenticated = || {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "Log in first: POST /api/v1/admin/sessions, then send Authorization: Bearer <token>.",
            )
        };
        let token = presented_token(&parts.headers).ok_or_else(unauthenticated)?;
        let identity = state
            .store
            .admin_session(&token_hash(&token))
            .await?
            .ok_or_else(unauthenticated)?;
        Ok(Admin(identity))
    }
}
