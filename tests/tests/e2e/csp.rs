//! A page's own inline code must be allowed by its own Content-Security-Policy: a `<script>` body
//! or an `on…` handler the policy does not hash is silently not run by the browser (a
//! confirmation dialog that never asks, a live view that never updates).

use base64::Engine as _;
use sha2::Digest as _;

/// The HTML-decoded values of every inline event handler attribute (`onsubmit="…"`, …).
fn inline_handlers(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(at) = rest.find(" on") {
        rest = &rest[at + 3..];
        let name_end = rest
            .find(|c: char| !c.is_ascii_lowercase())
            .unwrap_or(rest.len());
        if name_end == 0 || !rest[name_end..].starts_with("=\"") {
            continue;
        }
        let value = &rest[name_end + 2..];
        let Some(end) = value.find('"') else { break };
        found.push(decode(&value[..end]));
        rest = &value[end..];
    }
    found
}

/// The bodies of every `<script>` without `src`.
fn inline_scripts(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(at) = rest.find("<script") {
        rest = &rest[at..];
        let Some(tag_end) = rest.find('>') else { break };
        let tag = &rest[..tag_end];
        let body = &rest[tag_end + 1..];
        let Some(end) = body.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") {
            found.push(body[..end].to_owned());
        }
        rest = &body[end..];
    }
    found
}

fn decode(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn source_hash(source: &str) -> String {
    let digest = sha2::Sha256::digest(source.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Panics unless every inline script and handler on `page` is allowed by `policy`; returns how
/// many there were, so a caller can also insist the page has some.
pub fn assert_inline_code_allowed(policy: Option<&str>, page: &str) -> usize {
    let scripts = inline_scripts(page);
    let handlers = inline_handlers(page);
    if scripts.is_empty() && handlers.is_empty() {
        return 0;
    }
    let policy = policy.unwrap_or_else(|| panic!("a page with inline code has no CSP: {page}"));
    for script in &scripts {
        assert!(
            policy.contains(&source_hash(script)),
            "the CSP {policy:?} does not allow the inline script {script:?}"
        );
    }
    if !handlers.is_empty() {
        assert!(
            policy.contains("'unsafe-hashes'"),
            "handlers {handlers:?} need 'unsafe-hashes' in {policy:?}"
        );
    }
    for handler in &handlers {
        assert!(
            policy.contains(&source_hash(handler)),
            "the CSP {policy:?} does not allow the inline handler {handler:?}"
        );
    }
    scripts.len() + handlers.len()
}

#[test]
fn an_unhashed_handler_or_script_is_caught() {
    let page = r#"<form onsubmit="return confirm(&#39;Go?&#39;)"><script>live()</script>"#;
    let both = format!(
        "script-src 'self' {} 'unsafe-hashes' {}",
        source_hash("live()"),
        source_hash("return confirm('Go?')")
    );
    assert_eq!(assert_inline_code_allowed(Some(&both), page), 2);
    let only_script = format!("script-src 'self' {}", source_hash("live()"));
    assert!(
        std::panic::catch_unwind(|| assert_inline_code_allowed(Some(&only_script), page)).is_err()
    );
    assert!(std::panic::catch_unwind(|| assert_inline_code_allowed(None, page)).is_err());
    assert_eq!(assert_inline_code_allowed(None, "<p>no inline code</p>"), 0);
}
