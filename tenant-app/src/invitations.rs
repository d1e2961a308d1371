//! User invitations. The owner invites an email with a role and gets a link to share (Silo sends
//! no email). The link's token is stateless: email, role and expiry sealed with the keyring under
//! `Purpose::TenantInvitation` and the tenant's id as associated data, so it can be neither read
//! nor altered, and opens on no other tenant. Accepting it creates the user; since emails are
//! unique in a workspace, a token works once.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use control_plane::signup::{MIN_PASSWORD_LENGTH, check_password_strength, is_plausible_email};
use control_plane::{Purpose, Sealed};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use web::{ApiError, ErrorCode};

use crate::TenantConnection;
use crate::auth::{Authed, Role, plan_limit_reached};
use crate::common::{Body, Fields, db_error};
use crate::users::{USER_COLUMNS, User, user};
use tenant_router::RouterState;

/// How long an invitation can be accepted.
const INVITATION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Marks a token as an invitation (and its format's version).
const TOKEN_TAG: &str = "inv1";

/// What an invitation token carries.
#[derive(Debug, Serialize, Deserialize)]
struct InvitationClaims {
    email: String,
    role: Role,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct NewInvitation {
    email: String,
    role: String,
}

#[derive(Debug, Serialize)]
pub struct Invitation {
    invitation_url: String,
    token: String,
    email: String,
    role: Role,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct Acceptance {
    token: SecretString,
    password: SecretString,
    display_name: Option<String>,
}

fn invalid_invitation(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidInvitation,
        format!("{why} Ask the workspace's owner for a new invitation link."),
    )
}

/// `inv1.<key id>.<nonce ‖ ciphertext ‖ tag>`, both parts base64url.
fn seal_invitation(
    router: &RouterState,
    tenant: uuid::Uuid,
    claims: &InvitationClaims,
) -> Result<String, ApiError> {
    let plaintext = SecretString::from(serde_json::to_string(claims).map_err(|error| {
        tracing::error!(%error, "cannot encode an invitation");
        ApiError::internal()
    })?);
    let sealed = router
        .keyring()
        .seal(Purpose::TenantInvitation, tenant, &plaintext);
    Ok(format!(
        "{TOKEN_TAG}.{}.{}",
        URL_SAFE_NO_PAD.encode(sealed.key_id.as_bytes()),
        URL_SAFE_NO_PAD.encode(&sealed.blob)
    ))
}

/// The claims of a token sealed for `tenant`; `None` if it is malformed, altered, or another
/// tenant's.
fn open_invitation(
    router: &RouterState,
    tenant: uuid::Uuid,
    token: &str,
) -> Option<InvitationClaims> {
    let mut parts = token.trim().splitn(3, '.');
    if parts.next()? != TOKEN_TAG {
        return None;
    }
    let key_id = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
    let blob = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    let plaintext = router
        .keyring()
        .open(Purpose::TenantInvitation, tenant, &Sealed { key_id, blob })
        .ok()?;
    serde_json::from_str(plaintext.expose_secret()).ok()
}

/// `POST /api/v1/users/invitations` (owner): a link that lets `email` join with `role`.
#[tracing::instrument(name = "invite_user", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn invite_user(
    State(router): State<RouterState>,
    headers: HeaderMap,
    authed: Authed,
    Body(new): Body<NewInvitation>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    authed.require(Role::Owner)?;
    let email = new.email.trim().to_owned();
    let role = Role::parse(&new.role);
    let mut fields = Fields::default();
    fields.check(
        is_plausible_email(&email),
        "email",
        "must be an email address",
    );
    fields.check(role.is_some(), "role", "must be owner, staff or read_only");
    fields.finish()?;
    let role = role.ok_or_else(ApiError::internal)?;
    let exists: bool = authed
        .client()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1))",
            &[&email],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if exists {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            "A user with this email already exists in this workspace (reactivate it instead).",
        ));
    }
    let limit = authed.connection.tenant.entitlements.plan.max_users;
    authed
        .check_limit("users", limit, "SELECT count(*) FROM users WHERE is_active")
        .await?;
    let expires_at = Utc::now()
        + chrono::Duration::from_std(INVITATION_LIFETIME).map_err(|_| ApiError::internal())?;
    let claims = InvitationClaims {
        email,
        role,
        expires_at,
    };
    let tenant = &authed.connection.tenant;
    let token = seal_invitation(&router, tenant.id, &claims)?;
    router
        .store()
        .audit(
            &authed.actor(),
            "user.invite",
            Some(tenant.id),
            serde_json::json!({"email": claims.email, "role": role, "expires_at": expires_at}),
        )
        .await?;
    // The Host the owner used already resolved to this tenant, so it is safe to link to. The
    // token goes in the fragment, which browsers never send to a server or in a Referer.
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(Invitation {
            invitation_url: format!("http://{host}/settings#invitation={token}"),
            token,
            email: claims.email,
            role,
            expires_at,
        }),
    ))
}

/// `POST /api/v1/invitations/accept` (no sign-in): creates the invited user with a password of
/// their own, within the plan's user limit.
#[tracing::instrument(name = "accept_invitation", skip_all, fields(tenant = %connection.tenant.slug))]
pub async fn accept_invitation(
    State(router): State<RouterState>,
    mut connection: TenantConnection,
    Body(acceptance): Body<Acceptance>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let tenant = connection.tenant.clone();
    let claims =
        open_invitation(&router, tenant.id, acceptance.token.expose_secret()).ok_or_else(|| {
            invalid_invitation(
                "This invitation is not valid for this workspace (altered, incomplete, or \
                 another workspace's).",
            )
        })?;
    if claims.expires_at <= Utc::now() {
        return Err(invalid_invitation("This invitation has expired."));
    }
    let mut fields = Fields::default();
    fields.optional_text("display_name", acceptance.display_name.as_deref(), 200);
    let password = acceptance.password.expose_secret();
    let length = password.chars().count();
    fields.check(
        (MIN_PASSWORD_LENGTH..=1024).contains(&length),
        "password",
        &format!("must be {MIN_PASSWORD_LENGTH} to 1024 characters"),
    );
    if (MIN_PASSWORD_LENGTH..=1024).contains(&length) {
        // The account's own names are easy guesses.
        let mut known: Vec<&str> = vec![tenant.slug.as_str(), claims.email.as_str()];
        known.extend(claims.email.split(['@', '.', '-', '_', '+']));
        known.extend(
            acceptance
                .display_name
                .as_deref()
                .unwrap_or_default()
                .split_whitespace(),
        );
        known.retain(|word| word.chars().count() >= 3);
        if let Err(hint) = check_password_strength(password, &known) {
            fields.check(
                false,
                "password",
                &format!(
                    "is too easy to guess{hint}; use a few uncommon words or more varied characters"
                ),
            );
        }
    }
    fields.finish()?;
    let hash = control_plane::passwords::hash_async(acceptance.password).await?;
    let display_name = acceptance
        .display_name
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    let transaction = connection.client.transaction().await.map_err(db_error)?;
    // Serialise joins so two acceptances cannot both take the last free place.
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('silo.users.limit'))",
            &[],
        )
        .await
        .map_err(db_error)?;
    if let Some(limit) = tenant.entitlements.plan.max_users {
        let count: i64 = transaction
            .query_one("SELECT count(*) FROM users WHERE is_active", &[])
            .await
            .map_err(db_error)?
            .get(0);
        if count >= i64::from(limit) {
            return Err(plan_limit_reached(
                &tenant.entitlements.plan.name,
                limit,
                "users",
                count,
            ));
        }
    }
    // A unique email: a second acceptance (or an existing user) is 409 `already_exists`.
    let row = transaction
        .query_one(
            &format!(
                "INSERT INTO users (email, display_name, password_hash, role) \
                 VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
            ),
            &[&claims.email, &display_name, &hash, &claims.role.as_str()],
        )
        .await
        .map_err(db_error)?;
    transaction.commit().await.map_err(db_error)?;
    let created = user(&row);
    if let Err(error) = router
        .store()
        .audit(
            &format!("tenant:{}:invitation", tenant.slug),
            "user.invitation_accepted",
            Some(tenant.id),
            serde_json::json!({"email": claims.email, "role": claims.role}),
        )
        .await
    {
        tracing::warn!(%error, "cannot audit an accepted invitation");
    }
    Ok((StatusCode::CREATED, Json(created)))
}
