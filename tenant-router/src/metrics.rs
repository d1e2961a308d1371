//! The router's Prometheus metrics (prometheus-client), served as text at `/metrics` on the
//! apex. Labels name outcomes and database hosts, never tenants, so the series count does not
//! grow with the fleet. The HTTP side (serving them, counting requests) is `metrics_http.rs`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The matched route template (`/api/v1/items/{id}`; `unmatched` for the fallback): a
    /// bounded set, never the concrete path.
    pub route: String,
    /// `2xx`, `4xx`, … of the tenant request.
    pub class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `hit`, `miss`, or `stale` (served from cache while the control plane was unreachable).
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    pub host: String,
}

/// Every router metric; cheap to clone (each metric is shared).
#[derive(Debug, Clone)]
pub struct RouterMetrics {
    pub requests: Family<OutcomeLabels, Counter>,
    pub request_seconds: Histogram,
    pub tenant_lookups: Family<LookupLabels, Counter>,
    pub rate_limited: Counter,
    pub(crate) pools_open: Gauge,
    pub(crate) routers: Gauge,
    pub(crate) host_connections: Family<HostLabels, Gauge>,
    pub(crate) host_budget: Family<HostLabels, Gauge>,
    pub(crate) host_budget_waits: Family<HostLabels, Gauge>,
    pub(crate) host_budget_refusals: Family<HostLabels, Gauge>,
    pub(crate) host_breaker_trips: Family<HostLabels, Gauge>,
    pub(crate) host_quick_checkouts: Family<HostLabels, Gauge>,
    pub(crate) host_session_resets: Family<HostLabels, Gauge>,
    pub(crate) host_breaker_open: Family<HostLabels, Gauge>,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            tenant_lookups: Family::default(),
            rate_limited: Counter::default(),
            pools_open: Gauge::default(),
            routers: Gauge::default(),
            host_connections: Family::default(),
            host_budget: Family::default(),
            host_budget_waits: Family::default(),
            host_budget_refusals: Family::default(),
            host_breaker_trips: Family::default(),
            host_quick_checkouts: Family::default(),
            host_session_resets: Family::default(),
            host_breaker_open: Family::default(),
        }
    }
}

impl RouterMetrics {
    pub(crate) fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("silo_router");
        registry.register(
            "requests",
            "Tenant requests answered, by status class",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a tenant request",
            self.request_seconds.clone(),
        );
        registry.register(
            "tenant_lookups",
            "Host-to-tenant resolutions, by cache result",
            self.tenant_lookups.clone(),
        );
        registry.register(
            "rate_limited",
            "Tenant requests refused by the per-tenant rate limit",
            self.rate_limited.clone(),
        );
        registry.register(
            "pools_open",
            "Tenant connection pools held open",
            self.pools_open.clone(),
        );
        registry.register(
            "routers",
            "Router processes sharing each host's connection budget, as this one last counted",
            self.routers.clone(),
        );
        registry.register(
            "host_connections",
            "Tenant database connections held, per database host",
            self.host_connections.clone(),
        );
        registry.register(
            "host_connection_budget",
            "Connections this process may hold, per database host: its share of the host's budget",
            self.host_budget.clone(),
        );
        registry.register(
            "host_budget_waits",
            "New connections that waited for the host's budget (total)",
            self.host_budget_waits.clone(),
        );
        registry.register(
            "host_budget_refusals",
            "Requests refused with 503 capacity after waiting for the budget (total)",
            self.host_budget_refusals.clone(),
        );
        registry.register(
            "host_breaker_trips",
            "Times the host's circuit breaker opened (total)",
            self.host_breaker_trips.clone(),
        );
        registry.register(
            "host_quick_checkouts",
            "Checkouts of an idle connection whose last request finished in the tenant app: no \
             session reset needed (total)",
            self.host_quick_checkouts.clone(),
        );
        registry.register(
            "host_session_resets",
            "Checkouts of an idle connection that reset its session in full: its last request \
             was cut off, or it was not lent to one (total)",
            self.host_session_resets.clone(),
        );
        registry.register(
            "host_breaker_open",
            "1 while the host's circuit breaker is open",
            self.host_breaker_open.clone(),
        );
        registry
    }
}

pub(crate) fn set(family: &Family<HostLabels, Gauge>, host: &str, value: u64) {
    family
        .get_or_create(&HostLabels {
            host: host.to_owned(),
        })
        .set(i64::try_from(value).unwrap_or(i64::MAX));
}
