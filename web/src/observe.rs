//! Every request's route by name: a tracing span per request carrying the matched route
//! template (`/api/v1/items/{id}`, never the concrete path), so logs and metrics name routes
//! with a bounded set of labels.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The label for requests no route matched (the fallback).
pub const UNMATCHED: &str = "unmatched";

/// The route template that matched `request`, or [`UNMATCHED`]. Only meaningful in a layer added
/// with `Router::layer` (it runs after routing).
pub fn route_of(request: &Request) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
}

/// Middleware: runs the request inside a `request` span naming its method and route, and
/// records the response status on it (and `tenant`, the slug, where the router resolved one).
pub async fn trace_route(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route_of(&request),
        tenant = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    async move {
        let response = next.run(request).await;
        tracing::Span::current().record("status", response.status().as_u16());
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn the_matched_template_is_the_route_and_unmatched_paths_share_one_label() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = {
            let seen = seen.clone();
            move |request: Request, next: Next| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .expect("not poisoned")
                        .push(route_of(&request).to_owned());
                    next.run(request).await
                }
            }
        };
        let app = Router::new()
            .route("/items/{id}", get(|| async { "item" }))
            .fallback(|| async { "none" })
            .layer(axum::middleware::from_fn(record))
            .layer(axum::middleware::from_fn(trace_route));
        for path in ["/items/7", "/items/8", "/nowhere/9"] {
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("a request");
            app.clone().oneshot(request).await.expect("answers");
        }
        let seen = seen.lock().expect("not poisoned").clone();
        assert_eq!(seen, ["/items/{id}", "/items/{id}", UNMATCHED]);
    }
}
