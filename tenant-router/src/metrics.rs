//! The router's Prometheus metrics (prometheus-client), served as text at `/metrics` on the
//! apex. Labels name outcomes and database hosts, never tenants, so the series count does not
//! grow with the fleet.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::resolve::RouterState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
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
    pools_open: Gauge,
    host_connections: Family<HostLabels, Gauge>,
    host_budget: Family<HostLabels, Gauge>,
    host_budget_waits: Family<HostLabels, Gauge>,
    host_budget_refusals: Family<HostLabels, Gauge>,
    host_breaker_trips: Family<HostLabels, Gauge>,
    host_breaker_open: Family<HostLabels, Gauge>,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            tenant_lookups: Family::default(),
            rate_limited: Counter::default(),
            pools_open: Gauge::default(),
            host_connections: Family::default(),
            host_budget: Family::default(),
            host_budget_waits: Family::default(),
            host_budget_refusals: Family::default(),
            host_breaker_trips: Family::default(),
            host_breaker_open: Family::default(),
        }
    }
}

impl RouterMetrics {
    fn registry(&self) -> Registry {
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
            "host_connections",
            "Tenant database connections held, per database host",
            self.host_connections.clone(),
        );
        registry.register(
            "host_connection_budget",
            "Connections this process may hold, per database host",
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
            "host_breaker_open",
            "1 while the host's circuit breaker is open",
            self.host_breaker_open.clone(),
        );
        registry
    }
}

fn set(family: &Family<HostLabels, Gauge>, host: &str, value: u64) {
    family
        .get_or_create(&HostLabels {
            host: host.to_owned(),
        })
        .set(i64::try_from(value).unwrap_or(i64::MAX));
}

/// `GET /metrics` (apex): the Prometheus text exposition.
pub async fn serve_metrics(State(state): State<RouterState>) -> Response {
    let metrics = state.metrics();
    metrics
        .pools_open
        .set(i64::try_from(state.open_pools()).unwrap_or(i64::MAX));
    for (host_id, host) in state.hosts() {
        let host_id = host_id.to_string();
        let budget = &host.budget;
        set(&metrics.host_connections, &host_id, budget.in_use().into());
        set(&metrics.host_budget, &host_id, budget.limit().into());
        set(
            &metrics.host_budget_waits,
            &host_id,
            budget.waits.load(Ordering::Relaxed),
        );
        set(
            &metrics.host_budget_refusals,
            &host_id,
            budget.refusals.load(Ordering::Relaxed),
        );
        set(
            &metrics.host_breaker_trips,
            &host_id,
            host.breaker.trips.load(Ordering::Relaxed),
        );
        set(
            &metrics.host_breaker_open,
            &host_id,
            u64::from(host.breaker.is_open()),
        );
    }
    let mut text = String::new();
    if encode(&mut text, &metrics.registry()).is_err() {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Middleware on the tenant router: counts and times every tenant request.
pub async fn record_request(
    State(state): State<RouterState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics
        .requests
        .get_or_create(&OutcomeLabels { class })
        .inc();
    response
}
