//! The first slice: signup → provisioning → a tenant serving from its own database, and every
//! way a signup can be refused.

use control_plane::model::TenantStatus;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{TestApp, error_code, signup_body, superuser_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_provisions_a_database_that_serves_the_tenant() {
    let app = TestApp::spawn().await;

    let health = app.apex_get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let page = app.apex_get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    // Every response carries the default security headers.
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["referrer-policy"], "same-origin");
    let policy = page
        .headers()
        .get(reqwest::header::CONTENT_SECURITY_POLICY)
        .map(|value| value.to_str().unwrap().to_owned());
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<form") && html.contains("/api/v1/signups"),
        "the apex serves the signup form"
    );
    // The form is driven by its inline script: the page's own policy must let it run.
    assert!(crate::csp::assert_inline_code_allowed(policy.as_deref(), &html) > 0);

    let accepted = app.signup("acme").await;
    assert_eq!(accepted.subdomain, "acme");
    assert_eq!(accepted.status, TenantStatus::Provisioning);
    // The status URL names the tenant and carries the signup's landing key.
    assert!(
        accepted
            .status_url
            .starts_with(&format!("/api/v1/signups/{}?key=", accepted.tenant_id)),
        "{}",
        accepted.status_url
    );

    let status = app.wait_provisioned(&accepted).await;
    assert_eq!(status.status, TenantStatus::Active, "{status:?}");
    assert_eq!(status.schema_version, Some(tenant_schema::latest_version()));
    assert_eq!(status.step.as_deref(), Some("activated"));
    let tenant_url = status.tenant_url.expect("an active tenant has a URL");
    assert_eq!(
        tenant_url,
        format!("http://acme.localhost:{}/", app.address.port())
    );

    // The tenant's subdomain answers from the tenant's own database.
    let response = app.tenant_get("acme", "/api/v1/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"tenant": "acme", "schema_version": tenant_schema::latest_version()})
    );

    // Prove the version is read from the tenant database: change it there and ask again.
    let record = app.store.tenant_by_slug("acme").await.unwrap().unwrap();
    let database = record.database_name.clone().unwrap();
    let tenant_db = superuser_client(&database).await;
    tenant_db
        .batch_execute("INSERT INTO silo_schema_history (version, name, applied_on, checksum) VALUES (99, 'probe', 'now', '0')")
        .await
        .unwrap();
    let body: serde_json::Value = app
        .tenant_get("acme", "/api/v1/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["schema_version"], 99);

    // The admin was seeded with an argon2 hash, and the control plane forgot the hash.
    let admin = tenant_db
        .query_one("SELECT email, role, password_hash FROM users", &[])
        .await
        .unwrap();
    assert_eq!(admin.get::<_, String>(0), "owner@acme.test");
    assert_eq!(admin.get::<_, String>(1), "owner");
    let hash: String = admin.get(2);
    assert!(hash.starts_with("$argon2id$"));
    assert!(control_plane::passwords::verify(
        &"violet tram oyster gravel".to_owned().into(),
        &hash
    ));
    assert!(record.pending_admin_password_hash.is_none());
    // The database was copied from the host's template, and every object in it now belongs to
    // the tenant's own role (none to the template owner).
    let foreign_owned: i64 = tenant_db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace \
                     AND relowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)) \
                  + (SELECT count(*) FROM pg_class WHERE relowner = \
                     (SELECT oid FROM pg_roles WHERE rolname = 'silo_template_owner'))",
            &[&record.role_name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(foreign_owned, 0, "every table belongs to the tenant role");
    let control = app.control_plane().await;
    let templates: i64 = control
        .query_one("SELECT count(*) FROM host_templates", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(templates, 1, "one template was built for the host");
    // Every step was recorded.
    let steps: Vec<String> = control
        .query("SELECT step FROM provisioning_events WHERE tenant_id = $1 AND outcome = 'succeeded' ORDER BY id", &[&record.id])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        steps,
        [
            "placed",
            "role_created",
            "database_created",
            "migrated",
            "admin_seeded",
            "activated"
        ]
    );
    drop(tenant_db);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signups_get_a_clear_error_and_change_nothing() {
    let app = TestApp::spawn_with(crate::harness::TestOptions {
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.signup("taken").await;
    let control = app.control_plane().await;
    let count = || async {
        let tenants: i64 = control
            .query_one("SELECT count(*) FROM tenants", &[])
            .await
            .unwrap()
            .get(0);
        let jobs: i64 = control
            .query_one("SELECT count(*) FROM apalis.jobs", &[])
            .await
            .unwrap()
            .get(0);
        (tenants, jobs)
    };
    let before = count().await;
    assert_eq!(before, (1, 1));

    let with = |field: &str, value: serde_json::Value| {
        let mut body = signup_body("fresh");
        body[field] = value;
        body
    };
    let cases: Vec<(serde_json::Value, StatusCode, &str)> = vec![
        (
            with("subdomain", json!("ab")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_subdomain",
        ),
        (
            with("subdomain", json!("-acme")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_subdomain",
        ),
        (
            with("subdomain", json!("ac.me")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_subdomain",
        ),
        (
            with("subdomain", json!("a".repeat(64))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_subdomain",
        ),
        (
            with("subdomain", json!("www")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_subdomain",
        ),
        (
            with("subdomain", json!("admin")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_subdomain",
        ),
        (
            with("subdomain", json!("taken")),
            StatusCode::CONFLICT,
            "subdomain_taken",
        ),
        (
            with("subdomain", json!("TAKEN")),
            StatusCode::CONFLICT,
            "subdomain_taken",
        ),
        (
            with("admin_email", json!("nope")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
        ),
        (
            with("admin_password", json!("short")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
        ),
        (
            with("company_name", json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_company_name",
        ),
        (
            with("subdomain", json!(42)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"company_name": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (body, expected_status, expected_code) in cases {
        let got = error_code(app.signup_raw(&body).await).await;
        assert_eq!(
            got,
            (expected_status, expected_code.to_owned()),
            "body {body}"
        );
    }
    let malformed = app
        .request(reqwest::Method::POST, &app.apex_host(), "/api/v1/signups")
        .header("content-type", "application/json")
        .body("{\"company_name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(malformed).await,
        (StatusCode::BAD_REQUEST, "malformed_json".to_owned())
    );
    let not_json = app
        .request(reqwest::Method::POST, &app.apex_host(), "/api/v1/signups")
        .body("company_name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(not_json).await.1, "unsupported_media_type");
    let unknown = app
        .apex_get(&format!("/api/v1/signups/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        error_code(unknown).await,
        (StatusCode::NOT_FOUND, "signup_not_found".to_owned())
    );

    assert_eq!(count().await, before, "refused signups changed nothing");
    drop(control);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_signups_for_one_subdomain_make_exactly_one_tenant() {
    let app = TestApp::spawn_with(crate::harness::TestOptions {
        run_workers: false,
        ..Default::default()
    })
    .await;
    let body = signup_body("contested");
    let attempts = (0..12).map(|_| app.signup_raw(&body));
    let responses = futures::future::join_all(attempts).await;
    let statuses: Vec<StatusCode> = responses.iter().map(reqwest::Response::status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        11,
        "{statuses:?}"
    );
    let control = app.control_plane().await;
    let tenants: i64 = control
        .query_one("SELECT count(*) FROM tenants WHERE slug = 'contested'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenants, 1);
    let jobs: i64 = control
        .query_one("SELECT count(*) FROM apalis.jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 1, "one job for the one tenant");
    drop(control);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_from_one_address_are_rate_limited() {
    let app = TestApp::spawn_with(crate::harness::TestOptions {
        run_workers: false,
        signups_per_minute: Some(3),
        ..Default::default()
    })
    .await;
    for slug in ["first", "second", "third"] {
        app.signup(slug).await;
    }
    let limited = app.signup_raw(&signup_body("fourth")).await;
    let retry_after: u32 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        error_code(limited).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_owned())
    );
    assert!(
        app.store.tenant_by_slug("fourth").await.unwrap().is_none(),
        "a limited signup stores nothing"
    );
    app.finish().await;
}
