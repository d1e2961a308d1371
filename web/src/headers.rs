//! Headers every response carries unless its handler set its own: no MIME sniffing, no framing
//! by other sites, no full URLs in the `Referer` sent elsewhere. And reading a request's cookie.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

const DEFAULTS: [(HeaderName, &str); 3] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "same-origin"),
];

/// The value of the cookie `name` the request carries, if any (and not empty).
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, value)| *found == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// Middleware: adds the default security headers a response lacks.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in DEFAULTS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn defaults_are_added_and_a_handlers_own_header_is_kept() {
        let app = Router::new()
            .route("/", get(|| async { "page" }))
            .route(
                "/framed",
                get(|| async { ([(header::X_FRAME_OPTIONS, "SAMEORIGIN")], "framed") }),
            )
            .layer(axum::middleware::from_fn(security_headers));
        let get = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("a request")
        };
        let page = app.clone().oneshot(get("/")).await.expect("answers");
        assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(page.headers()[header::REFERRER_POLICY], "same-origin");
        let framed = app.oneshot(get("/framed")).await.expect("answers");
        assert_eq!(framed.headers()[header::X_FRAME_OPTIONS], "SAMEORIGIN");
    }
}
