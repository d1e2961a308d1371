//! The end-user edge: resolves `Host` to a tenant, enforces the tenant's status, and hands
//! handlers a pooled connection to that tenant's own database.
//!
//! Invariant: a request is served only from the database of the tenant its Host names; the
//! connection pool is keyed by tenant id and built from that tenant's own sealed URL.
//! Boundary: the router never provisions or migrates, and never writes to the control-plane
//! database.

pub mod app;
pub mod budget;
pub mod host;
pub mod metrics;
pub mod resolve;
pub mod usage;

pub use app::{apex_router, router};
pub use host::{CustomDomain, HostKind, TenantSlug, classify_host};
pub use resolve::RouterState;
