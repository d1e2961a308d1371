//! Invariants 1 and 2: a Host names exactly one tenant, and a tenant's role reaches only its
//! own database.

use control_plane::model::TenantStatus;
use reqwest::StatusCode;

use crate::harness::{TestApp, connect, error_code, superuser_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_name_no_tenant_get_tenant_not_found() {
    let app = TestApp::spawn().await;
    app.active_tenant("site").await;
    let port = app.address.port();
    let not_found = [
        format!("nobody.localhost:{port}"),
        format!("evillocalhost:{port}"),
        format!("site.evillocalhost:{port}"),
        format!("a.site.localhost:{port}"),
        format!("site.localhost.evil.test:{port}"),
        format!("site..localhost:{port}"),
        format!("site.localhost:{port}:{port}"),
        "".to_owned(),
    ];
    for host in &not_found {
        let response = app
            .request(reqwest::Method::GET, host, "/api/v1/health")
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::NOT_FOUND, "tenant_not_found".to_owned()),
            "host {host:?}"
        );
    }
    // Case, a trailing dot and a missing port all still name the tenant.
    for host in [
        format!("SITE.LocalHost:{port}"),
        format!("site.localhost.:{port}"),
        "site.localhost".to_owned(),
    ] {
        let response = app
            .request(reqwest::Method::GET, &host, "/api/v1/health")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "host {host:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["tenant"], "site");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_reads_only_its_own_tenant_database() {
    let app = TestApp::spawn().await;
    app.active_tenant("alpha").await;
    app.active_tenant("beta").await;
    // Mark each tenant's database so a response shows which database it came from.
    for (slug, version) in [("alpha", 101), ("beta", 202)] {
        let record = app.store.tenant_by_slug(slug).await.unwrap().unwrap();
        let client = superuser_client(record.database_name.as_deref().unwrap()).await;
        client
            .execute(
                "INSERT INTO silo_schema_history (version, name, applied_on, checksum) VALUES ($1, 'marker', 'now', '0')",
                &[&version],
            )
            .await
            .unwrap();
    }
    for _ in 0..3 {
        for (slug, version) in [("alpha", 101), ("beta", 202)] {
            let body: serde_json::Value = app
                .tenant_get(slug, "/api/v1/health")
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(body["tenant"], slug);
            assert_eq!(
                body["schema_version"], version,
                "{slug} must be served from its own database"
            );
        }
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_role_reaches_only_its_own_database_and_is_not_privileged() {
    let app = TestApp::spawn().await;
    app.active_tenant("one").await;
    app.active_tenant("two").await;
    let one = app.store.tenant_by_slug("one").await.unwrap().unwrap();
    let two = app.store.tenant_by_slug("two").await.unwrap().unwrap();
    let one_url = app.tenant_url("one").await;

    // Its own database: yes.
    let own = connect(&one_url)
        .await
        .expect("a tenant connects to its own database");
    let row = own
        .query_one("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, false, false)
    );

    // Another tenant's database, the control plane, and the maintenance database: no.
    let url = secrecy::ExposeSecret::expose_secret(&one_url).to_owned();
    let own_db = one.database_name.clone().unwrap();
    for other in [
        two.database_name.clone().unwrap(),
        app.database.clone(),
        "postgres".to_owned(),
    ] {
        let other_url = secrecy::SecretString::from(url.replace(&own_db, &other));
        let error = connect(&other_url)
            .await
            .err()
            .unwrap_or_else(|| panic!("tenant one must not connect to {other}"));
        assert!(
            error.to_string().contains("permission denied") || error.as_db_error().is_some(),
            "{error}"
        );
    }

    // CONNECT is revoked from PUBLIC on tenant databases.
    let admin = superuser_client("postgres").await;
    let public_can_connect: bool = admin
        .query_one(
            "SELECT has_database_privilege('public', $1, 'CONNECT')",
            &[&own_db],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_can_connect);
    drop((own, admin));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_status_is_enforced_on_its_host() {
    let app = TestApp::spawn_with(crate::harness::TestOptions {
        run_workers: false,
        ..Default::default()
    })
    .await;
    // Without workers the tenant stays provisioning: 503 with Retry-After.
    let accepted = app.signup("waiting").await;
    let response = app.tenant_get("waiting", "/api/v1/health").await;
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant_provisioning".to_owned()
        )
    );
    app.store
        .set_status(accepted.tenant_id, TenantStatus::Suspended)
        .await
        .unwrap();
    // The router cached the tenant (for an hour in tests); the change reaches it by NOTIFY.
    app.wait_for_error("waiting", StatusCode::FORBIDDEN, "tenant_suspended")
        .await;
    app.finish().await;
}
