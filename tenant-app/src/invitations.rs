//! User invitations. The owner invites an email with a role; the invitee gets the link by mail
//! (queued here, sent by the mail worker) and the owner sees it too, to share another way. It
//! opens `/join`, the page that accepts it. The link's token is sealed: email, role, expiry and
//! the invitation's record id under `Purpose::TenantInvitation` with the tenant's id as
//! associated data, so it can be neither read nor altered, and opens on no other tenant. The
//! record (in the control plane) lists it while pending, lets the owner revoke it, and counts
//! against the plan's limit of pending invitations; accepting it creates the user and uses the
//! record, so it works once.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use control_plane::mail::{Mail, MailJob, SealedLink};
use control_plane::signup::{MIN_PASSWORD_LENGTH, check_password_strength, is_plausible_email};
use control_plane::{Purpose, Sealed};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use web::{ApiError, ErrorCode};

use std::sync::Arc;

use crate::auth::{Authed, Role};
use crate::common::{Body, Fields, Id, Page, Paged, Params, db_error, not_found};
use crate::users::{USER_COLUMNS, User, make_room_for_an_active_user, user};
use crate::{ResolvedOnly, TenantConnection};
use control_plane::invitations::PendingInvitation;
use control_plane::limits::Counted;
use tenant_router::RouterState;
use tenant_router::seam::ResolvedTenant;

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
    /// The invitation's record. Tokens made before invitations were recorded have none; they
    /// stay valid until they expire (emails are unique, so they still work once).
    #[serde(default)]
    id: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct NewInvitation {
    pub email: String,
    pub role: String,
}

#[derive(Debug, Serialize)]
pub struct Invitation {
    pub id: i64,
    pub invitation_url: String,
    token: String,
    pub email: String,
    role: Role,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct Acceptance {
    pub token: SecretString,
    pub password: SecretString,
    pub display_name: Option<String>,
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
    let tenant = &authed.connection.tenant;
    let recorded = router
        .store()
        .create_invitation(
            tenant.id,
            &email,
            role.as_str(),
            expires_at,
            &authed.actor(),
            Counted::PendingInvitations.limit(&tenant.entitlements.plan),
        )
        .await?;
    let claims = InvitationClaims {
        email,
        role,
        expires_at,
        id: Some(recorded.id),
    };
    let token = seal_invitation(&router, tenant.id, &claims)?;
    // The Host the owner used already resolved to this tenant, so it is safe to link to. The
    // join page answers `Referrer-Policy: same-origin`, so the token reaches no other site. The
    // invitee gets the link by mail; the job holds it sealed to this tenant.
    let invitation_url = format!("{}/join?token={token}", crate::common::origin(&headers));
    let acceptance_link = SecretString::from(invitation_url.clone());
    let job = MailJob {
        tenant_id: tenant.id,
        to: claims.email.clone(),
        mail: Mail::Invitation {
            role: role.as_str().to_owned(),
            link: SealedLink::seal(router.keyring(), tenant.id, &acceptance_link),
        },
    };
    router.store().enqueue_mail(&job).await?;
    Ok((
        StatusCode::CREATED,
        Json(Invitation {
            invitation_url,
            id: recorded.id,
            token,
            email: claims.email,
            role,
            expires_at,
        }),
    ))
}

/// `POST /api/v1/invitations/accept` (no sign-in): creates the invited user with a password of
/// their own, within the plan's user limit.
#[tracing::instrument(name = "accept_invitation", skip_all, fields(tenant = %tenant.slug))]
pub async fn accept_invitation(
    State(router): State<RouterState>,
    ResolvedOnly(tenant): ResolvedOnly,
    Body(acceptance): Body<Acceptance>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let created = accept(&router, &tenant, acceptance).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// What the invitation `token` offers on this tenant: the invited email and role. Refused
/// (`invalid_invitation`) when altered, another tenant's, or expired.
pub(crate) fn invited(
    router: &RouterState,
    tenant: &ResolvedTenant,
    token: &str,
) -> Result<(String, Role), ApiError> {
    open_unexpired(router, tenant, token).map(|claims| (claims.email, claims.role))
}

/// The claims of `token` for this tenant, if it is intact and unexpired.
fn open_unexpired(
    router: &RouterState,
    tenant: &ResolvedTenant,
    token: &str,
) -> Result<InvitationClaims, ApiError> {
    let claims = open_invitation(router, tenant.id, token).ok_or_else(|| {
        invalid_invitation(
            "This invitation is not valid for this workspace (altered, incomplete, or \
             another workspace's).",
        )
    })?;
    if claims.expires_at <= Utc::now() {
        return Err(invalid_invitation("This invitation has expired."));
    }
    Ok(claims)
}

/// Why `password` will not do for the account `email` (named `display_name`) on `tenant_slug`:
/// its length, or how guessable it is, the account's own names being easy guesses.
pub(crate) fn new_password_problem(
    password: &str,
    tenant_slug: &str,
    email: &str,
    display_name: Option<&str>,
) -> Option<String> {
    let length = password.chars().count();
    if !(MIN_PASSWORD_LENGTH..=1024).contains(&length) {
        return Some(format!("must be {MIN_PASSWORD_LENGTH} to 1024 characters"));
    }
    let mut known: Vec<&str> = vec![tenant_slug, email];
    known.extend(email.split(['@', '.', '-', '_', '+']));
    known.extend(display_name.unwrap_or_default().split_whitespace());
    known.retain(|word| word.chars().count() >= 3);
    check_password_strength(password, &known).err().map(|hint| {
        format!("is too easy to guess{hint}; use a few uncommon words or more varied characters")
    })
}

/// Accepts an invitation: checks the token and the fields, hashes the password (holding no
/// tenant connection meanwhile), then creates the user within the plan's user limit. Shared by
/// the API and the acceptance page.
pub(crate) async fn accept(
    router: &RouterState,
    tenant: &Arc<ResolvedTenant>,
    acceptance: Acceptance,
) -> Result<User, ApiError> {
    let claims = open_unexpired(router, tenant, acceptance.token.expose_secret())?;
    let (email, role) = (claims.email.clone(), claims.role);
    let mut fields = Fields::default();
    fields.optional_text("display_name", acceptance.display_name.as_deref(), 200);
    if let Some(problem) = new_password_problem(
        acceptance.password.expose_secret(),
        &tenant.slug,
        &email,
        acceptance.display_name.as_deref(),
    ) {
        fields.check(false, "password", &problem);
    }
    fields.finish()?;
    let hash = control_plane::passwords::hash_async(acceptance.password).await?;
    let display_name = acceptance
        .display_name
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    let mut connection = TenantConnection::open(router, tenant.clone()).await?;
    let transaction = connection.client.transaction().await.map_err(db_error)?;
    make_room_for_an_active_user(&transaction, &tenant.entitlements.plan, None).await?;
    // A unique email: a second acceptance (or an existing user) is 409 `already_exists`.
    let row = transaction
        .query_one(
            &format!(
                "INSERT INTO users (email, display_name, password_hash, role) \
                 VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
            ),
            &[&email, &display_name, &hash, &role.as_str()],
        )
        .await
        .map_err(db_error)?;
    // Used up only with the user about to be committed; a revoked or used one creates nothing
    // (dropping the transaction rolls the user back).
    if let Some(id) = claims.id
        && !router.store().use_invitation(tenant.id, id).await?
    {
        return Err(invalid_invitation(
            "This invitation was revoked or has already been used.",
        ));
    }
    transaction.commit().await.map_err(db_error)?;
    let created = user(&row);
    if let Err(error) = router
        .store()
        .audit(
            &format!("tenant:{}:invitation", tenant.slug),
            "user.invitation_accepted",
            Some(tenant.id),
            serde_json::json!({"email": email, "role": role}),
        )
        .await
    {
        tracing::warn!(%error, "cannot audit an accepted invitation");
    }
    Ok(created)
}

/// `GET /api/v1/users/invitations?limit=&cursor=` (owner): pending invitations, oldest first.
#[tracing::instrument(name = "list_invitations", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn list_invitations(
    State(router): State<RouterState>,
    authed: Authed,
    Params(page): Params<Page>,
) -> Result<Json<Paged<PendingInvitation>>, ApiError> {
    pending_invitations(&router, &authed, &page).await.map(Json)
}

/// One page of the pending invitations (owner).
pub async fn pending_invitations(
    router: &RouterState,
    authed: &Authed,
    page: &Page,
) -> Result<Paged<PendingInvitation>, ApiError> {
    authed.require(Role::Owner)?;
    page.validate()?;
    let invitations = router
        .store()
        .pending_invitations_page(authed.connection.tenant.id, page.cursor, page.limit())
        .await?;
    Ok(Paged::new(invitations, page, |invitation| invitation.id))
}

/// `DELETE /api/v1/users/invitations/{id}` (owner): the link stops working at once.
#[tracing::instrument(name = "revoke_invitation", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn revoke_invitation(
    State(router): State<RouterState>,
    authed: Authed,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    authed.require(Role::Owner)?;
    match router
        .store()
        .revoke_invitation(authed.connection.tenant.id, id, &authed.actor())
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(control_plane::store::StoreError::NotFound) => Err(not_found("pending invitation")),
        Err(other) => Err(other.into()),
    }
}
