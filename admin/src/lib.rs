//! The super-admin side of the apex: login (argon2id password + TOTP second factor), sessions,
//! the JSON admin API under `/api/v1/admin` (database hosts, tenants: list, show, cancel,
//! retry, subscription, plan and module actions, read-only support access), the migration
//! dashboard under `/admin` (server-rendered, live while a rollout runs) and the tenant console
//! under `/admin/tenants`.
//!
//! Boundary: mounted on the apex only (the `silo` binary merges [`router`] into the control
//! plane's); it acts through `control_plane::Store` and the provisioner, and reads tenant data
//! only through [`support`] (read-only, audited first).
//! Invariant: every handler except login takes an [`auth::Admin`], and every change is audited.

pub mod api;
pub mod auth;
pub mod console;
pub mod dashboard;
mod rollout_views;
pub mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use control_plane::{Keyring, Store};
use web::ClientRateLimiter;

pub use auth::{Enrollment, create_admin, current_code};

/// What the admin routes share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub login_limiter: Arc<ClientRateLimiter>,
    pub session_lifetime: Duration,
    /// The durations of the subscription lifecycle; its `offboarding_grace` is the grace period
    /// a cancellation gets unless the request names one.
    pub lifecycle: control_plane::subscriptions::Lifecycle,
    /// The migrations this build knows (rollout targets are limited to them).
    pub migrations: migrator::MigrationSet,
    /// How the plan preview lints the migrations a rollout applies (`[migrations]` settings).
    pub lint: migrator::lint::LintConfig,
    /// Where domain verification looks up TXT records (`None`: no resolver could be set up,
    /// and verification answers `dns_unavailable`).
    pub domain_resolver: Option<control_plane::dns::TxtResolver>,
}

impl AdminState {
    /// The tenant with this subdomain, or 404 `not_found` naming it.
    pub(crate) async fn tenant(
        &self,
        slug: &str,
    ) -> Result<control_plane::tenants::TenantRecord, web::ApiError> {
        self.store.tenant_by_slug(slug).await?.ok_or_else(|| {
            web::ApiError::new(
                web::ErrorCode::NotFound,
                format!("There is no tenant `{slug}`."),
            )
        })
    }

    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        lifecycle: control_plane::subscriptions::Lifecycle,
        migrations: migrator::MigrationSet,
    ) -> Self {
        Self {
            store,
            keyring,
            // Ten attempts a minute per address: enough for typos, useless for guessing.
            login_limiter: Arc::new(ClientRateLimiter::new(10)),
            session_lifetime: Duration::from_secs(12 * 3600),
            lifecycle,
            migrations,
            lint: migrator::lint::LintConfig::default(),
            domain_resolver: None,
        }
    }

    /// Domain verification asks `resolver` for TXT records.
    pub fn with_domain_resolver(
        mut self,
        resolver: Option<control_plane::dns::TxtResolver>,
    ) -> Self {
        self.domain_resolver = resolver;
        self
    }

    /// The lint the settings ask for, instead of the default rules and levels.
    pub fn with_lint(mut self, lint: migrator::lint::LintConfig) -> Self {
        self.lint = lint;
        self
    }
}

/// The admin routes, to be merged into the apex router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin", get(dashboard::home))
        .route(
            "/admin/login",
            get(dashboard::login_page).post(dashboard::login_submit),
        )
        .route("/admin/logout", post(dashboard::logout))
        .route("/admin/rollouts/new", get(dashboard::preview))
        .route("/admin/rollouts", post(dashboard::start))
        .route("/admin/rollouts/{id}", get(dashboard::rollout_page))
        .route(
            "/admin/rollouts/{id}/live",
            get(dashboard::rollout_fragment),
        )
        .route(
            "/admin/rollouts/{id}/{action}",
            post(dashboard::rollout_action),
        )
        .route("/admin/tenants", get(console::tenants_page))
        .route("/admin/tenants/{slug}", get(console::tenant_page))
        .route(
            "/admin/tenants/{slug}/actions/{action}",
            get(console::confirm_action).post(console::perform_action),
        )
        .route("/admin/tenants/{slug}/support", get(support::support_page))
        .route("/api/v1/admin/sessions", post(auth::create_session))
        .route(
            "/api/v1/admin/sessions/current",
            delete(auth::delete_session),
        )
        .route(
            "/api/v1/admin/hosts",
            get(api::list_hosts).post(api::add_host),
        )
        .route("/api/v1/admin/hosts/{name}", delete(api::remove_host))
        .route("/api/v1/admin/hosts/{name}/drain", post(api::drain_host))
        .route(
            "/api/v1/admin/hosts/{name}/activate",
            post(api::activate_host),
        )
        .route("/api/v1/admin/tenants", get(api::list_tenants))
        .route("/api/v1/admin/tenants/{slug}", get(api::show_tenant))
        .route(
            "/api/v1/admin/tenants/{slug}/cancel",
            post(api::cancel_tenant),
        )
        .route(
            "/api/v1/admin/tenants/{slug}/retry",
            post(api::retry_tenant),
        )
        .route(
            "/api/v1/admin/tenants/{slug}/subscription",
            get(api::show_subscription),
        )
        .route(
            "/api/v1/admin/tenants/{slug}/suspend",
            post(api::suspend_tenant),
        )
        .route(
            "/api/v1/admin/tenants/{slug}/reactivate",
            post(api::reactivate_tenant),
        )
        .route(
            "/api/v1/admin/tenants/{slug}/extend-trial",
            post(api::extend_trial),
        )
        .route("/api/v1/admin/tenants/{slug}/usage", get(api::tenant_usage))
        .route(
            "/api/v1/admin/tenants/{slug}/support",
            get(support::support_json),
        )
        .route("/api/v1/admin/plans", get(api::list_plans))
        .route("/api/v1/admin/tenants/{slug}/plan", post(api::change_plan))
        .route(
            "/api/v1/admin/tenants/{slug}/modules/{module}",
            axum::routing::put(api::set_module),
        )
        .route(
            "/api/v1/admin/tenants/{slug}/rotate-credentials",
            post(api::rotate_credentials),
        )
        .route(
            "/api/v1/admin/domains/{domain}/verify",
            post(api::verify_domain),
        )
        .with_state(state)
        // The console's pages run only their own inline script and handler; they show operator
        // data, so no browser or proxy keeps a copy.
        .layer(axum::middleware::from_fn_with_state(
            web::headers::PagePolicy::new(
                &[dashboard::LIVE_SCRIPT],
                &std::iter::once(dashboard::CONFIRM_START)
                    .chain(rollout_views::confirm_handlers())
                    .collect::<Vec<_>>(),
                true,
            ),
            web::headers::page_policy,
        ))
}
