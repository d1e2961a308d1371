//! Stopping drains: on the stop signal (SIGTERM in `silo serve`) the listener closes at once, a
//! request already being served is finished and answered, one that is still running at
//! `[http] shutdown_timeout` is cut, and the process ends holding no tenant connection. The
//! probes: `/livez` while the process answers, `/readyz` only while it should get traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::edges::read_until_closed;
use crate::harness::{TestApp, TestOptions, error_code, superuser_client};
use crate::session::Session;

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// A sign-in whose body is sent up to `sent` bytes: in flight, as far as the server knows.
async fn half_sent_sign_in(app: &TestApp, slug: &str, body: &str, sent: usize) -> TcpStream {
    let mut socket = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        app.tenant_host(slug),
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body.as_bytes()[..sent]).await.unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_answers_requests_in_flight_cuts_stragglers_and_releases_tenant_connections() {
    let mut app = TestApp::spawn_with(TestOptions {
        configure: Some(|settings| {
            settings.http.shutdown_timeout = SHUTDOWN_TIMEOUT;
            // Long enough that only the shutdown timeout can end the straggler.
            settings.http.body_read_timeout = Duration::from_secs(60);
        }),
        ..TestOptions::default()
    })
    .await;
    let slug = "draining";
    app.active_tenant(slug).await;
    let owner = Session::owner(&app, slug).await;
    owner
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    drop(owner);
    let database: String = app
        .control_plane()
        .await
        .query_one(
            "SELECT database_name FROM tenants WHERE slug = $1",
            &[&slug],
        )
        .await
        .unwrap()
        .get(0);
    let postgres = superuser_client("postgres").await;
    let held = || async {
        postgres
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&database],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert!(
        held().await >= 1,
        "the router holds a pooled tenant connection"
    );
    assert_eq!(
        app.tenant_get(slug, "/readyz").await.status(),
        StatusCode::OK
    );

    let body = r#"{"email":"nobody@draining.test","password":"not the password at all"}"#;
    let mut finishing = half_sent_sign_in(&app, slug, body, 10).await;
    let mut straggler = half_sent_sign_in(&app, slug, body, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let address = app.address;
    let stopping = tokio::spawn(async move {
        let started = Instant::now();
        app.stop().await;
        (app, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(address).await.is_err(),
        "a draining process takes no new connection"
    );
    // The request in flight is finished and answered, after the stop began.
    finishing.write_all(&body.as_bytes()[10..]).await.unwrap();
    let (answer, closed) = read_until_closed(&mut finishing, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_credentials"), "{answer}");
    assert!(
        closed.is_some(),
        "its connection closes once it is answered"
    );
    // The one still sending its body at the shutdown timeout is cut.
    let (answer, closed) = read_until_closed(&mut straggler, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "the straggler's connection was cut: {answer}"
    );
    let (app, took) = stopping.await.unwrap();
    assert!(
        took >= SHUTDOWN_TIMEOUT - Duration::from_millis(500)
            && took < SHUTDOWN_TIMEOUT + Duration::from_secs(3),
        "the stop waited for the straggler up to the shutdown timeout only: {took:?}"
    );
    // Every tenant connection is gone with the process's pools.
    let deadline = Instant::now() + Duration::from_secs(5);
    while held().await > 0 {
        assert!(
            Instant::now() < deadline,
            "tenant connections outlived the stop: {}",
            held().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_every_control_plane_migration_and_liveness_does_not() {
    let app = TestApp::spawn().await;
    let ready = app.apex_get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let alive = app.apex_get("/livez").await;
    assert_eq!(alive.status(), StatusCode::OK);
    // On any host, even one that names no tenant: a load balancer asks by address.
    let by_address = app
        .http
        .get(format!("http://{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(by_address.status(), StatusCode::OK);
    // A control plane behind this build's migrations is not ready (a deploy ran the new binary
    // before migrating); the process is still alive.
    app.control_plane()
        .await
        .execute(
            "DELETE FROM _sqlx_migrations \
             WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
            &[],
        )
        .await
        .unwrap();
    let (status, code) = error_code(app.apex_get("/readyz").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    );
    assert_eq!(app.apex_get("/livez").await.status(), StatusCode::OK);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_control_plane_does_not_answer_is_not_ready_but_alive_until_it_does() {
    let app = TestApp::spawn().await;
    assert_eq!(app.apex_get("/readyz").await.status(), StatusCode::OK);
    // The control-plane database stops taking connections and loses every one it had.
    let admin = superuser_client("postgres").await;
    let shut = format!(
        "ALTER DATABASE \"{0}\" ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
        app.database
    );
    admin.batch_execute(&shut).await.unwrap();
    let asked = Instant::now();
    let (status, code) = error_code(app.apex_get("/readyz").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "a load balancer waited {:?} for the answer",
        asked.elapsed()
    );
    assert_eq!(app.apex_get("/livez").await.status(), StatusCode::OK);
    // Back: ready again, without a restart.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true",
            app.database
        ))
        .await
        .unwrap();
    let started = Instant::now();
    while app.apex_get("/readyz").await.status() != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still not ready once the control plane answers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_process_is_not_ready_but_alive() {
    use tower::ServiceExt as _;
    let app = TestApp::spawn().await;
    let draining = Arc::new(AtomicBool::new(false));
    let dispatch = silo::dispatch::host_dispatch(
        "localhost".into(),
        axum::Router::new(),
        axum::Router::new(),
        silo::dispatch::Probes {
            store: app.store.clone(),
            draining: draining.clone(),
        },
    );
    let probe = |path: &'static str| {
        let dispatch = dispatch.clone();
        async move {
            let request = axum::http::Request::get(path)
                .header("host", "10.0.0.7:8080")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = dispatch.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(probe("/readyz").await.0, StatusCode::OK);
    draining.store(true, Ordering::Release);
    let (status, body) = probe("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("not_ready") && body.contains("shutting down"),
        "{body}"
    );
    assert_eq!(probe("/livez").await.0, StatusCode::OK);
    app.finish().await;
}
