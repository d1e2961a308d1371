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

use axum::extract::Request;
use axum::http::{Extensions, HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::{ApiError, ErrorCode};

/// Middleware: refuses cross-site state-changing requests that carry cookies. The host compared
/// is the one the client addressed ([`crate::client::addressed_host`]: the forwarded host from a
/// trusted proxy, else `Host`).
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if is_safe(request.method()) || !request.headers().contains_key(header::COOKIE) {
        return next.run(request).await;
    }
    if from_same_origin(request.headers(), request.extensions()) {
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

fn from_same_origin(headers: &HeaderMap, extensions: &Extensions) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Some(host) = crate::client::addressed_host(headers, extensions) else {
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

    /// `forwarded_host`: what the client middleware found a trusted proxy forwarded.
    async fn status(headers: &[(&str, &str)], forwarded_host: Option<&str>) -> StatusCode {
        let app = Router::new()
            .route("/act", post(|| async { "done" }).get(|| async { "page" }))
            .layer(axum::middleware::from_fn(refuse_cross_site));
        let mut request = axum::http::Request::post("/act");
        if let Some(host) = forwarded_host {
            request = request.extension(crate::client::ForwardedHost(host.to_owned()));
        }
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
        assert_eq!(status(&[host, cookie, same], None).await, StatusCode::OK);
        for origin in [
            "http://evil.example.test:8080",
            "http://other.example.test:8080",
            "http://acme.example.test:8081",
            "null",
            "acme.example.test:8080",
        ] {
            assert_eq!(
                status(&[host, cookie, ("origin", origin)], None).await,
                StatusCode::FORBIDDEN,
                "{origin}"
            );
        }
        // No Origin: only the browser's own same-origin statement lets it through.
        assert_eq!(
            status(&[host, cookie, ("sec-fetch-site", "same-origin")], None).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&[host, cookie, ("sec-fetch-site", "same-site")], None).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(status(&[host, cookie], None).await, StatusCode::FORBIDDEN);
        // Without a cookie nothing ambient authenticates the request.
        assert_eq!(
            status(&[host, ("origin", "http://evil.example.test")], None).await,
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
        assert_eq!(
            status(&proxied, Some("acme.example.test")).await,
            StatusCode::OK
        );
        assert_eq!(status(&proxied, None).await, StatusCode::FORBIDDEN);
    }
}
