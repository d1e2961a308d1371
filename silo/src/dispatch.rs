//! Routes each request by its Host: the apex to the control plane, `<slug>.<base>` to the tenant
//! router (with the slug attached), anything else to a `tenant_not_found` answer. The process's
//! probes, `/livez` and `/readyz`, answer on every host (a load balancer asks by address).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use tenant_router::{HostKind, classify_host};
use tower::ServiceExt as _;
use tracing::Instrument as _;
use web::ApiError;

#[derive(Clone)]
struct Dispatch {
    base_domain: Arc<str>,
    apex: Router,
    tenant: Router,
    probes: Probes,
}

/// What the probes look at.
#[derive(Clone)]
pub struct Probes {
    pub store: control_plane::Store,
    /// Set once the process was asked to stop: it finishes what it has and takes nothing new.
    pub draining: Arc<AtomicBool>,
}

impl Probes {
    /// `/livez`: the process answers (nothing else: a database outage must not restart it).
    /// `/readyz`: it should get traffic: not draining, and its control plane ready.
    async fn answer(&self, path: &str) -> Option<Response> {
        let ok = |status: &str| axum::Json(serde_json::json!({ "status": status })).into_response();
        match path {
            "/livez" => Some(ok("alive")),
            "/readyz" => Some(if self.draining.load(Ordering::Acquire) {
                ApiError::new(
                    web::ErrorCode::NotReady,
                    "This process is shutting down; send requests to another.",
                )
                .retry_after(5)
                .into_response()
            } else if self.store.is_ready().await {
                ok("ready")
            } else {
                ApiError::new(
                    web::ErrorCode::NotReady,
                    "The control-plane database does not answer or lacks this build's migrations.",
                )
                .retry_after(5)
                .into_response()
            }),
            _ => None,
        }
    }
}

/// One router answering every Host: the host the client addressed, as
/// [`web::client::addressed_host`] reads it (the forwarded host from a trusted proxy, when
/// `trust_forwarded_host` is on, else `Host`).
pub fn host_dispatch(
    base_domain: Arc<str>,
    apex: Router,
    tenant: Router,
    probes: Probes,
) -> Router {
    Router::new().fallback(dispatch).with_state(Dispatch {
        base_domain,
        apex,
        tenant,
        probes,
    })
}

async fn dispatch(State(routes): State<Dispatch>, mut request: Request<Body>) -> Response {
    if let Some(answer) = routes.probes.answer(request.uri().path()).await {
        return answer;
    }
    let host =
        web::client::addressed_host(request.headers(), request.extensions()).map(str::to_owned);
    let host = host
        .as_deref()
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        })
        .unwrap_or_default();
    let (target, span) = match classify_host(host, &routes.base_domain) {
        HostKind::Apex => (routes.apex, tracing::info_span!("apex")),
        HostKind::Tenant(slug) => {
            // Every log line of a tenant request carries the tenant's slug.
            let span = tracing::info_span!("tenant", tenant = %slug.0);
            request.extensions_mut().insert(slug);
            (routes.tenant, span)
        }
        HostKind::Custom(domain) => {
            let span = tracing::info_span!("tenant", domain = %domain.0);
            request.extensions_mut().insert(domain);
            (routes.tenant, span)
        }
        HostKind::Unknown => return ApiError::tenant_not_found().into_response(),
    };
    match target.oneshot(request).instrument(span).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    }
}
