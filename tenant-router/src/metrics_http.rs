//! The HTTP side of the router's metrics: `GET /metrics` on the apex, and the middleware that
//! counts and times every tenant request by route and status class.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;

use crate::metrics::{OutcomeLabels, set};
use crate::resolve::RouterState;

/// `GET /metrics` (apex): the Prometheus text exposition.
pub async fn serve_metrics(State(state): State<RouterState>) -> Response {
    let metrics = state.metrics();
    metrics
        .pools_open
        .set(i64::try_from(state.open_pools()).unwrap_or(i64::MAX));
    metrics.routers.set(i64::from(state.routers()));
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
            &metrics.host_quick_checkouts,
            &host_id,
            host.quick_recycles.load(Ordering::Relaxed),
        );
        set(
            &metrics.host_session_resets,
            &host_id,
            host.full_resets.load(Ordering::Relaxed),
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
    let route = web::observe::route_of(&request).to_owned();
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
        .get_or_create(&OutcomeLabels { route, class })
        .inc();
    response
}
