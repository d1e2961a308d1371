//! The router under pressure: a host's connection budget shared by more tenants than it has
//! connections (checked in `pg_stat_activity`), 503 `capacity` when it stays full, pooled
//! connections that carry nothing from one request to the next, a dead database host failing
//! only its own tenants (fast, behind a circuit breaker), and tenants served from the cache
//! while the control-plane database is down.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use control_plane::settings::Settings;
use reqwest::StatusCode;
use tenant_router::RouterState;

use crate::harness::{
    TestApp, TestOptions, cluster, error_code, private_cluster, restart_private_cluster,
    superuser_client,
};

/// The most router connections to `databases` seen in `pg_stat_activity` while `running` is
/// set (the provisioner's own, closing as the last tenant activates, are not the router's).
fn sample_connections(
    databases: Vec<String>,
    running: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<i64> {
    tokio::spawn(async move {
        let admin = superuser_client("postgres").await;
        let most = AtomicI64::new(0);
        while running.load(Ordering::Relaxed) {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = ANY($1) AND application_name = 'silo-router'",
                    &[&databases],
                )
                .await
                .unwrap();
            most.fetch_max(row.get(0), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        most.load(Ordering::Relaxed)
    })
}

async fn database_names(app: &TestApp, slugs: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for slug in slugs {
        let tenant = app.store.tenant_by_slug(slug).await.unwrap().unwrap();
        names.push(tenant.database_name.unwrap());
    }
    names
}

/// Three rounds of `per_tenant` health requests to every tenant through every router, each
/// round all at once; every answer must be `200`.
async fn health_rounds(routers: &[&TestApp], slugs: &[String], per_tenant: usize) {
    for _ in 0..3 {
        let mut requests = Vec::new();
        for slug in slugs {
            for app in routers {
                for _ in 0..per_tenant {
                    requests.push(app.tenant_get(slug, "/api/v1/health"));
                }
            }
        }
        for response in futures::future::join_all(requests).await {
            if response.status() != StatusCode::OK {
                panic!("{:?}", error_code(response).await);
            }
        }
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_tenants_than_the_budget_are_all_served_without_exceeding_it() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(|settings: &mut Settings| {
            settings.router.connection_budget = Some(3);
            settings.router.pool_max_size = 2;
            settings.router.budget_wait = Duration::from_secs(5);
        }),
        ..Default::default()
    })
    .await;
    let slugs: Vec<String> = (0..8).map(|i| format!("shop-{i}")).collect();
    for slug in &slugs {
        app.active_tenant(slug).await;
    }
    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_connections(database_names(&app, &slugs).await, running.clone());

    // Three rounds of every tenant at once, four requests each.
    health_rounds(&[&app], &slugs, 4).await;
    running.store(false, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(most >= 1, "the sampler saw the router's connections");
    assert!(
        most <= 3,
        "{most} connections to the tenant databases, budget 3"
    );

    let metrics = app.apex_get("/metrics").await.text().await.unwrap();
    assert_eq!(metric(&metrics, "silo_router_host_connection_budget{"), 3.0);
    assert!(metric(&metrics, "silo_router_host_connections{") <= 3.0);
    assert!(
        metric(&metrics, "silo_router_host_budget_waits{") >= 1.0,
        "tenants waited for the budget: {metrics}"
    );
    // Requests are counted by route template and status class, never by concrete path.
    assert!(
        metric(
            &metrics,
            "silo_router_requests_total{route=\"/api/v1/health\",class=\"2xx\"}"
        ) >= 96.0,
        "health requests counted under their route: {metrics}"
    );
    assert!(
        !metrics.contains("shop-"),
        "no per-tenant labels in the metrics"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_budget_answers_capacity_and_pooled_sessions_leak_nothing() {
    let app = TestApp::spawn().await;
    app.active_tenant("first").await;
    app.active_tenant("second").await;
    let mut settings = Settings::default().router;
    settings.connection_budget = Some(1);
    settings.pool_max_size = 1;
    settings.budget_wait = Duration::from_millis(300);
    let router = RouterState::new(
        app.store.clone(),
        app.keyring.clone(),
        settings,
        "localhost",
    );
    let first = router.resolve("first").await.unwrap();
    let second = router.resolve("second").await.unwrap();

    // The one connection is busy with "first": "second" waits, then gets 503 capacity.
    let held = router.connection(&first).await.unwrap();
    let started = Instant::now();
    let refused = router.connection(&second).await.unwrap_err();
    assert_eq!(refused.code.as_str(), "capacity");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Once it is idle, "second" takes it over (the idle one is closed for it).
    let pid: i32 = held
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    drop(held);
    let other = router.connection(&second).await.unwrap();
    let database: String = other
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(Some(database), first_database(&app).await);
    drop(other);

    // Session state does not survive into the next checkout of the same connection.
    let client = router.connection(&first).await.unwrap();
    let reused: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(reused, pid, "the first connection was closed to make room");
    client
        .batch_execute(
            "SET statement_timeout = '1234ms'; SET search_path = pg_catalog; \
             CREATE TEMP TABLE scratch (x int); \
             SELECT pg_advisory_lock(42);",
        )
        .await
        .unwrap();
    drop(client);
    let client = router.connection(&first).await.unwrap();
    let row = client
        .query_one(
            "SELECT pg_backend_pid(), current_setting('statement_timeout'), \
             current_setting('search_path'), to_regclass('pg_temp.scratch') IS NULL, \
             (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), reused, "the same connection, reset");
    assert_eq!(row.get::<_, String>(1), "0");
    assert_eq!(row.get::<_, String>(2), "\"$user\", public");
    assert!(row.get::<_, bool>(3), "the temp table is gone");
    assert_eq!(row.get::<_, i64>(4), 0, "the advisory lock is released");

    // A transaction left open, or aborted, is never handed on: the connection is replaced.
    client
        .batch_execute("BEGIN; INSERT INTO branches (code, name) VALUES ('LEAK', 'Leak')")
        .await
        .unwrap();
    drop(client);
    let client = router.connection(&first).await.unwrap();
    let row = client
        .query_one(
            "SELECT txid_current_if_assigned() IS NULL, \
             (SELECT count(*) FROM branches WHERE code = 'LEAK')",
            &[],
        )
        .await
        .unwrap();
    // The old transaction had written, so it had a transaction id; a fresh one has none yet.
    assert!(row.get::<_, bool>(0), "not inside the old transaction");
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "the open transaction was rolled back"
    );
    let _ = client.batch_execute("BEGIN; SELECT 1/0").await;
    drop(client);
    let client = router.connection(&first).await.unwrap();
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    drop(client);
    app.finish().await;
}

async fn first_database(app: &TestApp) -> Option<String> {
    app.store
        .tenant_by_slug("first")
        .await
        .unwrap()
        .unwrap()
        .database_name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_database_host_fails_only_its_tenants_fast() {
    let doomed = private_cluster("router-down", 50);
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(|settings: &mut Settings| {
            settings.router.breaker_cool_down = Duration::from_millis(700);
            settings.router.connect_timeout = Duration::from_secs(2);
        }),
        ..Default::default()
    })
    .await;
    // "remote" is placed on the doomed host (the most free capacity), "local" on the default.
    app.store
        .add_host(
            &app.keyring,
            "doomed",
            &doomed.superuser_url("postgres"),
            100_000,
            "test",
        )
        .await
        .unwrap();
    app.active_tenant("remote").await;
    app.store
        .set_host_status("doomed", "draining", "test")
        .await
        .unwrap();
    app.active_tenant("local").await;
    let remote = app.store.tenant_by_slug("remote").await.unwrap().unwrap();
    let doomed_id = app.store.host_by_name("doomed").await.unwrap().unwrap().id;
    assert_eq!(remote.host_id, Some(doomed_id));
    for slug in ["remote", "local"] {
        assert_eq!(
            app.tenant_get(slug, "/api/v1/health").await.status(),
            StatusCode::OK
        );
    }

    doomed.stop().unwrap();
    let mut answers = HashSet::new();
    let started = Instant::now();
    for _ in 0..6 {
        let (status, code) = error_code(app.tenant_get("remote", "/api/v1/health").await).await;
        answers.insert((status, code));
    }
    assert_eq!(
        answers,
        HashSet::from([(
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant_unavailable".to_owned()
        )])
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "failed fast: {:?}",
        started.elapsed()
    );
    // The other host's tenant does not notice.
    assert_eq!(
        app.tenant_get("local", "/api/v1/health").await.status(),
        StatusCode::OK
    );
    let metrics = app.apex_get("/metrics").await.text().await.unwrap();
    assert!(
        metric(
            &metrics,
            &format!("silo_router_host_breaker_trips{{host=\"{doomed_id}\"}}")
        ) >= 1.0,
        "{metrics}"
    );

    // Back up: after the cool-down its tenants are served again.
    let restarted = restart_private_cluster("router-down", 50).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if app.tenant_get("remote", "/api/v1/health").await.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the host came back but its tenant is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.finish().await;
    restarted.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_tenants_are_served_while_the_control_plane_is_down() {
    let control = private_cluster("router-control", 50);
    let mut app = TestApp::spawn_with(TestOptions {
        control_plane: Some(control),
        ..Default::default()
    })
    .await;
    // Tenants live on the shared cluster; the control plane's own server takes none.
    app.store
        .add_host(
            &app.keyring,
            "shared",
            &cluster().superuser_url("postgres"),
            100_000,
            "test",
        )
        .await
        .unwrap();
    app.store
        .set_host_status("local", "draining", "test")
        .await
        .unwrap();
    app.active_tenant("known").await;
    app.active_tenant("unseen").await;
    assert_eq!(
        app.tenant_get("known", "/api/v1/health").await.status(),
        StatusCode::OK
    );
    let databases: Vec<String> =
        database_names(&app, &["known".to_owned(), "unseen".to_owned()]).await;

    control.stop().unwrap();
    // The listener notices the loss and marks every entry stale; the known tenant is served
    // from its stale entry throughout.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.tenant_get("known", "/api/v1/health").await;
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            response.text().await.unwrap_or_default()
        );
        let metrics = app.apex_get("/metrics").await.text().await.unwrap();
        if metric(
            &metrics,
            "silo_router_tenant_lookups_total{result=\"stale\"}",
        ) >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never served from a stale entry: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, code) = error_code(app.tenant_get("unseen", "/api/v1/health").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );

    // Back up: the unseen tenant resolves again.
    let restarted = restart_private_cluster("router-control", 50).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.tenant_get("unseen", "/api/v1/health").await.status() != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the control plane came back but unseen is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
    let admin = superuser_client("postgres").await;
    for database in databases {
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
            ))
            .await
            .unwrap();
    }
    restarted.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_tenant_is_rate_limited_alone() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(|settings: &mut Settings| {
            settings.router.tenant_requests_per_second = 2;
        }),
        ..Default::default()
    })
    .await;
    app.active_tenant("noisy").await;
    app.active_tenant("quiet").await;
    let mut limited = None;
    for _ in 0..10 {
        let response = app.tenant_get("noisy", "/api/v1/health").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let limited = limited.expect("ten requests at once exceed a burst of four");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(
        error_code(limited).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_owned())
    );
    assert_eq!(
        app.tenant_get("quiet", "/api/v1/health").await.status(),
        StatusCode::OK
    );
    let metrics = app.apex_get("/metrics").await.text().await.unwrap();
    assert!(metric(&metrics, "silo_router_rate_limited_total") >= 1.0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_host_is_used_only_when_configured() {
    let untrusting = TestApp::spawn().await;
    untrusting.active_tenant("shop").await;
    let response = untrusting
        .request(
            reqwest::Method::GET,
            &untrusting.apex_host(),
            "/api/v1/health",
        )
        .header("x-forwarded-host", untrusting.tenant_host("shop"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "the apex answered, not the tenant"
    );
    untrusting.finish().await;

    let trusting = TestApp::spawn_with(TestOptions {
        configure: Some(|settings: &mut Settings| {
            settings.router.trust_forwarded_host = true;
            settings.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        }),
        ..Default::default()
    })
    .await;
    trusting.active_tenant("shop").await;
    let proxied = |forwarded: &str| {
        trusting
            .request(reqwest::Method::GET, "proxy.internal", "/api/v1/health")
            .header("x-forwarded-host", forwarded)
            .send()
    };
    // The proxy appends what it was asked for; what the client sent stands left of it.
    let response = proxied(&format!("{}, SHOP.localhost", trusting.apex_host()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["tenant"], "shop");
    let response = proxied("shop.evillocalhost").await.unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::NOT_FOUND, "tenant_not_found".to_owned())
    );
    trusting.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_on_one_control_plane_both_hear_of_every_change() {
    let first = TestApp::spawn().await;
    let mut second = TestApp::spawn_with(TestOptions {
        database: Some(first.database.clone()),
        keys: Some(first.keys.clone()),
        run_workers: false,
        ..Default::default()
    })
    .await;
    let accepted = first.active_tenant("shared").await;
    for app in [&first, &second] {
        assert_eq!(
            app.tenant_get("shared", "/api/v1/health").await.status(),
            StatusCode::OK
        );
    }
    // Both routers now hold the tenant in cache; a suspension reaches both within a second.
    first
        .store
        .set_status(
            accepted.tenant_id,
            control_plane::model::TenantStatus::Suspended,
        )
        .await
        .unwrap();
    for app in [&first, &second] {
        app.wait_for_error("shared", StatusCode::FORBIDDEN, "tenant_suspended")
            .await;
    }
    first
        .store
        .set_status(
            accepted.tenant_id,
            control_plane::model::TenantStatus::Active,
        )
        .await
        .unwrap();
    for app in [&first, &second] {
        let deadline = Instant::now() + Duration::from_secs(2);
        while app.tenant_get("shared", "/api/v1/health").await.status() != StatusCode::OK {
            assert!(Instant::now() < deadline, "reactivation not heard");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    second.stop().await;
    first.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_are_cached_briefly_yet_a_new_tenant_is_reachable_at_once() {
    let app = TestApp::spawn().await;
    let lookups = |metrics: &str, result: &str| {
        metric(
            metrics,
            &format!("silo_router_tenant_lookups_total{{result=\"{result}\"}}"),
        )
    };
    // Entries read before the router's change listener is up are distrusted once it is (that
    // is the resynchronisation); wait until a cached miss sticks.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = app.apex_get("/metrics").await.text().await.unwrap();
        app.tenant_get("probe", "/api/v1/health").await;
        app.tenant_get("probe", "/api/v1/health").await;
        let after = app.apex_get("/metrics").await.text().await.unwrap();
        if lookups(&after, "hit") > lookups(&before, "hit") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "misses are never cached: {after}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = app.apex_get("/metrics").await.text().await.unwrap();
    let asked = Instant::now();
    for _ in 0..3 {
        assert_eq!(
            error_code(app.tenant_get("fresh", "/api/v1/health").await).await,
            (StatusCode::NOT_FOUND, "tenant_not_found".to_owned())
        );
    }
    let metrics = app.apex_get("/metrics").await.text().await.unwrap();
    assert_eq!(
        lookups(&metrics, "miss") - lookups(&before, "miss"),
        1.0,
        "one read of the control plane: {metrics}"
    );
    assert_eq!(
        lookups(&metrics, "hit") - lookups(&before, "hit"),
        2.0,
        "then the cached miss: {metrics}"
    );

    // The tenant's creation is announced, so the cached miss does not hide it.
    app.active_tenant("fresh").await;
    let response = app.tenant_get("fresh", "/api/v1/health").await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "signup took longer than a miss is cached; this run proves nothing"
    );
    assert_eq!(response.status(), StatusCode::OK);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_credentials_reach_the_router_and_the_old_password_stops_working() {
    let app = TestApp::spawn().await;
    app.active_tenant("rotor").await;
    assert_eq!(
        app.tenant_get("rotor", "/api/v1/health").await.status(),
        StatusCode::OK
    );
    let old_url = app.tenant_url("rotor").await;

    let token = crate::admin::admin_token(&app).await;
    let rotated = crate::admin::admin_call(
        &app,
        reqwest::Method::POST,
        "/api/v1/admin/tenants/rotor/rotate-credentials",
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_url = app.tenant_url("rotor").await;
    assert_ne!(
        secrecy::ExposeSecret::expose_secret(&old_url),
        secrecy::ExposeSecret::expose_secret(&new_url)
    );
    let refused = crate::harness::connect(&old_url).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD)
    );
    crate::harness::connect(&new_url).await.unwrap();

    // End every open connection to the tenant's database: the router must connect again, and
    // can only do so with the new password.
    let database = app
        .store
        .tenant_by_slug("rotor")
        .await
        .unwrap()
        .unwrap()
        .database_name
        .unwrap();
    superuser_client("postgres")
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while app.tenant_get("rotor", "/api/v1/health").await.status() != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the router did not switch to the new credentials"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let audited: i64 = app
        .control_plane()
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'tenant.rotate_credentials' \
             AND actor LIKE 'admin:%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    app.finish().await;
}

/// The connection budget a router reports for the host (one host in these tests).
async fn host_budget(app: &TestApp) -> f64 {
    let metrics = app.apex_get("/metrics").await.text().await.unwrap();
    metric(&metrics, "silo_router_host_connection_budget{")
}

async fn wait_for_host_budget(app: &TestApp, expected: f64, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let budget = host_budget(app).await;
        if budget == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: host budget {budget}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_on_one_control_plane_share_each_hosts_budget() {
    fn configure(settings: &mut Settings) {
        settings.router.connection_budget = Some(4);
        settings.router.pool_max_size = 2;
        settings.router.budget_wait = Duration::from_secs(5);
        settings.router.heartbeat_interval = Duration::from_millis(200);
    }
    let first = TestApp::spawn_with(TestOptions {
        configure: Some(configure),
        ..Default::default()
    })
    .await;
    let slugs: Vec<String> = (0..6).map(|i| format!("fleet-{i}")).collect();
    for slug in &slugs {
        first.active_tenant(slug).await;
    }
    // Alone, the router takes the host's whole budget.
    assert_eq!(
        first.tenant_get(&slugs[0], "/api/v1/health").await.status(),
        StatusCode::OK
    );
    assert_eq!(host_budget(&first).await, 4.0);

    // A second router joins: the first hears of it at once and halves its share.
    let mut second = TestApp::spawn_with(TestOptions {
        database: Some(first.database.clone()),
        keys: Some(first.keys.clone()),
        run_workers: false,
        configure: Some(configure),
        ..Default::default()
    })
    .await;
    wait_for_host_budget(&first, 2.0, "the first router heard the second join").await;

    // Both at full load: together they never hold more than the host's budget.
    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_connections(database_names(&first, &slugs).await, running.clone());
    health_rounds(&[&first, &second], &slugs, 3).await;
    running.store(false, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(most >= 2, "the sampler saw both routers' connections");
    assert!(
        most <= 4,
        "{most} connections from two routers, host budget 4"
    );
    assert_eq!(host_budget(&second).await, 2.0);
    let metrics = second.apex_get("/metrics").await.text().await.unwrap();
    assert_eq!(metric(&metrics, "silo_router_routers "), 2.0, "{metrics}");

    // The second stops: it leaves the fleet and the first takes the whole budget again.
    second.stop().await;
    wait_for_host_budget(&first, 4.0, "the first router heard the second leave").await;

    // A router that died without leaving counts until it misses three heartbeats.
    let control_plane = first.control_plane().await;
    control_plane
        .batch_execute(
            "INSERT INTO routers (id, hostname, pid) VALUES (gen_random_uuid(), 'crashed', 1); \
             SELECT pg_notify('silo_routers', '')",
        )
        .await
        .unwrap();
    wait_for_host_budget(&first, 2.0, "the first router counted the crashed one").await;
    wait_for_host_budget(&first, 4.0, "the crashed router dropped out").await;
    first.finish().await;
}

/// A request of the tenant app that ran to its end hands its connection on without a session
/// reset (the app leaves nothing on it: `tidy` checks its SQL); one cut off half-way — here a
/// sale waiting on a row lock inside its transaction when its client goes away — never records
/// anything, and its connection is reset in full before anyone else gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_off_mid_query_never_hands_its_connection_on_dirty() {
    use reqwest::Method;
    use serde_json::json;
    use tokio::io::AsyncWriteExt as _;
    let app = TestApp::spawn_with(TestOptions {
        // One connection, so the next request surely gets the cut-off one's.
        configure: Some(|settings: &mut Settings| settings.router.pool_max_size = 1),
        ..Default::default()
    })
    .await;
    app.active_tenant("cutoff").await;
    let owner = crate::session::Session::owner(&app, "cutoff").await;
    // An item priced 2.50 with 5 in the main branch.
    let (branch, item) = crate::app_pages::stocked_item(&owner, "CUT", "Cut item", 5).await;
    let counters = || async {
        let metrics = app.apex_get("/metrics").await.text().await.unwrap();
        (
            metric(&metrics, "silo_router_host_quick_checkouts{"),
            metric(&metrics, "silo_router_host_session_resets{"),
        )
    };
    // Finished requests: each next checkout skips the reset.
    let (quick_before, _) = counters().await;
    for _ in 0..5 {
        owner
            .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
            .await;
    }
    let (quick, resets_before) = counters().await;
    assert!(
        quick >= quick_before + 5.0,
        "five finished requests, {} quick checkouts",
        quick - quick_before
    );

    // The item's row locked from outside: a sale of it waits inside its transaction.
    let database = database_names(&app, &["cutoff".to_owned()]).await.remove(0);
    let locker = superuser_client(&database).await;
    locker
        .batch_execute(&format!(
            "BEGIN; SELECT id FROM items WHERE id = {item} FOR UPDATE"
        ))
        .await
        .unwrap();
    let body =
        json!({"branch_id": branch, "lines": [{"item_id": item, "quantity": 1}]}).to_string();
    let mut socket = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /api/v1/sales HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        app.tenant_host("cutoff"),
        owner.token,
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let observer = superuser_client(&database).await;
    let waiting = || async {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'silo-router' \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let started = Instant::now();
    while waiting().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sale never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its client goes away mid-query; then the lock is let go.
    drop(socket);
    tokio::time::sleep(Duration::from_millis(300)).await;
    locker.batch_execute("ROLLBACK").await.unwrap();

    // The next request gets the connection reset, not the cut-off transaction: no sale was
    // recorded, and the tenant's database holds no open transaction of the router's.
    let sales = owner
        .expect(Method::GET, "/api/v1/sales", None, StatusCode::OK)
        .await;
    assert_eq!(sales["data"].as_array().unwrap().len(), 0, "{sales}");
    let (_, resets) = counters().await;
    assert!(
        resets > resets_before,
        "the cut-off request's connection was reset in full"
    );
    let open: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'silo-router' \
             AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0);
    let stock = owner
        .expect(
            Method::GET,
            &format!("/api/v1/stock?item_id={item}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(stock["data"][0]["quantity"], json!(5.0), "{stock}");
    app.finish().await;
}
