//! The HTTP edge under abuse, over real sockets: half-sent bodies hold no tenant connection,
//! slow headers and idle keep-alives are closed on time, password hashing is bounded (refused
//! with `busy` rather than absorbed), and input PostgreSQL would refuse (NUL characters), dates
//! past any sense and oversize bodies get clear errors and change nothing.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::admin::{admin_call, admin_token};
use crate::harness::{TestApp, TestOptions, error_code, signup_body};
use crate::session::Session;

/// Short HTTP timeouts, so the test sees them expire.
fn short_timeouts(settings: &mut control_plane::settings::Settings) {
    settings.http.header_read_timeout = Duration::from_secs(1);
    settings.http.body_read_timeout = Duration::from_secs(4);
    settings.http.idle_timeout = Duration::from_secs(3);
}

/// Reads until the server closes the socket (or `limit` passes): what it sent, and when it closed.
pub(crate) async fn read_until_closed(
    socket: &mut TcpStream,
    limit: Duration,
) -> (String, Option<Instant>) {
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), None),
            Ok(Ok(0) | Err(_)) => {
                return (
                    String::from_utf8_lossy(&received).into_owned(),
                    Some(Instant::now()),
                );
            }
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_sign_ins_hold_no_tenant_connection() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(short_timeouts),
        ..TestOptions::default()
    })
    .await;
    let slug = "slowbody";
    app.active_tenant(slug).await;
    // More half-sent sign-ins than the tenant's pool has connections (4).
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let mut socket = TcpStream::connect(app.address).await.unwrap();
        let head = format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 200\r\n\r\n{{\"email\":",
            app.tenant_host(slug)
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let owner = Session::owner(&app, slug).await;
    assert!(!owner.token.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the sign-in waited for a connection: {:?}",
        started.elapsed()
    );
    owner
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    // The half-sent ones are answered 408 once the body-read timeout passes.
    let (answer, closed) = read_until_closed(&mut sockets[0], Duration::from_secs(8)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(closed.is_some(), "the socket is closed after the 408");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed_on_time() {
    let app = TestApp::spawn_with(TestOptions {
        run_workers: false,
        configure: Some(short_timeouts),
        ..TestOptions::default()
    })
    .await;
    let host = app.apex_host();
    // A slow-loris: half a request head, then nothing.
    let mut slow = TcpStream::connect(app.address).await.unwrap();
    slow.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    let opened = Instant::now();
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    let closed = closed.expect("the slow-loris socket is closed");
    assert!(
        answer.is_empty(),
        "nothing is answered to half a head: {answer}"
    );
    assert!(
        closed - opened < Duration::from_millis(2500),
        "closed after {:?}, header timeout 1 s",
        closed - opened
    );
    // A connection that sends nothing at all is closed as well.
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a silent socket is closed");

    // Kept alive between requests, a connection outlives the header timeout but not the idle one.
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut kept = TcpStream::connect(app.address).await.unwrap();
    let mut buffer = [0_u8; 4096];
    for _ in 0..2 {
        kept.write_all(request.as_bytes()).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buffer))
            .await
            .expect("answered")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buffer[..read])
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let idle_from = Instant::now();
    let (_, closed) = read_until_closed(&mut kept, Duration::from_secs(6)).await;
    let closed = closed.expect("an idle connection is closed");
    assert!(
        closed - idle_from < Duration::from_secs(3),
        "idle timeout 3 s (1.5 s already idle)"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_password_checks_is_refused_with_busy_and_healthz_stays_fast() {
    let app = TestApp::spawn_with(TestOptions {
        run_workers: false,
        ..TestOptions::default()
    })
    .await;
    // Every signup hashes its admin password: far more at once than slots and queue hold.
    let signups = (0..80).map(|index| {
        app.request(Method::POST, &app.apex_host(), "/api/v1/signups")
            .json(&signup_body(&format!("flood{index:03}")))
            .send()
    });
    let health = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let response = app.apex_get("/healthz").await;
        (response.status(), started.elapsed())
    };
    let (answers, (health_status, health_time)) =
        tokio::join!(futures::future::join_all(signups), health);
    assert_eq!(health_status, StatusCode::OK);
    assert!(
        health_time < Duration::from_secs(1),
        "/healthz took {health_time:?}"
    );
    let (mut accepted, mut busy) = (0, 0);
    for answer in answers {
        let answer = answer.expect("every signup is answered");
        if answer.status() == StatusCode::ACCEPTED {
            accepted += 1;
            continue;
        }
        assert!(answer.headers().contains_key("retry-after"), "{answer:?}");
        assert_eq!(
            error_code(answer).await,
            (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned())
        );
        busy += 1;
    }
    assert!(accepted > 0, "some signups go through");
    assert!(busy > 0, "80 hashes at once are not all absorbed");
    // A refused signup stored nothing: only the accepted ones are tenants.
    let tenants: i64 = app
        .control_plane()
        .await
        .query_one("SELECT count(*) FROM tenants WHERE slug LIKE 'flood%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenants, accepted);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_anywhere_get_422_naming_the_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    let slug = "nulls";
    app.active_tenant(slug).await;
    let anonymous = Session::anonymous(&app, slug);
    let (status, body) = {
        let response = anonymous
            .call(
                Method::POST,
                "/api/v1/sessions",
                Some(json!({"email": "owner\u{0}@nulls.test", "password": "x"})),
            )
            .await;
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(body["error"]["fields"]["email"].is_string(), "{body}");

    let admin_login = app
        .request(Method::POST, &app.apex_host(), "/api/v1/admin/sessions")
        .json(&json!({"email": "ops\u{0}@silo.test", "password": "p", "totp_code": "1"}))
        .send()
        .await
        .unwrap();
    let body: Value = admin_login.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert!(body["error"]["fields"]["email"].is_string(), "{body}");

    let owner = Session::owner(&app, slug).await;
    let items_before = owner
        .expect(Method::GET, "/api/v1/items", None, StatusCode::OK)
        .await;
    let response = owner
        .call(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": "NUL-1", "name": "Para\u{0}cetamol", "sale_price_cents": 1})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["fields"]["name"].is_string(), "{body}");
    let items_after = owner
        .expect(Method::GET, "/api/v1/items", None, StatusCode::OK)
        .await;
    assert_eq!(items_before, items_after, "nothing was stored");

    for (path, field) in [
        ("/api/v1/items?q=a%00b", "q"),
        ("/api/v1/items/%00", "path"),
        ("/api/v1/domains/shop%00.example", "path"),
    ] {
        let response = owner.call(Method::GET, path, None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["fields"][field].is_string(), "{path}: {body}");
    }
    let token = admin_token(&app).await;
    let response = admin_call(&app, Method::GET, "/api/v1/admin/tenants/%00", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_past_any_sense_and_oversize_bodies_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let slug = "farfuture";
    app.active_tenant(slug).await;
    let token = admin_token(&app).await;
    let path = format!("/api/v1/admin/tenants/{slug}/extend-trial");
    let before = subscription(&app, slug, &token).await;
    for (body, field) in [
        (json!({"by": "99999999999days"}), "by"),
        (json!({"by": "6years"}), "by"),
        (json!({"until": "+262142-12-31T00:00:00Z"}), "until"),
    ] {
        let response = admin_call(&app, Method::POST, &path, &token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error"]["fields"][field].is_string(), "{answer}");
    }
    let module = format!("/api/v1/admin/tenants/{slug}/modules/reports");
    let response = admin_call(&app, Method::PUT, &module, &token)
        .json(&json!({"enabled": true, "expires_at": "+262142-12-31T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let cancel = format!("/api/v1/admin/tenants/{slug}/cancel");
    let response = admin_call(&app, Method::POST, &cancel, &token)
        .json(&json!({"grace": "99999999999days"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(response).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_grace".to_owned())
    );
    assert_eq!(
        subscription(&app, slug, &token).await,
        before,
        "nothing changed"
    );
    // A sensible extension still works.
    let response = admin_call(&app, Method::POST, &path, &token)
        .json(&json!({"by": "7days"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // 3 MB of JSON: 413, whether it says its length or not. A declared length is refused at
    // once, before the body is sent (a client still writing then meets a closed socket, so the
    // answer is read from a raw socket that sends only the head).
    let mut declared = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /api/v1/signups HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        app.apex_host(),
        3 * 1024 * 1024
    );
    declared.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut declared, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    let mut socket = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /api/v1/sessions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        app.tenant_host(slug)
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("100000\r\n{}\r\n", " ".repeat(0x10_0000));
    for _ in 0..3 {
        // The server may answer and close before the last chunk is taken.
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let (answer, _) = read_until_closed(&mut socket, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    app.finish().await;
}

async fn subscription(app: &TestApp, slug: &str, token: &str) -> Value {
    let path = format!("/api/v1/admin/tenants/{slug}/subscription");
    admin_call(app, Method::GET, &path, token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["subscription"]
        .clone()
}
