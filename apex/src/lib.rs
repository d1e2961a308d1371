//! The apex HTTP surface: the signup form, the signup API, its status endpoint, `/healthz`, the
//! Stripe webhook, and API key validation for other services.
//! Handlers are thin: extract, one call into the store, map the result.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use control_plane::model::{SignupAccepted, SignupRequest, SignupStatus, TenantStatus};
use control_plane::one_time_links::{self, LinkPurpose};
use control_plane::store::{Store, StoreError};
use control_plane::tenants::NewTenant;
use control_plane::{passwords, signup};
use secrecy::{ExposeSecret as _, SecretString};
use web::client::ClientAddr;
use web::{ApiError, ClientRateLimiter, ErrorCode, json_rejection};

mod stripe_webhook;

/// What apex handlers share.
#[derive(Debug, Clone)]
pub struct ApexState {
    pub store: Store,
    pub base_domain: Arc<str>,
    pub signup_limiter: Arc<ClientRateLimiter>,
    pub billing: Arc<control_plane::settings::BillingSettings>,
    pub lifecycle: control_plane::subscriptions::Lifecycle,
}

/// The apex router. Mounted by the `silo` binary for requests whose Host is the base domain.
pub fn router(state: ApexState) -> Router {
    Router::new()
        .route("/", get(signup_page))
        .route("/healthz", get(healthz))
        .route("/api/v1/signups", post(create_signup))
        .route("/api/v1/signups/{tenant_id}", get(signup_status))
        .route("/api/v1/webhooks/stripe", post(stripe_webhook::webhook))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            web::headers::PagePolicy::new(&[signup_page_script()], &[], false),
            web::headers::page_policy,
        ))
}

/// The signup page's one inline script, exactly as the browser hashes it.
fn signup_page_script() -> &'static str {
    SIGNUP_PAGE
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(script, _)| script)
}

const SIGNUP_PAGE: &str = include_str!("signup.html");

async fn signup_page() -> Html<&'static str> {
    Html(SIGNUP_PAGE)
}

async fn healthz(State(state): State<ApexState>) -> Response {
    if state.store.ping().await {
        (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response()
    } else {
        ApiError::unavailable().into_response()
    }
}

#[tracing::instrument(name = "create_signup", skip_all, fields(tenant = tracing::field::Empty))]
async fn create_signup(
    State(state): State<ApexState>,
    client: Option<ClientAddr>,
    body: Result<Json<SignupRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SignupAccepted>), ApiError> {
    if let Some(ClientAddr(address)) = client {
        state.signup_limiter.check(&address).map_err(|seconds| {
            ApiError::new(
                ErrorCode::RateLimited,
                format!("Too many signups from your address. Try again in {seconds} seconds."),
            )
            .retry_after(seconds)
        })?;
    }
    let Json(request) = body.map_err(json_rejection)?;
    // Every field's problem at once (the form shows each beside its field); the answer's code
    // is the first problem's, as it always was.
    let valid = signup::validate_all(&request).map_err(|problems| {
        let fields = problems
            .iter()
            .map(|problem| (problem.field().to_owned(), problem.to_string()))
            .collect();
        let mut error = ApiError::from(problems[0].clone());
        error.fields = Some(fields);
        error
    })?;
    tracing::Span::current().record("tenant", valid.subdomain.as_str());
    // Fail fast on a taken subdomain before spending time on the password hash.
    if state
        .store
        .tenant_by_slug(&valid.subdomain)
        .await?
        .is_some()
    {
        return Err(StoreError::SubdomainTaken.into());
    }
    // A full fleet is refused now, with nothing stored, rather than failing later.
    if !state.store.has_capacity().await? {
        return Err(ApiError::new(
                ErrorCode::NoCapacity,
            "We cannot take new workspaces right now because every database server is full. Please try again later.",
        )
        .retry_after(300));
    }
    let password_hash = passwords::hash_async(request.admin_password).await?;
    let tenant_id = state
        .store
        .create_tenant_and_enqueue(NewTenant {
            slug: &valid.subdomain,
            display_name: &valid.company_name,
            admin_email: &valid.admin_email,
            admin_password_hash: &password_hash,
            trial: state.lifecycle.trial,
        })
        .await?;
    tracing::info!(%tenant_id, "signup accepted; provisioning enqueued");
    // The landing key lets this browser, and only it, fetch sign-in links while it waits. A
    // failure to make one costs the owner a sign-in by hand, never the signup.
    let status_url = match state
        .store
        .create_link(
            LinkPurpose::SignupLanding,
            tenant_id,
            &valid.admin_email,
            one_time_links::SIGNUP_LANDING_LIFETIME,
        )
        .await
    {
        Ok(key) => format!("/api/v1/signups/{tenant_id}?key={}", key.expose_secret()),
        Err(error) => {
            tracing::warn!(%tenant_id, %error, "no landing key for the signup");
            format!("/api/v1/signups/{tenant_id}")
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(SignupAccepted {
            tenant_id,
            subdomain: valid.subdomain,
            status: TenantStatus::Provisioning,
            status_url,
        }),
    ))
}

/// `?key=`: the signup's landing key, from the status URL the signup answered.
#[derive(Debug, serde::Deserialize)]
struct StatusQuery {
    key: Option<SecretString>,
}

#[tracing::instrument(name = "signup_status", skip_all, fields(%tenant_id))]
async fn signup_status(
    State(state): State<ApexState>,
    headers: HeaderMap,
    Path(tenant_id): Path<Uuid>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SignupStatus>, ApiError> {
    let tenant = state
        .store
        .tenant(tenant_id)
        .await
        .map_err(|error| match error {
            StoreError::NotFound => ApiError::new(
                ErrorCode::SignupNotFound,
                "No signup has that id. Check the status URL you were given; a signup whose setup \
                 failed is removed when our team cleans up, and its subdomain is then free to \
                 sign up again.",
            ),
            other => other.into(),
        })?;
    let port = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.rsplit_once(':'))
        .map(|(_, port)| format!(":{port}"))
        .unwrap_or_default();
    let tenant_url = (tenant.status == TenantStatus::Active)
        .then(|| format!("http://{}.{}{port}/", tenant.slug, state.base_domain));
    let key = query.ok().and_then(|Query(query)| query.key);
    let sign_in_url = match (&tenant_url, key) {
        (Some(tenant_url), Some(key)) => sign_in_link(&state.store, tenant.id, &key)
            .await?
            .map(|token| format!("{tenant_url}sign-in/link?token={}", token.expose_secret())),
        _ => None,
    };
    Ok(Json(SignupStatus {
        tenant_id: tenant.id,
        subdomain: tenant.slug,
        status: tenant.status,
        step: tenant.provisioning_step,
        reason: tenant.failure_reason,
        schema_version: tenant.schema_version,
        tenant_url,
        sign_in_url,
    }))
}

/// A one-time sign-in link's token for the owner of a live landing key of this tenant.
async fn sign_in_link(
    store: &Store,
    tenant_id: Uuid,
    key: &SecretString,
) -> Result<Option<SecretString>, ApiError> {
    let Some(email) = store
        .peek_link(LinkPurpose::SignupLanding, tenant_id, key)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(
        store
            .create_link(
                LinkPurpose::SignIn,
                tenant_id,
                &email,
                one_time_links::SIGN_IN_LINK_LIFETIME,
            )
            .await?,
    ))
}

/// Key validations one client address may ask for per minute (other services should cache the
/// answer briefly rather than ask on every request).
pub const API_KEY_VALIDATIONS_PER_CLIENT_PER_MINUTE: u32 = 600;

/// What the API key validation endpoint needs.
#[derive(Debug, Clone)]
pub struct ApiKeyValidationState {
    pub store: Store,
    pub limiter: Arc<ClientRateLimiter>,
}

/// `POST /api/v1/api-keys/validate`, for other services, on the apex. Mounted beside
/// [`router`] by the `silo` binary.
pub fn api_key_validation_router(state: ApiKeyValidationState) -> Router {
    Router::new()
        .route("/api/v1/api-keys/validate", post(validate_api_key))
        .with_state(state)
}

#[derive(Debug, serde::Deserialize)]
struct ValidateRequest {
    key: secrecy::SecretString,
}

#[tracing::instrument(name = "validate_api_key", skip_all)]
async fn validate_api_key(
    State(state): State<ApiKeyValidationState>,
    client: Option<ClientAddr>,
    body: Result<Json<ValidateRequest>, JsonRejection>,
) -> Result<Json<control_plane::api_keys::ValidKey>, ApiError> {
    if let Some(ClientAddr(address)) = client {
        state.limiter.check(&address).map_err(|seconds| {
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "Too many key validations from your address. Cache answers briefly; try again in {seconds} seconds."
                ),
            )
            .retry_after(seconds)
        })?;
    }
    let Json(request) = body.map_err(json_rejection)?;
    match state.store.validate_api_key(&request.key).await? {
        Some(valid) => Ok(Json(valid)),
        None => Err(ApiError::new(
            ErrorCode::InvalidApiKey,
            "The API key is not valid: it is unknown, revoked, or its workspace cannot use API keys now.",
        )),
    }
}
