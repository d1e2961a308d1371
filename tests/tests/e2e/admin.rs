//! Super-admins: login needs the password and a fresh TOTP code (never the same code twice),
//! failures say nothing about which factor was wrong, attempts are rate-limited, and the JSON
//! admin API manages hosts and tenants — every change audited with the admin's name.

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use crate::harness::{TestApp, cluster_b, error_code};

pub const EMAIL: &str = "ops@silo.test";
pub const PASSWORD: &str = "correct horse battery staple";

pub async fn enrol(app: &TestApp) -> SecretString {
    admin::create_admin(
        &app.store,
        &app.keyring,
        EMAIL,
        SecretString::from(PASSWORD),
    )
    .await
    .unwrap()
    .totp_secret
}

async fn login(app: &TestApp, password: &str, code: &str) -> reqwest::Response {
    app.request(Method::POST, &app.apex_host(), "/api/v1/admin/sessions")
        .json(&json!({"email": EMAIL, "password": password, "totp_code": code}))
        .send()
        .await
        .unwrap()
}

/// Enrols the super-admin and logs in: the session token.
pub async fn admin_token(app: &TestApp) -> String {
    let secret = enrol(app).await;
    login(app, PASSWORD, &admin::current_code(&secret).unwrap())
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn admin_call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.request(method, &app.apex_host(), path)
        .bearer_auth(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_needs_password_and_a_fresh_totp_code() {
    let app = TestApp::spawn().await;
    let secret = enrol(&app).await;
    // Creating the same admin again, or one with a weak password, is refused.
    assert!(
        admin::create_admin(
            &app.store,
            &app.keyring,
            "OPS@silo.test",
            SecretString::from(PASSWORD)
        )
        .await
        .is_err()
    );
    assert!(
        admin::create_admin(
            &app.store,
            &app.keyring,
            "b@silo.test",
            SecretString::from("short")
        )
        .await
        .is_err()
    );
    // Nothing secret in the control-plane row.
    let control = app.control_plane().await;
    let row = control
        .query_one(
            "SELECT password_hash, sealed_totp_secret FROM admin_users",
            &[],
        )
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get(1);
    assert!(row.get::<_, String>(0).starts_with("$argon2id$"));
    assert!(
        !sealed
            .windows(secret.expose_secret().len())
            .any(|window| window == secret.expose_secret().as_bytes())
    );

    let unauthenticated = app
        .request(Method::GET, &app.apex_host(), "/api/v1/admin/tenants")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(unauthenticated).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );

    let code = admin::current_code(&secret).unwrap();
    for (password, code) in [("wrong password!!", code.as_str()), (PASSWORD, "000000")] {
        let refused = login(&app, password, code).await;
        assert_eq!(
            error_code(refused).await,
            (StatusCode::UNAUTHORIZED, "invalid_credentials".to_owned())
        );
    }
    let accepted = login(&app, PASSWORD, &code).await;
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let cookie = accepted
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let token = accepted.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same code again is a replay.
    assert_eq!(
        error_code(login(&app, PASSWORD, &code).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".to_owned())
    );
    // The token is stored only as a hash.
    let stored: i64 = control
        .query_one(
            "SELECT count(*) FROM admin_sessions WHERE position($1::bytea in token_sha256) > 0",
            &[&token.as_bytes()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);

    // Bearer and cookie both work; after logout neither does.
    let by_bearer = admin_call(&app, Method::GET, "/api/v1/admin/tenants", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_bearer.status(), StatusCode::OK);
    let by_cookie = app
        .request(Method::GET, &app.apex_host(), "/api/v1/admin/hosts")
        .header("cookie", format!("other=1; silo_admin={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);
    let logout = admin_call(
        &app,
        Method::DELETE,
        "/api/v1/admin/sessions/current",
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let after = admin_call(&app, Method::GET, "/api/v1/admin/tenants", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);

    // Guessing is rate-limited per address (ten a minute; three attempts made above).
    let mut limited = None;
    for _ in 0..10 {
        let response = login(&app, "guess guess guess", "123456").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the eleventh attempt within a minute is refused");
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(error_code(limited).await.1, "rate_limited");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_hosts_and_cancels_tenants_with_an_audit_trail() {
    let app = TestApp::spawn().await;
    let token = admin_token(&app).await;
    let call = |method: Method, path: &str| admin_call(&app, method, path, &token);

    // Add a second server; its admin URL is sealed and never echoed.
    let b_url = cluster_b().superuser_url("postgres");
    let added = call(Method::POST, "/api/v1/admin/hosts")
        .json(&json!({"name": "b", "admin_url": b_url.expose_secret(), "capacity": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let added_text = added.text().await.unwrap();
    assert!(!added_text.contains("postgres://"), "{added_text}");
    for (body, code) in [
        (
            json!({"name": "c", "admin_url": "not a url", "capacity": 5}),
            "invalid_url",
        ),
        (
            json!({"name": "c", "admin_url": b_url.expose_secret(), "capacity": 0}),
            "invalid_capacity",
        ),
        (
            json!({"name": "b", "admin_url": b_url.expose_secret(), "capacity": 5}),
            "conflict",
        ),
        // Nothing listens on port 1: a host is reached before it is registered.
        (
            json!({"name": "c", "admin_url": "postgres://silo:pw@127.0.0.1:1/postgres", "capacity": 5}),
            "host_unreachable",
        ),
    ] {
        let refused = call(Method::POST, "/api/v1/admin/hosts")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(refused).await.1, code, "{body}");
    }
    assert_eq!(
        app.store.hosts().await.unwrap().len(),
        2,
        "refused hosts change nothing"
    );

    // Drain b: new tenants go to the local host.
    let drained: Value = call(Method::POST, "/api/v1/admin/hosts/b/drain")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(drained["status"], "draining");
    app.active_tenant("first").await;
    app.active_tenant("second").await;
    let local = app.store.host_by_name("local").await.unwrap().unwrap();
    assert_eq!(local.tenant_count, 2);
    // A host with tenants cannot be removed; an empty one can.
    let refused = call(Method::DELETE, "/api/v1/admin/hosts/local")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(refused).await,
        (StatusCode::CONFLICT, "conflict".to_owned())
    );
    let removed = call(Method::DELETE, "/api/v1/admin/hosts/b")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert!(app.store.host_by_name("b").await.unwrap().is_none());

    // Tenants: filter, show, cancel.
    let active: Value = call(Method::GET, "/api/v1/admin/tenants?status=active&q=sec")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert_eq!(active[0]["slug"], "second");
    let bad_filter = call(Method::GET, "/api/v1/admin/tenants?status=sleeping")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad_filter).await.1, "invalid_status");
    let bad_grace = call(Method::POST, "/api/v1/admin/tenants/first/cancel")
        .json(&json!({"grace": "whenever"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad_grace).await.1, "invalid_grace");
    let missing = call(Method::POST, "/api/v1/admin/tenants/nobody/cancel")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(missing).await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    assert_eq!(
        app.tenant_get("first", "/api/v1/health").await.status(),
        StatusCode::OK,
        "refused cancellations change nothing"
    );
    let cancelled: Value = call(Method::POST, "/api/v1/admin/tenants/first/cancel")
        .json(&json!({"grace": "1h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    app.wait_for_error("first", StatusCode::GONE, "tenant_cancelled")
        .await;
    let again = call(Method::POST, "/api/v1/admin/tenants/first/cancel")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(again).await,
        (StatusCode::CONFLICT, "wrong_status".to_owned())
    );
    let shown: Value = call(Method::GET, "/api/v1/admin/tenants/first")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let audit = shown["audit"].as_array().unwrap();
    let cancel = audit
        .iter()
        .find(|entry| entry["action"] == "tenant.cancel")
        .unwrap();
    assert_eq!(cancel["actor"], format!("admin:{EMAIL}"));
    assert_eq!(cancel["detail"]["before"], "active");
    // The subscription ended with it, recorded under the same name.
    assert!(
        audit
            .iter()
            .any(|entry| entry["action"] == "subscription.cancelled"
                && entry["actor"] == format!("admin:{EMAIL}")
                && entry["detail"]["before"] == "trial")
    );
    let retry = call(Method::POST, "/api/v1/admin/tenants/second/retry")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(retry).await.1,
        "wrong_status",
        "only failed tenants are retried"
    );

    let control = app.control_plane().await;
    let host_actions: Vec<String> = control
        .query(
            "SELECT action FROM audit_log WHERE actor = $1 AND tenant_id IS NULL ORDER BY id",
            &[&format!("admin:{EMAIL}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        host_actions,
        ["admin.login", "host.add", "host.set_status", "host.remove"]
    );
    app.finish().await;
}

/// A dashboard page that must answer 200: its HTML.
async fn admin_page(app: &TestApp, token: &str, path: &str) -> String {
    let response = admin_call(app, Method::GET, path, token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let policy = response
        .headers()
        .get(reqwest::header::CONTENT_SECURITY_POLICY)
        .map(|value| value.to_str().unwrap().to_owned());
    let page = response.text().await.unwrap();
    crate::csp::assert_inline_code_allowed(policy.as_deref(), &page);
    page
}

/// The dashboard's plan preview shows the lint findings of the migrations a rollout applies,
/// and its start form refuses (creating nothing) until each error rule is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_preview_shows_lint_findings_and_start_needs_each_risk_accepted() {
    const RULE: &str = "require-concurrent-index-creation";
    let risky = migrator::MigrationSet::with_extra(&[(
        "V3__items_by_name",
        "-- Find items by name.\nCREATE INDEX items_name_idx ON items (name);\n",
    )])
    .unwrap();
    let app = TestApp::spawn_with(crate::harness::TestOptions {
        migrations: Some(risky),
        ..Default::default()
    })
    .await;
    app.active_tenant("north").await;
    let token = admin_token(&app).await;
    let fields = "to=3&stages=100&concurrency=1&max_failures=0&bake=0s";

    let page = admin_page(&app, &token, &format!("/admin/rollouts/new?{fields}")).await;
    assert!(page.contains("id=\"lint-findings\""), "{page}");
    assert!(page.contains(&format!("data-rule=\"{RULE}\"")), "{page}");
    assert!(page.contains("V3__items_by_name.sql"), "{page}");
    assert!(
        page.contains(&format!("name=\"accept_risk\" value=\"{RULE}\"")),
        "{page}"
    );

    let start = |body: String| {
        admin_call(&app, Method::POST, "/admin/rollouts", &token)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
    };
    for refused in [
        fields.to_owned(),
        format!("{fields}&accept_risk=ban-drop-column"),
    ] {
        let response = start(refused.clone()).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{refused}"
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains(RULE) && page.contains("Not started"),
            "{page}"
        );
    }
    assert!(
        app.store.rollouts().await.unwrap().is_empty(),
        "a refused start creates no rollout"
    );

    let response = start(format!("{fields}&accept_risk={RULE}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let rollout = app.store.rollouts().await.unwrap().remove(0);
    assert_eq!(rollout.accepted_risks, [RULE]);
    let page = admin_page(&app, &token, &format!("/admin/rollouts/{}", rollout.id)).await;
    assert!(
        page.contains("Accepted lint risks") && page.contains(RULE),
        "{page}"
    );
    app.finish().await;
}

/// The preview says which way a rollout goes, whether it does anything and which migrations
/// can be undone; a rollback without its revert scripts gets no start button and a start is
/// refused (`revert_missing`, nothing created); a completed rollout offers no pause, resume or
/// abort, and a refused pause names the rollout's state, not a tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_says_what_a_rollout_would_do_and_offers_only_what_its_state_allows() {
    let set = migrator::MigrationSet::with_extra(&[(
        "V3__loyalty_cards",
        "CREATE TABLE loyalty_cards (id bigint PRIMARY KEY);",
    )])
    .unwrap();
    let app = TestApp::spawn_with(crate::harness::TestOptions {
        migrations: Some(set),
        ..Default::default()
    })
    .await;
    app.active_tenant("north").await;
    let token = admin_token(&app).await;
    let fields = |to: i32| format!("to={to}&stages=100&concurrency=1&max_failures=0&bake=0s");

    let page = admin_page(&app, &token, &format!("/admin/rollouts/new?{}", fields(3))).await;
    assert!(
        page.contains("Direction: <strong>forward</strong>"),
        "{page}"
    );
    assert!(!page.contains("id=\"does-nothing\""), "{page}");
    assert!(
        page.contains("no: there is no <code>V3__loyalty_cards.revert.sql</code>"),
        "{page}"
    );
    let start = |body: String| {
        admin_call(&app, Method::POST, "/admin/rollouts", &token)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
    };
    // `--on-failure revert` over a migration without a revert script is refused.
    let response = start(format!("{}&on_failure=revert", fields(3)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("V3__loyalty_cards.revert.sql")
    );
    assert!(app.store.rollouts().await.unwrap().is_empty());

    let response = start(fields(3)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let id = app.store.rollouts().await.unwrap()[0].id;
    crate::rollouts::wait_for_state(&app, id, control_plane::rollouts::RolloutState::Completed)
        .await;
    let page = admin_page(&app, &token, &format!("/admin/rollouts/{id}")).await;
    for gone in ["action-pause", "action-resume", "action-abort"] {
        assert!(
            !page.contains(gone),
            "a completed rollout offers {gone}: {page}"
        );
    }
    let response = admin_call(
        &app,
        Method::POST,
        &format!("/admin/rollouts/{id}/pause"),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("This rollout is completed, so it cannot be paused")
            && !page.contains("the tenant is"),
        "{page}"
    );

    let page = admin_page(&app, &token, &format!("/admin/rollouts/new?{}", fields(3))).await;
    assert!(page.contains("id=\"does-nothing\""), "{page}");
    let page = admin_page(&app, &token, &format!("/admin/rollouts/new?{}", fields(2))).await;
    assert!(page.contains("Roll back to schema version 2"), "{page}");
    assert!(page.contains("id=\"revert-missing\""), "{page}");
    assert!(!page.contains("confirm-start"), "{page}");
    let response = start(fields(2)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.text().await.unwrap().contains("no revert script"));
    assert_eq!(
        app.store.rollouts().await.unwrap().len(),
        1,
        "nothing was started"
    );
    app.finish().await;
}
