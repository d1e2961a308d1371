//! The tenant app: the sample product, a pharmacy back office — its HTTP API and pages, served on
//! each tenant's host through the router's seam (`tenant_router::seam`). Every handler gets its
//! tenant through the [`TenantConnection`] extractor (or [`auth::Authed`], which adds the
//! signed-in user), so none can reach another tenant's database.
//!
//! Boundary: this crate depends on the router only through `tenant_router::seam` and
//! `RouterState`'s accessors; a team replacing the sample product replaces this crate and
//! `tenant-schema`, not the router.

pub mod api_keys;
pub mod auth;
pub mod billing;
pub mod branding;
pub mod catalog;
pub mod common;
pub mod domains;
pub mod imports;
pub mod integrations;
pub mod invitations;
pub mod money;
pub mod pages;
pub mod reports;
pub mod sessions;
pub mod stock_takes;
pub mod trade;
pub mod users;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{delete, get, post, put};
use tenant_router::RouterState;
pub use tenant_router::seam::{ResolvedOnly, TenantConnection};
use web::{ApiError, ErrorCode};

/// The routes that take a file, and how large it may be: the edge reads up to this much for
/// them (a 100,000-item CSV is about 6 MB).
pub const UPLOAD_PATHS: &[&str] = &["/api/v1/items/imports", "/items/import"];
pub const MAX_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

/// What the tenant app's handlers share: the router's seam state, and the app's own clients.
#[derive(Debug, Clone)]
pub struct AppState {
    pub router: RouterState,
    /// Stripe's API for owners' checkouts; `None` where Stripe is not configured.
    pub stripe: Option<control_plane::stripe::StripeClient>,
}

impl FromRef<AppState> for RouterState {
    fn from_ref(state: &AppState) -> Self {
        state.router.clone()
    }
}

/// The tenant app's routes, to be served through [`tenant_router::seam::serve`], which resolves
/// the tenant of every request before these handlers run.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/sessions", post(auth::login))
        .route("/api/v1/sessions/current", delete(auth::logout))
        // The contract's name for the same sign-in.
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/plan", get(users::plan))
        .route("/api/v1/usage", get(users::usage))
        .route("/api/v1/billing", get(billing::show))
        .route("/api/v1/billing/checkout", post(billing::checkout))
        .route("/api/v1/billing/portal", post(billing::portal))
        .route(
            "/api/v1/users",
            get(users::list_users).post(users::create_user),
        )
        .route(
            "/api/v1/users/{id}",
            axum::routing::patch(users::update_user).delete(users::remove_user),
        )
        .route(
            "/api/v1/users/invitations",
            get(invitations::list_invitations).post(invitations::invite_user),
        )
        .route(
            "/api/v1/users/invitations/{id}",
            axum::routing::delete(invitations::revoke_invitation),
        )
        .route(
            "/api/v1/invitations/accept",
            post(invitations::accept_invitation),
        )
        .route(
            "/api/v1/branding",
            get(branding::get_branding).put(branding::put_branding),
        )
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
            "/api/v1/items/imports",
            post(imports::import_items)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/api/v1/items/imports/{id}", get(imports::get_import))
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
        .route("/api/v1/stock-takes", post(stock_takes::start_stock_take))
        .route("/api/v1/stock-takes/{id}", get(stock_takes::get_stock_take))
        .route(
            "/api/v1/stock-takes/{id}/counts",
            put(stock_takes::record_count),
        )
        .route(
            "/api/v1/stock-takes/{id}/complete",
            post(stock_takes::complete_stock_take),
        )
        .route("/api/v1/reports/sales", get(reports::sales_report))
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
        .merge(pages::routes())
        .fallback(|| async {
            ApiError::new(
                ErrorCode::RouteNotFound,
                "There is no page or endpoint at this address. API clients: see /api/openapi.json on the main site.",
            )
        })
        .with_state(state)
}
