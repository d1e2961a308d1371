//! The tenant app's HTTP API (the sample back office). Every handler gets its tenant through the
//! [`TenantConnection`] extractor (or [`auth::Authed`], which adds the signed-in user), so none
//! can reach another tenant's database.

pub mod api_keys;
pub mod auth;
pub mod billing;
pub mod branding;
pub mod catalog;
pub mod common;
pub mod domains;
pub mod integrations;
pub mod invitations;
pub mod settings;
pub mod trade;
pub mod users;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use control_plane::ApiError;
use control_plane::model::TenantHealth;

use crate::budget::TenantClient;
use crate::host::{CustomDomain, TenantSlug};
use crate::resolve::{ResolvedTenant, RouterState};

/// The tenant router. The `silo` binary sends it requests whose Host named a tenant, with the
/// [`TenantSlug`] in the request's extensions.
pub fn router(state: RouterState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/sessions", post(auth::login))
        // The contract's name for the same sign-in.
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/plan", get(users::plan))
        .route("/api/v1/usage", get(users::usage))
        .route("/api/v1/billing", get(billing::show))
        .route("/api/v1/billing/checkout", post(billing::checkout))
        .route(
            "/api/v1/users",
            get(users::list_users).post(users::create_user),
        )
        .route(
            "/api/v1/users/{id}",
            axum::routing::patch(users::update_user).delete(users::remove_user),
        )
        .route("/api/v1/users/invitations", post(invitations::invite_user))
        .route(
            "/api/v1/invitations/accept",
            post(invitations::accept_invitation),
        )
        .route(
            "/api/v1/branding",
            get(branding::get_branding).put(branding::put_branding),
        )
        .route("/settings", get(settings::page))
        .route("/settings.js", get(settings::script))
        .route(
            "/api/v1/branches",
            get(catalog::list_branches).post(catalog::create_branch),
        )
        .route(
            "/api/v1/branches/{id}",
            get(catalog::get_branch).patch(catalog::update_branch),
        )
        .route(
            "/api/v1/suppliers",
            get(catalog::list_suppliers).post(catalog::create_supplier),
        )
        .route(
            "/api/v1/suppliers/{id}",
            get(catalog::get_supplier).patch(catalog::update_supplier),
        )
        .route(
            "/api/v1/items",
            get(catalog::list_items).post(catalog::create_item),
        )
        .route(
            "/api/v1/items/{id}",
            get(catalog::get_item)
                .patch(catalog::update_item)
                .delete(catalog::deactivate_item),
        )
        .route("/api/v1/stock", get(trade::stock_levels))
        .route("/api/v1/purchases", post(trade::create_purchase))
        .route("/api/v1/purchases/{id}", get(trade::get_purchase))
        .route(
            "/api/v1/sales",
            get(trade::list_sales).post(trade::create_sale),
        )
        .route("/api/v1/sales/{id}", get(trade::get_sale))
        .route("/api/v1/stock-takes", post(trade::start_stock_take))
        .route("/api/v1/stock-takes/{id}", get(trade::get_stock_take))
        .route("/api/v1/stock-takes/{id}/counts", put(trade::record_count))
        .route(
            "/api/v1/stock-takes/{id}/complete",
            post(trade::complete_stock_take),
        )
        .route("/api/v1/reports/sales", get(trade::sales_report))
        .route(
            "/api/v1/domains",
            get(domains::list_domains).post(domains::add_domain),
        )
        .route(
            "/api/v1/domains/{domain}",
            axum::routing::delete(domains::remove_domain),
        )
        .route(
            "/api/v1/api-keys",
            get(api_keys::list_api_keys).post(api_keys::create_api_key),
        )
        .route(
            "/api/v1/api-keys/{id}",
            axum::routing::delete(api_keys::revoke_api_key),
        )
        .route(
            "/api/v1/api-keys/{id}/regenerate",
            post(api_keys::regenerate_api_key),
        )
        .route("/api/v1/integrations", get(integrations::list_integrations))
        .route(
            "/api/v1/integrations/{name}",
            put(integrations::put_integration).delete(integrations::remove_integration),
        )
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "route_not_found",
                "There is no such endpoint. See /api/openapi.json on the main site.",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            resolve_tenant,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::record_request,
        ))
        .with_state(state)
}

/// The tenant a request is for, resolved once by [`resolve_tenant`].
#[derive(Clone)]
struct Resolved(Arc<ResolvedTenant>);

/// Middleware: resolves the request's tenant (refusing unknown, suspended or cancelled ones
/// before any handler runs) and tells clients of a billing problem in a
/// `Silo-Billing-Warning` header: `past_due; suspends-at=<RFC 3339>` or
/// `cancelling; access-ends=<RFC 3339>`.
async fn resolve_tenant(
    axum::extract::State(state): axum::extract::State<RouterState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let resolved = if let Some(slug) = request.extensions().get::<TenantSlug>() {
        state.resolve(&slug.0).await
    } else if let Some(domain) = request.extensions().get::<CustomDomain>() {
        state.resolve_domain(&domain.0).await
    } else {
        Err(ApiError::tenant_not_found())
    };
    let tenant = match resolved {
        Ok(tenant) => tenant,
        Err(error) => return error.into_response(),
    };
    tenant
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let warning = billing_warning(&tenant);
    request.extensions_mut().insert(Resolved(tenant));
    let mut response = next.run(request).await;
    if let Some(warning) = warning
        && let Ok(value) = axum::http::HeaderValue::from_str(&warning)
    {
        response.headers_mut().insert("silo-billing-warning", value);
    }
    response
}

fn billing_warning(tenant: &ResolvedTenant) -> Option<String> {
    use control_plane::subscriptions::SubscriptionStatus;
    let billing = tenant.entitlements.billing.as_ref()?;
    let when =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match (billing.status, billing.grace_ends_at, billing.cancel_at) {
        (SubscriptionStatus::PastDue, Some(grace), _) => {
            Some(format!("past_due; suspends-at={}", when(grace)))
        }
        (_, _, Some(cancel_at)) => Some(format!("cancelling; access-ends={}", when(cancel_at))),
        _ => None,
    }
}

/// Routes the apex serves for the router: `/metrics` (Prometheus text).
pub fn apex_router(state: RouterState) -> Router {
    Router::new()
        .route("/metrics", get(crate::metrics::serve_metrics))
        .with_state(state)
}

/// A resolved, servable tenant (rate-limited like every request) without a database
/// connection: for what the router already knows, such as the public branding.
pub struct ResolvedOnly(pub Arc<ResolvedTenant>);

impl<S> FromRequestParts<S> for ResolvedOnly
where
    RouterState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = RouterState::from_ref(state);
        let tenant = parts
            .extensions
            .get::<Resolved>()
            .map(|Resolved(tenant)| tenant.clone())
            .ok_or_else(ApiError::tenant_not_found)?;
        state.check_rate(&tenant)?;
        Ok(Self(tenant))
    }
}

/// A resolved, servable tenant and a connection to its own database.
pub struct TenantConnection {
    pub tenant: Arc<ResolvedTenant>,
    pub client: TenantClient,
}

impl<S> FromRequestParts<S> for TenantConnection
where
    RouterState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = RouterState::from_ref(state);
        let tenant = if let Some(Resolved(tenant)) = parts.extensions.get::<Resolved>() {
            tenant.clone()
        } else if let Some(slug) = parts.extensions.get::<TenantSlug>() {
            state.resolve(&slug.0).await?
        } else if let Some(domain) = parts.extensions.get::<CustomDomain>() {
            state.resolve_domain(&domain.0).await?
        } else {
            return Err(ApiError::tenant_not_found());
        };
        state.check_rate(&tenant)?;
        let client = state.connection(&tenant).await?;
        Ok(Self { tenant, client })
    }
}

#[tracing::instrument(name = "tenant_health", skip_all, fields(tenant = %connection.tenant.slug))]
async fn health(connection: TenantConnection) -> Result<Json<TenantHealth>, ApiError> {
    let statement = format!(
        "SELECT coalesce(max(version), 0) FROM {}",
        tenant_schema::HISTORY_TABLE
    );
    let row = connection
        .client
        .query_one(&statement, &[])
        .await
        .map_err(|error| {
            tracing::warn!(%error, "tenant health query failed");
            ApiError::internal()
        })?;
    Ok(Json(TenantHealth {
        tenant: connection.tenant.slug.clone(),
        schema_version: row.get(0),
    }))
}
