//! Usage metering: requests counted per tenant in the router and flushed in batches (nothing is
//! written per request), database size and counts sampled by the worker job, shown to the
//! tenant's owner and to super-admins.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, TestOptions, error_code, superuser_client};

fn flush_often(settings: &mut control_plane::Settings) {
    settings.usage.flush_interval = Duration::from_millis(200);
}

fn never_flush(settings: &mut control_plane::Settings) {
    settings.usage.flush_interval = Duration::from_secs(3600);
}

async fn requests_today(app: &TestApp, tenant: Uuid) -> i64 {
    app.store
        .tenant_usage(tenant, 30)
        .await
        .unwrap()
        .requests_today
}

/// Waits (≤ 5 s) until the control plane holds `expected` requests for today.
async fn wait_requests(app: &TestApp, tenant: Uuid, expected: i64) {
    let started = Instant::now();
    loop {
        let got = requests_today(app, tenant).await;
        if got == expected {
            return;
        }
        assert!(
            got < expected && started.elapsed() < Duration::from_secs(5),
            "requests today: {got}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn hit(app: &TestApp, slug: &str, times: usize) {
    for _ in 0..times {
        assert_eq!(
            app.tenant_get(slug, "/api/v1/health").await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_per_tenant_and_flushed_in_batches() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(flush_often),
        ..TestOptions::default()
    })
    .await;
    let first = app.active_tenant("metered").await;
    let second = app.active_tenant("unmetered").await;
    hit(&app, "metered", 7).await;
    hit(&app, "unmetered", 3).await;
    wait_requests(&app, first.tenant_id, 7).await;
    wait_requests(&app, second.tenant_id, 3).await;
    // Later flushes add to the day's total rather than replace it.
    hit(&app, "metered", 2).await;
    wait_requests(&app, first.tenant_id, 9).await;
    assert_eq!(requests_today(&app, second.tenant_id).await, 3);

    // The owner sees it with usage against the plan's limits; the super-admin too.
    let token = crate::session::Session::owner(&app, "metered").await.token;
    let usage: Value = app
        .request(Method::GET, &app.tenant_host("metered"), "/api/v1/usage")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The sign-in itself was a request too (and this one is counted after it answers).
    assert!(usage["requests_today"].as_i64().unwrap() >= 9, "{usage}");
    assert_eq!(usage["limits"]["users"], json!({"used": 1, "limit": 5}));
    assert!(usage["requests"][0]["day"].is_string(), "{usage}");
    let unauthenticated = app.tenant_get("metered", "/api/v1/usage").await;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    let admin_token = crate::admin::admin_token(&app).await;
    let admin_view: Value = crate::admin::admin_call(
        &app,
        Method::GET,
        "/api/v1/admin/tenants/unmetered/usage",
        &admin_token,
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(admin_view["requests_today"], 3);
    let bad = crate::admin::admin_call(
        &app,
        Method::GET,
        "/api/v1/admin/tenants/unmetered/usage?days=0",
        &admin_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        error_code(bad).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed".to_owned()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_writes_to_the_control_plane_until_a_flush() {
    let mut app = TestApp::spawn_with(TestOptions {
        configure: Some(never_flush),
        ..TestOptions::default()
    })
    .await;
    let tenant = app.active_tenant("batched").await;
    hit(&app, "batched", 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(requests_today(&app, tenant.tenant_id).await, 0);
    // Stopping the app flushes what was counted: nothing is lost on shutdown.
    app.stop().await;
    assert_eq!(
        app.store
            .tenant_usage(tenant.tenant_id, 1)
            .await
            .unwrap()
            .requests_today,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_records_database_size_and_counts() {
    let app = TestApp::spawn().await;
    let tenant = app.active_tenant("sampled").await;
    let sampled = provisioner::usage::sample_all(&app.store, &app.keyring)
        .await
        .unwrap();
    assert!(sampled >= 1);
    let sample = app
        .store
        .tenant_usage(tenant.tenant_id, 30)
        .await
        .unwrap()
        .sample
        .expect("a sample was recorded");
    // The truth, read as superuser from the tenant's own database.
    let record = app.store.tenant(tenant.tenant_id).await.unwrap();
    let database = record.database_name.unwrap();
    let client = superuser_client(&database).await;
    let size: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .unwrap()
        .get(0);
    let users: i64 = client
        .query_one("SELECT count(*) FROM users WHERE is_active", &[])
        .await
        .unwrap()
        .get(0);
    let bytes = sample.database_bytes.unwrap();
    assert!(
        (bytes - size).abs() < 1024 * 1024 && bytes > 1024 * 1024,
        "sampled {bytes}, now {size}"
    );
    assert_eq!(sample.users.map(i64::from), Some(users));
    assert_eq!(sample.items, Some(0));
    // The super-admin's tenant view shows the sample.
    let token = crate::admin::admin_token(&app).await;
    let shown: Value =
        crate::admin::admin_call(&app, Method::GET, "/api/v1/admin/tenants/sampled", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(shown["usage"]["users"], json!(users));
    assert_eq!(shown["usage"]["database_bytes"], json!(bytes));
}
