//! Tenant app sign-in: email + password (argon2id, checked against the tenant's own `users`
//! table) → a session token sealed to the tenant (XChaCha20-Poly1305, associated data = the
//! tenant's id), so a token minted on one tenant's host opens on no other. Every request with a
//! token re-reads the user, so a deactivated user or a changed role takes effect at once.
//!
//! `Authorization: Bearer silo_…` is an API key instead: it acts with its own role (never
//! owner), only on its own tenant's host, and only while the tenant has the `api_access`
//! module (checked on every request, so a downgrade stops keys at once).

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use control_plane::api_keys::{API_ACCESS_MODULE, PresentedKey};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use web::client::ClientAddr;
use web::{ApiError, ErrorCode};

use crate::common::{Body, Fields};
use crate::sessions::{end_session, live_session, new_session, unix_now};
use crate::{ResolvedOnly, TenantConnection};
use tenant_router::RouterState;
use tenant_router::seam::{Budget, ResolvedTenant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    ReadOnly,
    Staff,
    Owner,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(Self::Owner),
            "staff" => Some(Self::Staff),
            "read_only" => Some(Self::ReadOnly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Staff => "staff",
            Self::ReadOnly => "read_only",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionUser {
    pub id: i64,
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
}

/// An API key of this tenant, as the caller of a request.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCaller {
    pub api_key_id: uuid::Uuid,
    pub api_key_name: String,
    pub role: Role,
}

/// Who makes a request: a signed-in user or an API key.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Caller {
    User(SessionUser),
    ApiKey(KeyCaller),
}

/// An authenticated caller of this tenant and a connection to the tenant's database.
pub struct Authed {
    pub connection: TenantConnection,
    pub caller: Caller,
    router: RouterState,
}

/// 403 `module_not_enabled`, naming the module and the plans that include it.
async fn module_not_enabled(router: &RouterState, module: &str) -> ApiError {
    let plans: Vec<String> = router
        .store()
        .plans()
        .await
        .map(|plans| {
            plans
                .into_iter()
                .filter(|plan| plan.modules.iter().any(|m| m == module))
                .map(|plan| plan.name)
                .collect()
        })
        .unwrap_or_default();
    ApiError::new(
        ErrorCode::ModuleNotEnabled,
        format!(
            "The `{module}` module is not part of this workspace's plan. It is included in: {}.",
            if plans.is_empty() {
                "no plan (ask support for an add-on)".to_owned()
            } else {
                plans.join(", ")
            }
        ),
    )
}

impl Authed {
    /// Refuses the request unless the tenant's plan or add-ons include `module`: 403
    /// `module_not_enabled`, naming the module and the plans that include it.
    pub async fn require_module(&self, module: &str) -> Result<(), ApiError> {
        if self.connection.tenant.entitlements.has(module) {
            return Ok(());
        }
        Err(module_not_enabled(&self.router, module).await)
    }

    /// The caller's role (an API key's own role; never owner for a key).
    pub fn role(&self) -> Role {
        match &self.caller {
            Caller::User(user) => user.role,
            Caller::ApiKey(key) => key.role,
        }
    }

    /// The signed-in user's id; `None` for an API key, so rows it writes name no user.
    pub fn user_id(&self) -> Option<i64> {
        match &self.caller {
            Caller::User(user) => Some(user.id),
            Caller::ApiKey(_) => None,
        }
    }

    /// Who did it, for the control plane's audit log.
    pub fn actor(&self) -> String {
        let slug = &self.connection.tenant.slug;
        match &self.caller {
            Caller::User(user) => format!("tenant:{slug}:user:{}", user.id),
            Caller::ApiKey(key) => format!("tenant:{slug}:api_key:{}", key.api_key_id),
        }
    }

    /// Refuses adding one more `what` when the plan's limit is reached: 403
    /// `plan_limit_reached` with the limit. `count_sql` counts what exists now.
    pub async fn check_limit(
        &self,
        what: &str,
        limit: Option<i32>,
        count_sql: &str,
    ) -> Result<(), ApiError> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let count: i64 = self
            .client()
            .query_one(count_sql, &[])
            .await
            .map_err(crate::common::db_error)?
            .get(0);
        if count < i64::from(limit) {
            return Ok(());
        }
        let plan = &self.connection.tenant.entitlements.plan.name;
        Err(plan_limit_reached(plan, limit, what, count))
    }

    /// Refuses the request unless the user's role is at least `least`.
    pub fn require(&self, least: Role) -> Result<(), ApiError> {
        if self.role() >= least {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientRole,
                format!(
                    "This needs the {} role or higher; you are {}.",
                    least.as_str(),
                    self.role().as_str()
                ),
            ))
        }
    }

    /// A transaction on the request's own tenant connection.
    pub async fn transaction(
        &mut self,
    ) -> Result<tenant_router::seam::TenantTransaction<'_>, ApiError> {
        self.connection
            .client
            .transaction()
            .await
            .map_err(crate::common::db_error)
    }

    pub fn client(&self) -> &tokio_postgres::Client {
        &self.connection.client
    }
}

/// 403 `plan_limit_reached`: the `plan` allows `limit` of `what` and `count` exist.
pub(super) fn plan_limit_reached(plan: &str, limit: i32, what: &str, count: i64) -> ApiError {
    ApiError::new(
        ErrorCode::PlanLimitReached,
        format!(
            "The {plan} plan allows {limit} {what}; this workspace has {count}. Upgrade to add more."
        ),
    )
}

pub(crate) fn unauthenticated() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "Sign in first and send the token as `Authorization: Bearer <token>`.",
    )
}

impl<S> FromRequestParts<S> for Authed
where
    RouterState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|token| SecretString::from(token.trim().to_owned()));
        let Some(token) = token else {
            // No credential: an anonymous request, counted as one, then refused.
            ResolvedOnly::from_request_parts(parts, state).await?;
            return Err(unauthenticated());
        };
        // The credentials are checked before a tenant connection is taken, so a request with a
        // forged or stale token never holds one.
        let (tenant, client) = ResolvedOnly::for_credential(parts, state).await?;
        let router = RouterState::from_ref(state);
        if token
            .expose_secret()
            .starts_with(control_plane::api_keys::KEY_PREFIX)
        {
            let checked = api_key_caller(&router, &tenant, &token).await;
            let caller = charged(&router, &tenant, client, checked)?;
            return Ok(Self {
                connection: TenantConnection::open(&router, tenant).await?,
                caller: Caller::ApiKey(caller),
                router,
            });
        }
        let (connection, user) = session(&router, tenant, client, &token).await?;
        Ok(Self {
            connection,
            caller: Caller::User(user),
            router,
        })
    }
}

/// A credential's check, charged to its budget (see `tenant_router::limits`): verified, to the
/// tenant's authenticated budget; refused (401), to the client's anonymous budget (429 once
/// that is spent), so a bogus credential never spends signed-in users' requests.
fn charged<T>(
    router: &RouterState,
    tenant: &ResolvedTenant,
    client: Option<std::net::IpAddr>,
    checked: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match checked {
        Ok(value) => {
            router.check_rate(tenant, Budget::Authenticated, client)?;
            Ok(value)
        }
        Err(error) if error.code == ErrorCode::Unauthenticated => {
            Err(router.credential_refused(tenant, client, error))
        }
        Err(error) => Err(error),
    }
}

impl Authed {
    /// The signed-in user of a session token (a browser's cookie): 401 `unauthenticated` when
    /// the token is not a live session of this tenant's active user. API keys are not sessions.
    pub async fn from_session_token<S>(
        parts: &mut Parts,
        state: &S,
        token: &SecretString,
    ) -> Result<Self, ApiError>
    where
        RouterState: FromRef<S>,
        S: Send + Sync,
    {
        let (tenant, client) = ResolvedOnly::for_credential(parts, state).await?;
        let router = RouterState::from_ref(state);
        let (connection, user) = session(&router, tenant, client, token).await?;
        Ok(Self {
            connection,
            caller: Caller::User(user),
            router,
        })
    }
}

/// The active user a session token of this tenant names, and a connection to the tenant's
/// database. The token is opened first (no database needed), so a forged or stale one never
/// holds a connection.
async fn session(
    router: &RouterState,
    tenant: Arc<ResolvedTenant>,
    client: Option<std::net::IpAddr>,
    token: &SecretString,
) -> Result<(TenantConnection, SessionUser), ApiError> {
    let user_id = live_session(router, tenant.id, token).ok_or_else(unauthenticated);
    let user_id = charged(router, &tenant, client, user_id)?;
    let connection = TenantConnection::open(router, tenant).await?;
    let row = connection
        .client
        .query_opt(
            "SELECT id, email, display_name, role FROM users WHERE id = $1 AND is_active",
            &[&user_id],
        )
        .await
        .map_err(crate::common::db_error)?
        .ok_or_else(unauthenticated)?;
    let user = session_user(&row).ok_or_else(ApiError::internal)?;
    Ok((connection, user))
}

/// The active user with this email (any case), if any.
pub(crate) async fn active_user_by_email(
    connection: &TenantConnection,
    email: &str,
) -> Result<Option<SessionUser>, ApiError> {
    active_user(connection, "lower(email) = lower($1)", &email.trim()).await
}

/// The active user with this id, if any.
pub(crate) async fn active_user_by_id(
    connection: &TenantConnection,
    user_id: i64,
) -> Result<Option<SessionUser>, ApiError> {
    active_user(connection, "id = $1", &user_id).await
}

/// The active user matching `condition` (one of this module's constants) on `value`.
async fn active_user(
    connection: &TenantConnection,
    condition: &str,
    value: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<SessionUser>, ApiError> {
    let row = connection
        .client
        .query_opt(
            &format!(
                "SELECT id, email, display_name, role FROM users WHERE {condition} AND is_active"
            ),
            &[value],
        )
        .await
        .map_err(crate::common::db_error)?;
    row.as_ref()
        .map(|row| session_user(row).ok_or_else(ApiError::internal))
        .transpose()
}

fn invalid_api_key() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        "The API key is not valid for this workspace (unknown, revoked, or another workspace's). \
         Send a key of this workspace as `Authorization: Bearer silo_…`.",
    )
}

/// Authenticates an API key of this tenant: its secret matches, it is not revoked, it belongs
/// to the tenant whose host this is (else 401), and the tenant has the `api_access` module now
/// (else 403 `module_not_enabled`).
async fn api_key_caller(
    router: &RouterState,
    tenant: &tenant_router::seam::ResolvedTenant,
    token: &SecretString,
) -> Result<KeyCaller, ApiError> {
    let presented = PresentedKey::parse(token.expose_secret()).ok_or_else(invalid_api_key)?;
    let stored = router
        .api_key(&presented.prefix)
        .await?
        .filter(|stored| stored.accepts(&presented))
        .filter(|stored| stored.key.tenant_id == tenant.id)
        .ok_or_else(invalid_api_key)?;
    let role = Role::parse(&stored.key.role)
        .filter(|role| *role < Role::Owner)
        .ok_or_else(ApiError::internal)?;
    if !tenant.entitlements.has(API_ACCESS_MODULE) {
        return Err(module_not_enabled(router, API_ACCESS_MODULE).await);
    }
    router.note_api_key_used(stored.key.id).await;
    Ok(KeyCaller {
        api_key_id: stored.key.id,
        api_key_name: stored.key.name.clone(),
        role,
    })
}

fn session_user(row: &tokio_postgres::Row) -> Option<SessionUser> {
    Some(SessionUser {
        id: row.get("id"),
        email: row.get("email"),
        display_name: row.get("display_name"),
        role: Role::parse(row.get("role"))?,
    })
}

/// Checks a sign-in (the client address's rate, the fields, the password) and answers the
/// user, noting the sign-in; the same refusals for the API and the sign-in page.
pub(crate) async fn check_sign_in(
    router: &RouterState,
    client: Option<std::net::IpAddr>,
    tenant: &Arc<ResolvedTenant>,
    email: &str,
    password: SecretString,
) -> Result<SessionUser, ApiError> {
    if let Some(address) = client {
        router
            .check_login_rate(tenant.id, address)
            .map_err(|seconds| {
                ApiError::new(
                    ErrorCode::RateLimited,
                    "Too many sign-in attempts from this address. Wait a minute and try again.",
                )
                .retry_after(seconds)
            })?;
    }
    let mut fields = Fields::default();
    fields.text("email", email, 320);
    fields.text("password", password.expose_secret(), 1024);
    fields.finish()?;
    // The connection is taken only for the lookup and again for the update, never while the
    // password is checked (which may wait for a hashing slot).
    let connection = TenantConnection::open(router, tenant.clone()).await?;
    let row = connection
        .client
        .query_opt(
            "SELECT id, email, display_name, role, password_hash FROM users \
             WHERE lower(email) = lower($1) AND is_active",
            &[&email.trim()],
        )
        .await
        .map_err(crate::common::db_error)?;
    drop(connection);
    let hash = row
        .as_ref()
        .map(|row| row.get::<_, String>("password_hash"));
    let verified = control_plane::passwords::verify_async(password, hash).await?;
    let (Some(row), true) = (row, verified) else {
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "The email or password is wrong.",
        ));
    };
    let user = session_user(&row).ok_or_else(ApiError::internal)?;
    let connection = TenantConnection::open(router, tenant.clone()).await?;
    connection
        .client
        .execute(
            "UPDATE users SET last_login_at = now() WHERE id = $1",
            &[&user.id],
        )
        .await
        .map_err(crate::common::db_error)?;
    Ok(user)
}

/// `GET /api/v1/me`: who the token belongs to (a user, or an API key's id, name and role).
pub async fn me(authed: Authed) -> Json<Caller> {
    Json(authed.caller)
}

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    email: String,
    password: SecretString,
}

#[derive(Debug, Serialize)]
pub struct LoginAnswer {
    token: String,
    expires_at: u64,
    user: SessionUser,
}

/// `POST /api/v1/sessions`: sign in with the tenant user's email and password.
pub async fn login(
    State(router): State<RouterState>,
    client: Option<ClientAddr>,
    ResolvedOnly(tenant): ResolvedOnly,
    Body(request): Body<LoginRequest>,
) -> Result<(StatusCode, Json<LoginAnswer>), ApiError> {
    let client = client.map(|ClientAddr(address)| address);
    let user = check_sign_in(&router, client, &tenant, &request.email, request.password).await?;
    let (token, lifetime) = new_session(&router, tenant.id, user.id);
    Ok((
        StatusCode::CREATED,
        Json(LoginAnswer {
            token,
            expires_at: unix_now() + lifetime,
            user,
        }),
    ))
}

/// `DELETE /api/v1/sessions/current`: signs out — ends the session whose token authenticates
/// this request, on every router. An API key is not a session (revoke it instead): 422.
pub async fn logout(
    State(router): State<RouterState>,
    authed: Authed,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode, ApiError> {
    if !matches!(authed.caller, Caller::User(_)) {
        return Err(ApiError::new(
            ErrorCode::ValidationFailed,
            "An API key is not a session: revoke the key to stop it working.",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| SecretString::from(token.trim().to_owned()))
        .ok_or_else(unauthenticated)?;
    let tenant_id = authed.connection.tenant.id;
    drop(authed);
    end_session(&router, tenant_id, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
