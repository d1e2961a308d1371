//! Headers every response carries unless its handler set its own: no MIME sniffing, no framing
//! by other sites, no full URLs in the `Referer` sent elsewhere, and HSTS once a browser reached
//! us over https. A content security policy for each surface's pages, built from the hashes of
//! the inline scripts it allows. And reading a request's cookie.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::Digest as _;

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

/// A year: what browsers remember that this host is https-only, once told over https.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Whether the browser reached us over https: a trusted TLS-terminating proxy said so.
/// `client::identify_client` runs first and leaves `X-Forwarded-Proto` only when a trusted proxy
/// received https (a client's own claim is removed).
pub fn reached_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Middleware: adds the default security headers a response lacks, and HSTS over https.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let https = reached_over_https(request.headers());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in DEFAULTS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if https {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
        make_cookies_secure(headers);
    }
    response
}

/// Every cookie set on an answer to a browser that came over https is `Secure`: one place for
/// every surface's session cookie, so none can leak over a later plain-http request.
fn make_cookies_secure(headers: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        let already = cookie.to_str().is_ok_and(|text| {
            text.split(';')
                .any(|attribute| attribute.trim().eq_ignore_ascii_case("secure"))
        });
        let cookie = if already {
            cookie
        } else {
            let mut bytes = cookie.as_bytes().to_vec();
            bytes.extend_from_slice(b"; Secure");
            HeaderValue::from_bytes(&bytes).unwrap_or(cookie)
        };
        headers.append(header::SET_COOKIE, cookie);
    }
}

/// A surface's content security policy: nothing from elsewhere, styles inline or our own, and
/// no script but the inline ones named by their SHA-256 (an injected script has another hash).
#[derive(Debug, Clone)]
pub struct PagePolicy {
    policy: HeaderValue,
    /// Pages that show one signed-in person's data are never stored by a browser or a proxy.
    private: bool,
}

impl PagePolicy {
    /// The policy allowing exactly `scripts` (inline `<script>` bodies, byte for byte) and the
    /// inline event handlers `handlers` (attribute values, as CSP's `'unsafe-hashes'` allows).
    pub fn new(scripts: &[&str], handlers: &[&str], private: bool) -> Arc<Self> {
        let hash = |source: &str| {
            let digest = sha2::Sha256::digest(source.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        let mut script_src: Vec<String> = scripts.iter().map(|script| hash(script)).collect();
        if !handlers.is_empty() {
            script_src.push("'unsafe-hashes'".to_owned());
            script_src.extend(handlers.iter().map(|handler| hash(handler)));
        }
        let script_src = if script_src.is_empty() {
            "'none'".to_owned()
        } else {
            script_src.join(" ")
        };
        let policy = format!(
            "default-src 'none'; script-src {script_src}; style-src 'self' 'unsafe-inline'; \
             img-src 'self' https:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
             frame-ancestors 'none'"
        );
        Arc::new(Self {
            policy: HeaderValue::from_str(&policy).expect("a policy is visible ASCII"),
            private,
        })
    }

    /// The `Content-Security-Policy` header's value, for a handler that sets it itself.
    pub fn header_value(&self) -> HeaderValue {
        self.policy.clone()
    }
}

/// Middleware: gives every HTML answer of a surface its policy (and `no-store` when the
/// surface's pages are private), unless the handler chose its own.
pub async fn page_policy(
    State(policy): State<Arc<PagePolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if is_html {
        let headers = response.headers_mut();
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(policy.policy.clone());
        if policy.private {
            headers
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("no-store"));
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
            .route(
                "/cookies",
                get(|| async {
                    (
                        axum::response::AppendHeaders([
                            (header::SET_COOKIE, "a=1; HttpOnly"),
                            (header::SET_COOKIE, "b=2; Secure"),
                        ]),
                        "cookies",
                    )
                }),
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
        let framed = app.clone().oneshot(get("/framed")).await.expect("answers");
        assert_eq!(framed.headers()[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert!(
            !page
                .headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY)
        );
        let mut over_https = get("/");
        over_https
            .headers_mut()
            .insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let secure = app.clone().oneshot(over_https).await.expect("answers");
        assert_eq!(
            secure.headers()[header::STRICT_TRANSPORT_SECURITY],
            STRICT_TRANSPORT_SECURITY
        );
        let cookies = |response: &Response| -> Vec<String> {
            response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|value| value.to_str().expect("ascii").to_owned())
                .collect()
        };
        let plain = app.clone().oneshot(get("/cookies")).await.expect("answers");
        assert_eq!(cookies(&plain), ["a=1; HttpOnly", "b=2; Secure"]);
        let mut over_https = get("/cookies");
        over_https
            .headers_mut()
            .insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let secure = app.oneshot(over_https).await.expect("answers");
        assert_eq!(cookies(&secure), ["a=1; HttpOnly; Secure", "b=2; Secure"]);
    }

    #[tokio::test]
    async fn html_answers_get_the_policy_with_script_hashes_and_json_answers_do_not() {
        let script = "alert(1)";
        let policy = PagePolicy::new(&[script], &["return confirm('sure?')"], true);
        let app = Router::new()
            .route("/", get(|| async { axum::response::Html("<p>page</p>") }))
            .route("/json", get(|| async { axum::Json(1) }))
            .layer(axum::middleware::from_fn_with_state(policy, page_policy));
        let get = |path: &str| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("a request")
        };
        let page = app.clone().oneshot(get("/")).await.expect("answers");
        let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        // The SHA-256 of "alert(1)", as browsers compute it.
        assert!(
            csp.contains("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"),
            "{csp}"
        );
        assert!(csp.contains("'unsafe-hashes'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
        let json = app.oneshot(get("/json")).await.expect("answers");
        assert!(!json.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(!json.headers().contains_key(header::CACHE_CONTROL));
    }

    #[test]
    fn only_https_as_the_first_forwarded_protocol_counts() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-proto", HeaderValue::from_static(value));
            reached_over_https(&headers)
        };
        assert!(with("https"));
        assert!(with("HTTPS, http"));
        assert!(!with("http"));
        assert!(!with("http, https"));
        assert!(!reached_over_https(&HeaderMap::new()));
    }
}
