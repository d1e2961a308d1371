//! The open internet's edges: per-address limits see the client a trusted proxy forwards for
//! (the rightmost untrusted hop) and ignore a forwarding header from anyone else; anonymous
//! traffic spends its own budgets, never signed-in users'; tenant roles cannot enter the
//! host's shared databases. The test app listens on loopback, so
//! `trusted_proxies = ["127.0.0.0/8"]` lets a test play the proxy.

use control_plane::settings::Settings;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::admin::{EMAIL, PASSWORD, enrol};
use crate::harness::{TestApp, TestOptions, error_code};

fn behind_loopback_proxy(settings: &mut Settings) {
    settings.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    settings.router.trust_forwarded_host = true;
}

fn behind_another_proxy(settings: &mut Settings) {
    settings.http.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    settings.router.trust_forwarded_host = true;
}

/// An admin login carrying `X-Forwarded-For: forwarded_for`.
async fn admin_login(
    app: &TestApp,
    forwarded_for: &str,
    password: &str,
    code: &str,
) -> reqwest::Response {
    app.request(Method::POST, &app.apex_host(), "/api/v1/admin/sessions")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": EMAIL, "password": password, "totp_code": code}))
        .send()
        .await
        .unwrap()
}

/// Bad logins until one is refused as too many: how many were answered before that.
async fn guess_until_limited(app: &TestApp, forwarded_for: impl Fn(usize) -> String) -> usize {
    for attempt in 0..20 {
        let response =
            admin_login(app, &forwarded_for(attempt), "guess guess guess", "123456").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(error_code(response).await.1, "rate_limited");
            return attempt;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    panic!("twenty bad logins were never limited");
}

/// Whether an answer to a request claiming `X-Forwarded-Proto: https` (after whatever
/// `X-Forwarded-For` says) carries HSTS: only when a trusted proxy made the claim.
async fn hsts_for_claimed_https(app: &TestApp, forwarded_for: Option<&str>) -> bool {
    let mut request = app
        .request(Method::GET, &app.apex_host(), "/healthz")
        .header("x-forwarded-proto", "https");
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success());
    response
        .headers()
        .contains_key(reqwest::header::STRICT_TRANSPORT_SECURITY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_one_clients_bad_logins_do_not_lock_out_another() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(behind_loopback_proxy),
        ..Default::default()
    })
    .await;
    let secret = enrol(&app).await;
    // The attacker also writes its own X-Forwarded-For; the proxy appends the real address.
    let guessed =
        guess_until_limited(&app, |attempt| format!("192.0.2.{attempt}, 198.51.100.1")).await;
    assert_eq!(guessed, 10, "ten attempts a minute per client address");

    // Another client behind the same proxy logs in at once.
    let code = admin::current_code(&secret).unwrap();
    let response = admin_login(&app, "198.51.100.2", PASSWORD, &code).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // The attacker stays limited, whatever it claims to be left of the proxy's entry, and
    // even through a second trusted hop.
    for forwarded_for in ["198.51.100.2, 198.51.100.1", "198.51.100.1, 127.0.0.2"] {
        let response = admin_login(&app, forwarded_for, "guess guess guess", "123456").await;
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{forwarded_for}"
        );
    }
    // The proxy's word on https is taken (HSTS); a client's own, left of the proxy's, is not.
    assert!(hsts_for_claimed_https(&app, Some("198.51.100.3")).await);
    let client_claim = app
        .request(Method::GET, &app.apex_host(), "/healthz")
        .header("x-forwarded-for", "198.51.100.3")
        .header("x-forwarded-proto", "https, http")
        .send()
        .await
        .unwrap();
    assert!(
        !client_claim
            .headers()
            .contains_key(reqwest::header::STRICT_TRANSPORT_SECURITY)
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // The peer (loopback) is not among the trusted proxies: each attempt claims another
    // address, yet the limit counts the peer.
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(behind_another_proxy),
        ..Default::default()
    })
    .await;
    let secret = enrol(&app).await;
    let guessed = guess_until_limited(&app, |attempt| format!("198.51.100.{attempt}")).await;
    assert_eq!(guessed, 10);
    let code = admin::current_code(&secret).unwrap();
    let response = admin_login(&app, "203.0.113.77", PASSWORD, &code).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // Nor is its forwarded host: the tenant is chosen by Host.
    app.active_tenant("shop").await;
    let response = app
        .request(Method::GET, &app.apex_host(), "/api/v1/health")
        .header("x-forwarded-host", app.tenant_host("shop"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "the apex answered, not the tenant"
    );
    // Nor its claim to have come over https: no HSTS, no `Secure` cookie.
    assert!(!hsts_for_claimed_https(&app, None).await);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_sign_in_limits_the_forwarded_client_not_the_proxy() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(behind_loopback_proxy),
        ..Default::default()
    })
    .await;
    app.active_tenant("shop").await;
    let sign_in = |forwarded_for: &'static str, password: &'static str| {
        app.request(Method::POST, &app.tenant_host("shop"), "/api/v1/auth/login")
            .header("forwarded", forwarded_for)
            .json(&json!({"email": "owner@shop.test", "password": password}))
            .send()
    };
    let mut limited = false;
    for _ in 0..30 {
        let response = sign_in("for=\"[2001:db8::1]:4711\"", "wrong password here")
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "one client's guesses are limited");
    let response = sign_in("for=198.51.100.9", "violet tram oyster gravel")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    app.finish().await;
}

fn small_budgets(settings: &mut Settings) {
    behind_loopback_proxy(settings);
    settings.router.tenant_requests_per_second = 50;
    settings.router.anonymous_requests_per_second = 20;
    settings.router.anonymous_requests_per_client_per_second = 5;
}

/// Requests from `forwarded_for` until `stop`: how many were answered 429 `rate_limited`.
async fn flood(
    app: &TestApp,
    forwarded_for: &'static str,
    credential: Option<(&'static str, &'static str)>,
    stop: &std::sync::atomic::AtomicBool,
) -> usize {
    let mut limited = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut request = app
            .request(Method::GET, &app.tenant_host("shop"), "/api/v1/branding")
            .header("x-forwarded-for", forwarded_for);
        if let Some((name, value)) = credential {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(error_code(response).await.1, "rate_limited");
            limited += 1;
        }
    }
    limited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_flood_does_not_lock_out_a_signed_in_owner() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(small_budgets),
        ..Default::default()
    })
    .await;
    app.active_tenant("shop").await;
    let owner = crate::session::Session::owner(&app, "shop").await;
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Anonymous requests, bogus cookies on a public route, and forged bearer tokens on a
    // signed-in route, each from its own address, all at once.
    let forged = async {
        let mut limited = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let response = app
                .request(Method::GET, &app.tenant_host("shop"), "/api/v1/me")
                .header("x-forwarded-for", "198.51.100.3")
                .bearer_auth("st.forged-token")
                .send()
                .await
                .unwrap();
            let (status, code) = error_code(response).await;
            match status {
                StatusCode::UNAUTHORIZED => assert_eq!(code, "unauthenticated"),
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(code, "rate_limited");
                    limited += 1;
                }
                other => panic!("a forged token got {other} {code}"),
            }
        }
        limited
    };
    let owner_requests = async {
        // Let the flood spend its budgets first.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for _ in 0..20 {
            let response = owner.call(Method::GET, "/api/v1/me", None).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "a signed-in owner was refused"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (anonymous, cookies, forged, ()) = tokio::join!(
        flood(&app, "198.51.100.1", None, &stop),
        flood(
            &app,
            "198.51.100.2",
            Some(("cookie", "silo_session=bogus")),
            &stop
        ),
        forged,
        owner_requests,
    );
    assert!(anonymous > 0, "the anonymous flood was never limited");
    assert!(
        cookies > 0,
        "a bogus cookie on a public route escaped the anonymous budget"
    );
    assert!(forged > 0, "forged tokens were never limited");
    app.finish().await;
}

/// `url` with its database (the path) replaced by `database`.
fn with_database(url: &SecretString, database: &str) -> SecretString {
    let url = url.expose_secret();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (server, _) = base.rsplit_once('/').unwrap();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    SecretString::from(format!("{server}/{database}{query}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_roles_cannot_enter_the_maintenance_or_control_plane_database() {
    let app = TestApp::spawn().await;
    app.active_tenant("shop").await;
    let tenant_url = app.tenant_url("shop").await;
    for database in ["postgres", app.database.as_str()] {
        let error = crate::harness::connect(&with_database(&tenant_url, database))
            .await
            .err()
            .unwrap_or_else(|| panic!("the tenant's role connected to {database}"));
        let code = error.as_db_error().map(|db| db.code().code().to_owned());
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "{database}: refused for want of the privilege, not otherwise: {error}"
        );
    }
    // Its own database still opens, the tenant is served, and the control plane still works.
    crate::harness::connect(&tenant_url)
        .await
        .expect("the tenant's role connects to its own database");
    assert_eq!(
        app.tenant_get("shop", "/api/v1/health").await.status(),
        StatusCode::OK
    );
    app.active_tenant("second").await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_role_that_may_not_close_a_host_is_refused_with_the_statements_to_run() {
    use control_plane::host_privileges::{
        ControlPlaneIdentity, HostPrivilegesError, close_shared_databases,
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (role, database) = (format!("limited_{suffix}"), format!("shared_{suffix}"));
    let superuser = crate::harness::superuser_client("postgres").await;
    superuser
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN CREATEDB CREATEROLE PASSWORD 'limitedpass'"
        ))
        .await
        .unwrap();
    superuser
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let public_may_connect = || async {
        superuser
            .query_one(
                "SELECT has_database_privilege('public', $1, 'CONNECT')",
                &[&database],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    };
    let elsewhere = ControlPlaneIdentity {
        database: "no_such_control_plane".to_owned(),
        role: "no_such_role".to_owned(),
    };
    let superuser_url = crate::harness::superuser_url(&database);
    let (_, server) = superuser_url.expose_secret().split_once('@').unwrap();
    let limited_url = SecretString::from(format!("postgres://{role}:limitedpass@{server}"));

    let refused = close_shared_databases(&limited_url, &elsewhere)
        .await
        .expect_err("a role that owns nothing cannot revoke PUBLIC's access");
    let HostPrivilegesError::Refused { statements, .. } = &refused else {
        panic!("refused for another reason: {refused}");
    };
    assert!(
        statements.contains(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE \"{database}\" FROM PUBLIC;"
        )),
        "{refused}"
    );
    assert!(public_may_connect().await, "nothing pretended to be closed");

    // Run as the owner (here the superuser) it closes the database, and again changes nothing.
    for _ in 0..2 {
        let closed = close_shared_databases(&superuser_url, &elsewhere)
            .await
            .unwrap();
        assert!(closed.contains(&database), "{closed:?}");
        assert!(!public_may_connect().await);
    }
    superuser
        .batch_execute(&format!("DROP DATABASE {database}"))
        .await
        .unwrap();
    superuser
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();
}
