//! `/api/openapi.json` matches the server: every documented operation is routed on its host,
//! and whatever it answers — without credentials, and for reads with them — is a documented
//! status whose error code is one the document lists for that status.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestApp;

fn sample_path(path: &str, slug: &str) -> String {
    path.replace("{tenant_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{slug}", slug)
        .replace("{id}", "1")
        .replace("{domain}", "shop.example.com")
        .replace("{name}", "shipping")
        .replace("{module}", "reports")
}

/// Checks one answer against the operation's documented responses; returns the status.
async fn check(operation: &Value, label: &str, response: reqwest::Response) -> StatusCode {
    let status = response.status();
    let documented = &operation["responses"][status.as_str()];
    let text = response.text().await.unwrap();
    assert!(
        documented.is_object(),
        "{label} answered {status}, which the document does not list: {text}"
    );
    if !status.is_success() {
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{label} answered {status} without a JSON error: {text}"));
        let code = body["error"]["code"].as_str().unwrap_or_default();
        let description = documented["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(code) && !code.is_empty(),
            "{label} answered {status} `{code}`, documented as `{description}`"
        );
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_as_documented() {
    let app = TestApp::spawn().await;
    app.active_tenant("documented").await;
    let response = app.apex_get("/api/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() > 40, "{} paths", paths.len());
    // The error codes the document knows include the ones clients act on.
    let codes = document["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    for code in [
        "tenant_suspended",
        "module_not_enabled",
        "plan_limit_reached",
        "rate_limited",
        "invalid_transition",
    ] {
        assert!(codes.contains(&json!(code)), "{code}");
    }

    let admin_token = crate::admin::admin_token(&app).await;
    let tenant_token = crate::session::Session::owner(&app, "documented")
        .await
        .token;

    let mut checked = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let tenant_side = operation["tags"][0] == "tenant";
            let host = if tenant_side {
                app.tenant_host("documented")
            } else {
                app.apex_host()
            };
            let url = sample_path(path, "documented");
            let label = format!("{method} {path}");
            // Without credentials (and with an empty JSON object where a body is taken).
            let mut request = app.request(method.clone(), &host, &url);
            if operation["requestBody"].is_object() {
                request = request.json(&json!({}));
            }
            check(operation, &label, request.send().await.unwrap()).await;
            // Reads again with the credentials their side takes.
            let secured = operation["security"]
                .as_array()
                .and_then(|s| s.first())
                .cloned();
            if method == Method::GET
                && let Some(security) = secured
            {
                let token = if security.get("admin_session").is_some() {
                    &admin_token
                } else {
                    &tenant_token
                };
                let response = app
                    .request(Method::GET, &host, &url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let status = check(operation, &format!("{label} (signed in)"), response).await;
                assert_ne!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{label} refused its own credentials"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked} operations checked");
}
