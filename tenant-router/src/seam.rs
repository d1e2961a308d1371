//! The seam between the router (platform) and the tenant app (product): a middleware that
//! resolves each request's tenant before any handler runs, and the extractors a handler uses to
//! get it — [`ResolvedOnly`] (the tenant, rate-limited) and [`TenantConnection`] (the tenant and a
//! budgeted, pooled connection to its own database). The tenant app reaches the router through
//! this module and [`crate::RouterState`]'s accessors only.
//!
//! Invariant: a handler can only get a connection to the database of the tenant its request's
//! Host named; nothing else in the router or the app opens tenant connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use control_plane::model::TenantHealth;
use std::net::IpAddr;

use web::ApiError;
use web::client::ClientAddr;

pub use crate::limits::Budget;

use crate::budget::TenantClient;
use crate::host::{CustomDomain, TenantSlug};
pub use crate::resolve::{ResolvedTenant, RouterState};
/// A transaction on a tenant connection (the pooled client's own type).
pub use deadpool_postgres::Transaction as TenantTransaction;

/// Serves a tenant app on tenant hosts: adds `GET /api/v1/health` (the tenant's schema version)
/// and wraps every route in tenant resolution and the request metrics. The `silo` binary sends
/// this router requests whose Host named a tenant, with the [`TenantSlug`] or [`CustomDomain`]
/// in the request's extensions.
pub fn serve(app: Router, state: RouterState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .with_state(state.clone())
        .merge(app)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            resolve_tenant,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::metrics_http::record_request,
        ))
        .layer(axum::middleware::from_fn(web::observe::trace_route))
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
    let tenant = match look_up(request.extensions(), &state).await {
        Ok(tenant) => tenant,
        Err(error) => return error.into_response(),
    };
    // A workspace that is not served (suspended, closed, being set up) still shows its own
    // branding on the page that says so.
    // (Only browsers get pages, so only they pay for the branding.)
    let wants_page = web::negotiate::wants_html(request.headers());
    let tenant = match crate::resolve::admit(tenant.clone()) {
        Ok(tenant) => tenant,
        Err(error) => {
            let mut response = error.into_response();
            if wants_page {
                response.extensions_mut().insert(tenant.page_brand());
            }
            return response;
        }
    };
    tracing::Span::current().record("tenant", tenant.slug.as_str());
    tenant
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let warning = billing_warning(&tenant);
    let brand = tenant.clone();
    request.extensions_mut().insert(Resolved(tenant));
    let finished = Arc::new(AtomicBool::new(false));
    let mut response = REQUEST_FINISHED
        .scope(finished.clone(), next.run(request))
        .await;
    finished.store(true, Ordering::Release);
    if wants_page && (response.status().is_client_error() || response.status().is_server_error()) {
        response.extensions_mut().insert(brand.page_brand());
    }
    if let Some(warning) = warning
        && let Ok(value) = axum::http::HeaderValue::from_str(&warning)
    {
        response.headers_mut().insert("silo-billing-warning", value);
    }
    response
}

fn billing_warning(tenant: &ResolvedTenant) -> Option<String> {
    match control_plane::access::decide(tenant.status, tenant.entitlements.billing.as_ref()) {
        control_plane::access::Access::Serve(warning) => warning.map(|w| w.header_value()),
        _ => None,
    }
}

/// The tenant the request's Host names, served or not (`tenant_not_found` when none).
async fn look_up(
    extensions: &axum::http::Extensions,
    state: &RouterState,
) -> Result<Arc<ResolvedTenant>, ApiError> {
    if let Some(slug) = extensions.get::<TenantSlug>() {
        state.look_up(&slug.0).await
    } else if let Some(domain) = extensions.get::<CustomDomain>() {
        state.look_up_domain(&domain.0).await
    } else {
        Err(ApiError::tenant_not_found())
    }
}

/// The request's tenant: the one [`resolve_tenant`] resolved, or (outside [`serve`]) the one its
/// Host names.
async fn tenant_of(
    extensions: &axum::http::Extensions,
    state: &RouterState,
) -> Result<Arc<ResolvedTenant>, ApiError> {
    match extensions.get::<Resolved>() {
        Some(Resolved(tenant)) => Ok(tenant.clone()),
        None => crate::resolve::admit(look_up(extensions, state).await?),
    }
}

/// A resolved, servable tenant without a database connection, counted against the tenant's
/// anonymous budgets (see [`crate::limits`]): for public routes and what the router already
/// knows, such as the branding. A route that checks credentials takes
/// [`ResolvedOnly::for_credential`] instead and charges the authenticated budget itself.
pub struct ResolvedOnly(pub Arc<ResolvedTenant>);

impl ResolvedOnly {
    /// The tenant of a request whose credential is about to be checked: nothing is charged yet
    /// (a verified credential is charged by [`RouterState::check_rate`] with
    /// [`Budget::Authenticated`], a failed one by [`RouterState::credential_refused`]), but an
    /// address penalised for failed credentials is refused first.
    pub async fn for_credential<S>(
        parts: &mut Parts,
        state: &S,
    ) -> Result<(Arc<ResolvedTenant>, Option<IpAddr>), ApiError>
    where
        RouterState: FromRef<S>,
        S: Send + Sync,
    {
        let state = RouterState::from_ref(state);
        let tenant = tenant_of(&parts.extensions, &state).await?;
        let client = client_of(parts);
        state.check_credential_penalty(&tenant, client)?;
        Ok((tenant, client))
    }
}

fn client_of(parts: &Parts) -> Option<IpAddr> {
    web::client::client_addr(&parts.extensions).map(|ClientAddr(address)| address)
}

impl<S> FromRequestParts<S> for ResolvedOnly
where
    RouterState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = RouterState::from_ref(state);
        let tenant = tenant_of(&parts.extensions, &state).await?;
        state.check_rate(&tenant, Budget::Anonymous, client_of(parts))?;
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
        let ResolvedOnly(tenant) = ResolvedOnly::from_request_parts(parts, state).await?;
        Self::open(&RouterState::from_ref(state), tenant).await
    }
}

impl TenantConnection {
    /// A connection for a tenant already resolved (and rate-limited) by [`ResolvedOnly`]: for a
    /// handler that takes the connection only once it has checked what needs no database, so
    /// a request that fails those checks never holds one.
    pub async fn open(state: &RouterState, tenant: Arc<ResolvedTenant>) -> Result<Self, ApiError> {
        let mut client = state.connection(&tenant).await?;
        // Lent to the request being served (see `resolve_tenant`), if this is one.
        if let Ok(finished) = REQUEST_FINISHED.try_with(Arc::clone) {
            client.serve(finished);
        }
        Ok(Self { tenant, client })
    }
}

tokio::task_local! {
    /// Set by [`resolve_tenant`] once the tenant app's handler ran to its end: the connections
    /// it took come back clean (see `BudgetedClient::serve`). A request cut off half-way (its
    /// client gone) drops its handler first, so this stays unset and the next checkout of its
    /// connections resets them in full.
    static REQUEST_FINISHED: Arc<AtomicBool>;
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
