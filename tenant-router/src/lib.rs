//! The end-user edge: resolves `Host` to a tenant, enforces the tenant's status, and hands
//! handlers a pooled connection to that tenant's own database through one narrow seam
//! ([`seam`]). It knows nothing of the product served behind it (the tenant app).
//!
//! Invariant: a request is served only from the database of the tenant its Host names; the
//! connection pool is keyed by tenant id and built from that tenant's own sealed URL.
//! Boundary: the router never provisions or migrates. Its own writes to the control-plane
//! database are usage counts (one statement per flush) and API keys' `last_used_at`; what the
//! tenant app served through it writes is the app's.

pub mod budget;
pub mod host;
pub mod limits;
pub mod metrics;
pub mod metrics_http;
pub mod resolve;
pub mod seam;
pub mod usage;

pub use host::{CustomDomain, HostKind, TenantSlug, classify_host};
pub use resolve::RouterState;
pub use seam::serve;

/// Routes the apex serves for the router: `/metrics` (Prometheus text).
pub fn apex_router(state: RouterState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_http::serve_metrics))
        .with_state(state)
}
