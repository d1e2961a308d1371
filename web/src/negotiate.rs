//! Content negotiation for errors: a browser that asked for a page (`Accept: text/html`) gets
//! an HTML page saying what happened and what to do; every other client gets the same JSON
//! `{"error": {…}}` as always. One middleware for every surface, so no handler renders its own
//! error page and no error escapes as raw JSON into a browser tab.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse as _, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{ApiError, ErrorCode};

/// The error an [`ApiError`] response carries in its extensions, for [`html_errors`].
#[derive(Debug, Clone)]
pub(crate) struct ErrorShown {
    pub code: ErrorCode,
    pub message: String,
}

/// True when the client asked for HTML: a browser navigating (`text/html` in `Accept`, ahead of
/// any JSON it also accepts). `fetch()` and API clients send `*/*` or `application/json`.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let position = |wanted: &str| {
        accept
            .split(',')
            .position(|part| part.trim().split(';').next() == Some(wanted))
    };
    match (position("text/html"), position("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Middleware: turns an [`ApiError`] answer into an HTML page when the request wants HTML. The
/// status and `Retry-After` stay; the body becomes the message with a way onward.
pub async fn html_errors(request: Request, next: Next) -> Response {
    let wants_html = wants_html(request.headers());
    let mut response = next.run(request).await;
    if !wants_html {
        return response;
    }
    let Some(shown) = response.extensions_mut().remove::<ErrorShown>() else {
        return response;
    };
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let brand = response.extensions_mut().remove::<PageBrand>();
    let mut page = (
        status,
        Html(error_page(status, &shown, brand.as_ref()).into_string()),
    )
        .into_response();
    if let Some(seconds) = retry_after {
        page.headers_mut().insert(header::RETRY_AFTER, seconds);
    }
    let headers = page.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // An error page runs no script and loads nothing but a workspace's logo: its style is inline.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https:; \
             base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    page
}

/// The workspace an error page speaks for (its name, colour and logo), put in a response's
/// extensions by the surface that knows it: a tenant's visitors see their workspace's page, not
/// a stranger's, even when it is suspended or gone.
#[derive(Debug, Clone)]
pub struct PageBrand {
    pub name: String,
    /// `#rrggbb`; anything else falls back to the default colour.
    pub color: String,
    /// An https URL (as branding stores it).
    pub logo_url: Option<String>,
}

/// The colour as CSS when it is exactly `#rrggbb`, so nothing else reaches the style.
fn safe_color(color: &str) -> Option<&str> {
    let hex = color.strip_prefix('#')?;
    (hex.len() == 6 && hex.bytes().all(|byte| byte.is_ascii_hexdigit())).then_some(color)
}

/// What a person can do next, by error.
fn way_onward(code: ErrorCode) -> (&'static str, &'static str) {
    match code {
        ErrorCode::TenantProvisioning => ("Reload", ""),
        ErrorCode::Unauthenticated | ErrorCode::InvalidCredentials => ("Sign in", "/"),
        _ => ("Go to the start page", "/"),
    }
}

/// A title a person understands, by error.
fn title(code: ErrorCode, status: StatusCode) -> &'static str {
    match code {
        ErrorCode::RouteNotFound | ErrorCode::NotFound => "Page not found",
        ErrorCode::TenantNotFound => "No workspace here",
        ErrorCode::TenantSuspended => "This workspace is suspended",
        ErrorCode::TenantCancelled => "This workspace was closed",
        ErrorCode::TenantProvisioning => "This workspace is being set up",
        ErrorCode::TenantUnavailable | ErrorCode::Capacity | ErrorCode::Unavailable => {
            "Temporarily unavailable"
        }
        ErrorCode::RateLimited => "Too many requests",
        ErrorCode::CrossSiteRequest => "Request refused",
        _ if status.is_server_error() => "Something went wrong",
        _ => "This did not work",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f5f6f8;\
color:#1d2330}main{max-width:32rem;margin:12vh auto;box-sizing:border-box;width:calc(100% - 2rem);padding:1.5rem;background:#fff;\
border-radius:8px;box-shadow:0 1px 3px #0002}h1{font-size:1.4rem;margin-top:0}\
a{color:#1a4fd6}code{color:#4a5263}";

fn error_page(status: StatusCode, shown: &ErrorShown, brand: Option<&PageBrand>) -> Markup {
    let (onward, href) = way_onward(shown.code);
    let color = brand.and_then(|brand| safe_color(&brand.color));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title(shown.code, status)) }
                style { (PreEscaped(STYLE)) }
                @if let Some(color) = color {
                    style { (PreEscaped(format!("main{{border-top:6px solid {color}}}a{{color:{color}}}"))) }
                }
            }
            body {
                main {
                    @if let Some(brand) = brand {
                        p class="brand" id="brand" {
                            @if let Some(logo) = &brand.logo_url {
                                img src=(logo) alt="" height="28";
                            }
                            strong { (brand.name) }
                        }
                    }
                    h1 { (title(shown.code, status)) }
                    p id="error-message" { (shown.message) }
                    p { a href=(href) { (onward) } }
                    p { small { "Error " code { (shown.code.as_str()) } " · HTTP " (status.as_u16()) } }
                }
            }
        }
    }
}

impl ApiError {
    /// What [`html_errors`] needs to render this error as a page.
    pub(crate) fn shown(&self) -> ErrorShown {
        ErrorShown {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt as _;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).expect("ascii"));
        headers
    }

    #[test]
    fn browsers_want_html_and_api_clients_do_not() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_html(&accept(chromium)));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("application/json, text/html")));
        assert!(wants_html(&accept("text/html, application/json")));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn an_error_is_a_page_for_a_browser_and_json_for_everyone_else() {
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    ApiError::new(ErrorCode::TenantProvisioning, "Setting up <soon>.")
                        .retry_after(3)
                }),
            )
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(html_errors));
        let request = |path: &str, accept: &str| {
            axum::http::Request::get(path)
                .header(header::ACCEPT, accept)
                .body(axum::body::Body::empty())
                .expect("a request")
        };
        let page = app
            .clone()
            .oneshot(request("/", "text/html"))
            .await
            .expect("answers");
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.headers()[header::RETRY_AFTER], "3");
        assert!(
            page.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = axum::body::to_bytes(page.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("Setting up &lt;soon&gt;."), "{body}");
        assert!(body.contains("tenant_provisioning"), "{body}");

        let json = app
            .clone()
            .oneshot(request("/", "application/json"))
            .await
            .expect("answers");
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");

        let fine = app
            .oneshot(request("/fine", "text/html"))
            .await
            .expect("answers");
        let body = axum::body::to_bytes(fine.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(&body[..], b"fine");
    }

    #[test]
    fn a_branded_error_page_shows_the_workspace_and_only_a_safe_colour() {
        let shown = ErrorShown {
            code: ErrorCode::TenantSuspended,
            message: "Suspended.".to_owned(),
        };
        let brand = PageBrand {
            name: "Acme <Pharmacy>".to_owned(),
            color: "#12ab9f".to_owned(),
            logo_url: Some("https://cdn.example/logo.png".to_owned()),
        };
        let page = error_page(StatusCode::FORBIDDEN, &shown, Some(&brand)).into_string();
        assert!(page.contains("Acme &lt;Pharmacy&gt;"), "{page}");
        assert!(
            page.contains(r#"src="https://cdn.example/logo.png""#),
            "{page}"
        );
        assert!(page.contains("border-top:6px solid #12ab9f"), "{page}");

        let hostile = PageBrand {
            color: "red}body{display:none".to_owned(),
            logo_url: None,
            ..brand
        };
        let page = error_page(StatusCode::FORBIDDEN, &shown, Some(&hostile)).into_string();
        assert!(!page.contains("display:none"), "{page}");
        assert!(!page.contains("<img"), "{page}");

        let plain = error_page(StatusCode::FORBIDDEN, &shown, None).into_string();
        assert!(!plain.contains(r#"id="brand""#), "{plain}");
    }
}
