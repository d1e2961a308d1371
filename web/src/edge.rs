//! The HTTP edge's checks, run once around every request before any router, extractor or
//! handler: the whole body is read first (at most [`EdgeLimits::max_body_bytes`], within
//! [`EdgeLimits::body_read_timeout`]), text PostgreSQL refuses (a NUL character) is refused in
//! the path, the query and JSON or form bodies, and the request as a whole gets
//! [`EdgeLimits::request_timeout`].
//!
//! Invariant: no handler — and so no extractor that takes a tenant connection or a hashing
//! slot — runs before its request's body has fully arrived; a client sending slowly holds a
//! socket until the body-read timeout, never a database connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, ErrorCode};

/// How large and how slow a request may be.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// The largest body accepted (413 `payload_too_large` beyond).
    pub max_body_bytes: usize,
    /// Routes that take files, with their own larger limit.
    pub uploads: Option<Arc<Uploads>>,
    /// How long the whole body may take to arrive (408 `request_timeout` after).
    pub body_read_timeout: Duration,
    /// How long a request may take from its headers to its answer (503 `timed_out` after).
    pub request_timeout: Duration,
}

/// Routes that take a file (a POST to one of `paths`) may send up to `max_bytes`; since the edge
/// holds a body in memory until it is whole, at most `at_once` such large bodies are read at a
/// time, and another is refused at once (503 `busy`, `Retry-After`) instead of queueing memory.
#[derive(Debug)]
pub struct Uploads {
    pub paths: &'static [&'static str],
    pub max_bytes: usize,
    pub at_once: Arc<Semaphore>,
}

impl Uploads {
    pub fn new(paths: &'static [&'static str], max_bytes: usize, at_once: usize) -> Arc<Self> {
        Arc::new(Self {
            paths,
            max_bytes,
            at_once: Arc::new(Semaphore::new(at_once)),
        })
    }
}

/// Axum's own limit for `Json` and `Bytes` extractors: nothing larger is accepted anyway.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The problem named for a field holding a NUL character.
const NUL_PROBLEM: &str = "must not contain a NUL character (\\u0000 or %00)";

/// Middleware: see the module's documentation.
pub async fn guard_request(
    State(limits): State<EdgeLimits>,
    request: Request,
    next: Next,
) -> Response {
    let started = tokio::time::Instant::now();
    let (parts, body) = request.into_parts();
    if let Some(field) = nul_in_uri(&parts.uri) {
        return nul_refusal(field).into_response();
    }
    // A file upload's larger limit, while one of the few large-body permits is free.
    let (max_bytes, _upload_permit) = match upload_limit(&limits, &parts) {
        Ok(limit) => limit,
        Err(busy) => return busy.into_response(),
    };
    let bytes = match read_body(body, &parts.headers, &limits, max_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    if let Some(field) = nul_in_body(&parts.headers, &bytes) {
        return nul_refusal(field).into_response();
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    match tokio::time::timeout_at(started + limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::TimedOut,
            "The request took longer than the server allows. Try again; if it keeps happening, ask for less at once.",
        )
        .retry_after(1)
        .into_response(),
    }
}

/// The body limit for this request, and the upload permit it holds while its body is read.
fn upload_limit(
    limits: &EdgeLimits,
    parts: &axum::http::request::Parts,
) -> Result<(usize, Option<OwnedSemaphorePermit>), ApiError> {
    let Some(uploads) = limits.uploads.as_ref().filter(|uploads| {
        parts.method == axum::http::Method::POST && uploads.paths.contains(&parts.uri.path())
    }) else {
        return Ok((limits.max_body_bytes, None));
    };
    match uploads.at_once.clone().try_acquire_owned() {
        Ok(permit) => Ok((uploads.max_bytes.max(limits.max_body_bytes), Some(permit))),
        Err(_) => Err(ApiError::new(
            ErrorCode::Busy,
            "Other files are being uploaded right now. Try again in a moment.",
        )
        .retry_after(2)),
    }
}

fn payload_too_large(max_bytes: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "The request body is larger than the {max_bytes} bytes this server accepts. Send less at once."
        ),
    )
}

/// The whole body, refused early when its declared length is already too large.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limits: &EdgeLimits,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return Err(payload_too_large(max_bytes));
    }
    let limited = http_body_util::Limited::new(body, max_bytes);
    match tokio::time::timeout(limits.body_read_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "The request body did not arrive within {} seconds. Send it at once.",
                limits.body_read_timeout.as_secs_f32()
            ),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(payload_too_large(max_bytes))
        }
        Ok(Err(_)) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "The request body could not be read to its end. Send it again.",
        )),
    }
}

fn nul_refusal(field: String) -> ApiError {
    ApiError::validation(BTreeMap::from([(field, NUL_PROBLEM.to_owned())]))
}

/// `path` if the decoded path holds a NUL, else the first query parameter whose name or value
/// does (`query` if its name is unreadable).
fn nul_in_uri(uri: &axum::http::Uri) -> Option<String> {
    if uri.path().contains("%00") {
        return Some("path".to_owned());
    }
    let query = uri.query().filter(|query| query.contains("%00"))?;
    Some(nul_in_form(query.as_bytes()).unwrap_or_else(|| "query".to_owned()))
}

/// The first field of an `application/x-www-form-urlencoded` text holding a NUL.
fn nul_in_form(text: &[u8]) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(text).ok()?;
    pairs
        .into_iter()
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        .map(|(name, _)| printable(&name))
}

/// The field of a JSON or form body holding a NUL, if any. Other bodies (and JSON that does not
/// parse, which its extractor refuses) pass.
fn nul_in_body(headers: &HeaderMap, bytes: &Bytes) -> Option<String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence == "application/x-www-form-urlencoded" {
        return bytes
            .windows(3)
            .any(|window| window == b"%00")
            .then(|| nul_in_form(bytes).unwrap_or_else(|| "body".to_owned()));
    }
    // JSON cannot carry a raw NUL inside a string, only the escape `\u0000`.
    if !(essence == "application/json" || essence.ends_with("+json"))
        || !bytes.windows(6).any(|window| window == b"\\u0000")
    {
        return None;
    }
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let mut path = String::new();
    nul_in_json(&value, &mut path).then(|| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path
        }
    })
}

/// Whether `value` holds a NUL in a string or a key; `path` is left naming where
/// (`lines[0].note`).
fn nul_in_json(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
            let length = path.len();
            path.push_str(&format!("[{index}]"));
            let found = nul_in_json(item, path);
            if !found {
                path.truncate(length);
            }
            found
        }),
        Value::Object(fields) => fields.iter().any(|(name, item)| {
            let length = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&printable(name));
            let found = name.contains('\0') || nul_in_json(item, path);
            if !found {
                path.truncate(length);
            }
            found
        }),
        _ => false,
    }
}

/// A field name as it can be shown: a NUL in it written as `\0`.
fn printable(name: &str) -> String {
    name.replace('\0', "\\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers
    }

    #[test]
    fn a_nul_is_found_and_named_wherever_it_is() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"name":"a\u0000b"}"#, Some("name")),
            (
                r#"{"lines":[{"note":"x"},{"note":"\u0000"}]}"#,
                Some("lines[1].note"),
            ),
            (r#"{"a\u0000":1}"#, Some("a\\0")),
            (r#""\u0000""#, Some("body")),
            (r#"{"name":"a\\u0000b"}"#, None),
            (r#"{"name":"plain"}"#, None),
            (r#"{"name":"\u0000""#, None),
        ];
        for (body, expected) in cases {
            let found = nul_in_body(&json_headers(), &Bytes::from(body.to_string()));
            assert_eq!(found.as_deref(), *expected, "{body}");
        }
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert_eq!(
            nul_in_body(&form, &Bytes::from_static(b"email=a%00b&password=x")).as_deref(),
            Some("email")
        );
        assert_eq!(nul_in_body(&form, &Bytes::from_static(b"email=a")), None);
    }

    #[test]
    fn a_nul_in_the_path_or_query_is_named() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/api/v1/items?q=a%00b", Some("q")),
            ("/api/v1/items/%00", Some("path")),
            ("/api/v1/items?q=plain&limit=5", None),
            ("/api/v1/items?%00=1", Some("\\0")),
        ];
        for (uri, expected) in cases {
            let uri: axum::http::Uri = uri.parse().unwrap();
            assert_eq!(nul_in_uri(&uri).as_deref(), *expected, "{uri}");
        }
    }
}
