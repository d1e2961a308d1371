//! Cross-site request refusal, one mechanism for every surface: a state-changing request
//! (anything but GET, HEAD, OPTIONS) that carries a cookie must come from a page of the same
//! origin. Browsers say where a request comes from in `Origin` (every modern browser sends it on
//! POST, PUT, PATCH and DELETE) and in `Sec-Fetch-Site`; a request that says neither, or names
//! another site, is refused with 403 `cross_site_request` before any handler runs. Requests
//! without a cookie (API clients with bearer tokens, webhooks) are not affected: nothing ambient
//! authenticates them, so a forged one has no power.
//!
//! This replaces relying on `SameSite` alone, which does not hold for sibling subdomains (every
//! tenant host is same-site with every other) nor for browsers that ignore it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::{ApiError, ErrorCode};

/// Whether the `X-Forwarded-Host` header names the host the browser addressed (set only when a
/// trusted proxy in front rewrites `Host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SameOrigin {
    pub trust_forwarded_host: bool,
}

/// Middleware (with [`SameOrigin`] as its state): refuses cross-site state-changing requests
/// that carry cookies.
pub async fn refuse_cross_site(
    State(config): State<SameOrigin>,
    request: Request,
    next: Next,
) -> Response {
    if is_safe(request.method()) || !request.headers().contains_key(header::COOKIE) {
        return next.run(request).await;
    }
    if from_same_origin(request.headers(), config) {
        next.run(request).await
    } else {
        ApiError::new(
            ErrorCode::CrossSiteRequest,
            "This request did not come from a page of this site, so it was refused. Open the page \
             on this site and submit the form again.",
        )
        .into_response()
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The host (with port) the browser addressed.
fn addressed_host(headers: &HeaderMap, config: SameOrigin) -> Option<&str> {
    let forwarded = config
        .trust_forwarded_host
        .then(|| headers.get("x-forwarded-host"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        // The proxy nearest us appends last.
        .and_then(|value| value.rsplit(',').next())
        .map(str::trim);
    forwarded.or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    })
}

fn from_same_origin(headers: &HeaderMap, config: SameOrigin) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Some(host) = addressed_host(headers, config) else {
            return false;
        };
        // `null` (sandboxed frames, some redirects) and malformed values are never same-origin.
        return origin
            .to_str()
            .ok()
            .and_then(|origin| origin.split_once("://"))
            .is_some_and(|(scheme, authority)| {
                matches!(scheme, "http" | "https") && authority.eq_ignore_ascii_case(host)
            });
    }
    headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| site == "same-origin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tower::ServiceExt as _;

    async fn status(headers: &[(&str, &str)], trust_forwarded_host: bool) -> StatusCode {
        let app = Router::new()
            .route("/act", post(|| async { "done" }).get(|| async { "page" }))
            .layer(axum::middleware::from_fn_with_state(
                SameOrigin {
                    trust_forwarded_host,
                },
                refuse_cross_site,
            ));
        let mut request = axum::http::Request::post("/act");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        app.oneshot(request.body(axum::body::Body::empty()).expect("a request"))
            .await
            .expect("answers")
            .status()
    }

    #[tokio::test]
    async fn only_same_origin_requests_with_cookies_change_anything() {
        let host = ("host", "acme.example.test:8080");
        let cookie = ("cookie", "silo_session=x");
        let same = ("origin", "http://acme.example.test:8080");
        assert_eq!(status(&[host, cookie, same], false).await, StatusCode::OK);
        for origin in [
            "http://evil.example.test:8080",
            "http://other.example.test:8080",
            "http://acme.example.test:8081",
            "null",
            "acme.example.test:8080",
        ] {
            assert_eq!(
                status(&[host, cookie, ("origin", origin)], false).await,
                StatusCode::FORBIDDEN,
                "{origin}"
            );
        }
        // No Origin: only the browser's own same-origin statement lets it through.
        assert_eq!(
            status(&[host, cookie, ("sec-fetch-site", "same-origin")], false).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&[host, cookie, ("sec-fetch-site", "same-site")], false).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(status(&[host, cookie], false).await, StatusCode::FORBIDDEN);
        // Without a cookie nothing ambient authenticates the request.
        assert_eq!(
            status(&[host, ("origin", "http://evil.example.test")], false).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn behind_a_trusted_proxy_the_forwarded_host_is_the_origin_compared() {
        let proxied = [
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-host", "acme.example.test"),
            ("cookie", "silo_session=x"),
            ("origin", "https://acme.example.test"),
        ];
        assert_eq!(status(&proxied, true).await, StatusCode::OK);
        assert_eq!(status(&proxied, false).await, StatusCode::FORBIDDEN);
    }
}
