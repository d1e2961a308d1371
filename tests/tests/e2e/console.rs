//! The super-admin tenant console: in a real browser, log in with both factors, filter the
//! tenant list, open a tenant and suspend it through the confirmation step (its host answers
//! 403 at once), reactivate it, and see a refused action as a readable message. Over HTTP: the
//! list's filters (the JSON API and the page agree), every console action audited with the
//! admin's name and before/after, support access audited before anything is read, read-only
//! and free of password hashes, and nothing of the console without a session.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use reqwest::{Method, StatusCode, header};
use secrecy::SecretString;
use serde_json::Value;
use uuid::Uuid;

use crate::admin::{admin_call, admin_token};
use crate::browser::Browser;
use crate::harness::{TestApp, error_code, superuser_client};

const ACTOR: &str = "admin:ops@silo.test";

async fn tenant_id(app: &TestApp, slug: &str) -> Uuid {
    app.store.tenant_by_slug(slug).await.unwrap().unwrap().id
}

/// Polls the tenant's health endpoint until it answers 200 (within two seconds).
async fn wait_served(app: &TestApp, slug: &str) {
    let started = Instant::now();
    while app.tenant_get(slug, "/api/v1/health").await.status() != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{slug} is still not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn listed_slugs(browser: &Browser) -> Vec<String> {
    let mut slugs = Vec::new();
    for row in browser
        .client
        .find_all(Locator::Css("#tenants tr[data-slug]"))
        .await
        .unwrap()
    {
        slugs.push(row.attr("data-slug").await.unwrap().unwrap());
    }
    slugs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_filters_tenants_and_suspends_one_through_a_confirmation() {
    let app = TestApp::spawn().await;
    for slug in ["alpha", "beta", "gamma"] {
        app.active_tenant(slug).await;
    }
    app.store
        .set_plan(tenant_id(&app, "beta").await, "professional", "test")
        .await
        .unwrap();
    let secret = admin::create_admin(
        &app.store,
        &app.keyring,
        "ops@silo.test",
        SecretString::from("correct horse battery staple"),
    )
    .await
    .unwrap()
    .totp_secret;

    let browser = Browser::start().await;
    let base = format!("http://localhost:{}", app.address.port());
    browser
        .client
        .goto(&format!("{base}/admin/tenants"))
        .await
        .unwrap();
    assert!(
        browser
            .client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login")
    );
    browser.fill("#email", "ops@silo.test").await;
    browser
        .fill("#password", "correct horse battery staple")
        .await;
    browser
        .fill("#totp_code", &admin::current_code(&secret).unwrap())
        .await;
    browser.click("#login").await;
    browser
        .wait_for_text("#nav-tenants", |text| text == "Tenants")
        .await;
    browser.click("#nav-tenants").await;
    browser
        .wait_for_text("#shown", |text| text.starts_with("3 tenants"))
        .await;
    assert_eq!(listed_slugs(&browser).await, ["alpha", "beta", "gamma"]);

    // Filter by plan: only the Professional tenant is left.
    browser
        .client
        .find(Locator::Css("#plan"))
        .await
        .unwrap()
        .select_by_value("professional")
        .await
        .unwrap();
    browser.click("#apply").await;
    browser
        .wait_for_text("#shown", |text| text.starts_with("1 tenants"))
        .await;
    assert_eq!(listed_slugs(&browser).await, ["beta"]);

    // Open it and suspend it; the confirmation page changes nothing by itself.
    browser.click("tr[data-slug='beta'] a").await;
    browser
        .wait_for_text("#tenant-status", |text| text == "active")
        .await;
    browser.click("#action-suspend").await;
    browser
        .wait_for_text("#before-after", |text| {
            text.contains("trial") && text.contains("suspended")
        })
        .await;
    assert_eq!(
        app.tenant_get("beta", "/api/v1/health").await.status(),
        StatusCode::OK,
        "showing the confirmation suspends nothing"
    );
    browser.click("#confirm").await;
    browser
        .wait_for_text("#notice", |text| text.starts_with("Suspended"))
        .await;
    app.wait_for_error("beta", StatusCode::FORBIDDEN, "tenant_suspended")
        .await;
    browser
        .wait_for_text("#tenant-status", |text| text == "suspended")
        .await;
    assert_eq!(
        app.tenant_get("alpha", "/api/v1/health").await.status(),
        StatusCode::OK
    );

    // The status filter finds it now, and only it.
    browser
        .client
        .goto(&format!("{base}/admin/tenants?status=suspended"))
        .await
        .unwrap();
    browser
        .wait_for_text("#shown", |text| text.starts_with("1 tenants"))
        .await;
    assert_eq!(listed_slugs(&browser).await, ["beta"]);

    // Reactivate: served again.
    browser.click("tr[data-slug='beta'] a").await;
    browser
        .wait_for_text("#tenant-status", |text| text == "suspended")
        .await;
    browser.click("#action-reactivate").await;
    browser
        .wait_for_text("#about", |text| text.contains("reactivate"))
        .await;
    browser.click("#confirm").await;
    browser
        .wait_for_text("#notice", |text| text.starts_with("Reactivated"))
        .await;
    wait_served(&app, "beta").await;

    // Reactivating a tenant that is not suspended is refused, readably, on the confirmation
    // page itself: it promises no move the subscription would refuse.
    browser.click("#action-reactivate").await;
    let message = browser
        .wait_for_text("#error", |text| !text.is_empty())
        .await;
    assert!(message.contains("cannot become"), "{message}");
    assert!(!message.contains('{'), "{message}");
    browser.click("#back").await;
    browser
        .wait_for_text("#tenant-status", |text| text == "active")
        .await;

    browser.finish().await;
    app.finish().await;
}

async fn list(app: &TestApp, token: &str, query: &str) -> (Vec<String>, Option<String>) {
    let response = admin_call(
        app,
        Method::GET,
        &format!("/api/v1/admin/tenants?{query}"),
        token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let link = response
        .headers()
        .get(header::LINK)
        .map(|link| link.to_str().unwrap().to_owned());
    let rows: Value = response.json().await.unwrap();
    let slugs = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["slug"].as_str().unwrap().to_owned())
        .collect();
    (slugs, link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_list_filters_by_every_field_and_pages() {
    let app = TestApp::spawn().await;
    for slug in ["anna", "bert", "carl", "dora"] {
        app.active_tenant(slug).await;
    }
    let token = admin_token(&app).await;
    let lifecycle = control_plane::subscriptions::Lifecycle {
        trial: Duration::from_secs(3600),
        past_due_grace: Duration::from_secs(3600),
        offboarding_grace: Duration::from_secs(3600),
    };
    use control_plane::subscriptions::Action;
    app.store
        .set_plan(tenant_id(&app, "bert").await, "professional", "test")
        .await
        .unwrap();
    let carl = tenant_id(&app, "carl").await;
    app.store
        .change_subscription(carl, Action::Suspend, "test", &lifecycle)
        .await
        .unwrap();
    // Dora pays (as Stripe's payment event would leave it): a suspension and reactivation
    // would bring a trial back as a trial, never a paid subscription.
    let control_plane = app.control_plane().await;
    control_plane
        .batch_execute(
            "UPDATE tenants SET schema_version = 1 WHERE slug = 'anna'; \
             UPDATE tenants SET display_name = 'Zebra 50% Chemists' WHERE slug = 'dora'; \
             UPDATE subscriptions SET status = 'active' \
             WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'dora');",
        )
        .await
        .unwrap();
    let hosts: Value = admin_call(&app, Method::GET, "/api/v1/admin/hosts", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let host = hosts[0]["name"].as_str().unwrap().to_owned();

    let cases: Vec<(String, Vec<&str>)> = vec![
        (String::new(), vec!["anna", "bert", "carl", "dora"]),
        ("status=suspended".into(), vec!["carl"]),
        ("status=active".into(), vec!["anna", "bert", "dora"]),
        ("subscription=active".into(), vec!["dora"]),
        ("subscription=trial".into(), vec!["anna", "bert"]),
        ("subscription=suspended".into(), vec!["carl"]),
        ("plan=professional".into(), vec!["bert"]),
        ("plan=starter".into(), vec!["anna", "carl", "dora"]),
        (format!("host={host}"), vec!["anna", "bert", "carl", "dora"]),
        ("host=nowhere".into(), vec![]),
        ("version=1".into(), vec!["anna"]),
        ("version=2".into(), vec!["bert", "carl", "dora"]),
        ("q=zebra".into(), vec!["dora"]),
        ("q=ZEBRA".into(), vec!["dora"]),
        ("q=ber".into(), vec!["bert"]),
        ("q=50%25".into(), vec!["dora"]),
        // Wildcards are taken literally.
        ("q=%25".into(), vec!["dora"]),
        ("q=_".into(), vec![]),
        (
            "status=active&plan=starter&q=a".into(),
            vec!["anna", "dora"],
        ),
        (
            "status=&plan=&q=".into(),
            vec!["anna", "bert", "carl", "dora"],
        ),
    ];
    for (query, expected) in &cases {
        assert_eq!(&list(&app, &token, query).await.0, expected, "?{query}");
    }

    // Rows carry what the console shows.
    let rows: Value = admin_call(&app, Method::GET, "/api/v1/admin/tenants?q=bert", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows[0]["plan"], "professional");
    assert_eq!(rows[0]["subscription"], "trial");
    assert_eq!(rows[0]["host"], host.as_str());
    assert_eq!(rows[0]["schema_version"], 2);
    assert!(rows[0]["created_at"].is_string());

    // Pages of two, linked.
    let (first, link) = list(&app, &token, "limit=2").await;
    assert_eq!(first, ["anna", "bert"]);
    let link = link.expect("a next link");
    let next = link
        .strip_prefix("</api/v1/admin/tenants?")
        .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("{link}"));
    let (second, more) = list(&app, &token, next).await;
    assert_eq!(second, ["carl", "dora"]);
    assert!(more.is_none());
    let (filtered_page, link) = list(&app, &token, "status=active&limit=2").await;
    assert_eq!(filtered_page, ["anna", "bert"]);
    assert!(link.unwrap().contains("status=active"));

    // Bad filters are refused with a code.
    for (query, code) in [
        ("status=sleeping", "invalid_status"),
        ("subscription=forever", "invalid_subscription"),
        ("version=two", "invalid_version"),
        ("limit=0", "invalid_limit"),
        ("limit=100000", "invalid_limit"),
    ] {
        let response = admin_call(
            &app,
            Method::GET,
            &format!("/api/v1/admin/tenants?{query}"),
            &token,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNPROCESSABLE_ENTITY, code.to_owned()),
            "{query}"
        );
    }

    // The page applies the same filters.
    let page = admin_call(
        &app,
        Method::GET,
        "/admin/tenants?plan=professional",
        &token,
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(page.contains("data-slug=\"bert\""), "{page}");
    assert!(!page.contains("data-slug=\"anna\""), "{page}");

    app.finish().await;
}

/// POSTs a console action as the browser's form would.
async fn act(
    app: &TestApp,
    token: &str,
    slug: &str,
    action: &str,
    form: &str,
) -> reqwest::Response {
    admin_call(
        app,
        Method::POST,
        &format!("/admin/tenants/{slug}/actions/{action}"),
        token,
    )
    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    .body(form.to_owned())
    .send()
    .await
    .unwrap()
}

/// Performs an action and returns the one audit row it wrote.
async fn act_and_audit(
    app: &TestApp,
    token: &str,
    slug: &str,
    action: &str,
    form: &str,
) -> control_plane::console::AuditEntry {
    let id = tenant_id(app, slug).await;
    let before = app.store.audit_trail(id, 1000).await.unwrap().len();
    let response = act(app, token, slug, action, form).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{action} {form}");
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("/admin/tenants/{slug}?done={action}").as_str()
    );
    let trail = app.store.audit_trail(id, 1000).await.unwrap();
    assert!(trail.len() > before, "{action} wrote no audit row");
    let entry = trail[0].clone();
    assert_eq!(entry.actor, ACTOR, "{action}");
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_action_is_confirmed_then_audited_with_before_and_after() {
    let app = TestApp::spawn().await;
    app.active_tenant("acts").await;
    app.active_tenant("other").await;
    let token = admin_token(&app).await;
    let id = tenant_id(&app, "acts").await;

    // The confirmation page shows before → after and changes nothing.
    let confirm = admin_call(
        &app,
        Method::GET,
        "/admin/tenants/acts/actions/plan?plan=enterprise",
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(confirm.status(), StatusCode::OK);
    let confirm = confirm.text().await.unwrap();
    assert!(confirm.contains("id=\"before-after\""), "{confirm}");
    assert!(confirm.contains("starter") && confirm.contains("enterprise"));
    assert!(
        confirm.contains("name=\"plan\" value=\"enterprise\""),
        "{confirm}"
    );
    assert!(app.store.audit_trail(id, 10).await.unwrap().is_empty());
    assert_eq!(
        app.store.entitlements(id).await.unwrap().plan.code,
        "starter"
    );

    let trial_end_before = app.store.subscription(id).await.unwrap().trial_ends_at;
    let extended = act_and_audit(&app, &token, "acts", "extend-trial", "days=10").await;
    assert_eq!(extended.action, "subscription.trial");
    assert_eq!(extended.detail["before"], "trial");
    let trial_end_after = app.store.subscription(id).await.unwrap().trial_ends_at;
    assert_eq!(
        trial_end_after.unwrap() - trial_end_before.unwrap(),
        chrono::Duration::days(10)
    );
    assert!(!extended.detail["detail"]["before"].is_null());

    let plan = act_and_audit(&app, &token, "acts", "plan", "plan=professional").await;
    assert_eq!(plan.action, "tenant.change_plan");
    assert_eq!(
        (&plan.detail["before"], &plan.detail["after"]),
        (&Value::from("starter"), &Value::from("professional"))
    );

    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).format("%Y-%m-%d");
    let on = act_and_audit(
        &app,
        &token,
        "acts",
        "module",
        &format!("module=advanced_reports&enabled=on&expires={expires}"),
    )
    .await;
    assert_eq!(on.action, "tenant.set_module");
    assert_eq!(on.detail["before"]["enabled"], false);
    assert_eq!(on.detail["after"]["enabled"], true);
    assert!(
        on.detail["after"]["expires_at"]
            .as_str()
            .unwrap()
            .starts_with(&expires.to_string())
    );
    assert!(
        app.store
            .entitlements(id)
            .await
            .unwrap()
            .has("advanced_reports")
    );
    let off = act_and_audit(
        &app,
        &token,
        "acts",
        "module",
        "module=advanced_reports&enabled=off",
    )
    .await;
    assert_eq!(off.detail["before"]["enabled"], true);
    assert_eq!(off.detail["after"]["enabled"], false);

    let scheduled = act_and_audit(&app, &token, "acts", "cancel-at-period-end", "").await;
    assert_eq!(scheduled.action, "subscription.cancel_at");
    assert!(scheduled.detail["before"].is_null());
    assert!(scheduled.detail["after"].is_string());
    let kept = act_and_audit(&app, &token, "acts", "keep-subscription", "").await;
    assert!(kept.detail["before"].is_string());
    assert!(kept.detail["after"].is_null());

    let suspended = act_and_audit(&app, &token, "acts", "suspend", "").await;
    assert_eq!(suspended.action, "subscription.suspended");
    assert_eq!(suspended.detail["before"], "trial");
    assert_eq!(suspended.detail["after"], "suspended");
    app.wait_for_error("acts", StatusCode::FORBIDDEN, "tenant_suspended")
        .await;
    let reactivated = act_and_audit(&app, &token, "acts", "reactivate", "").await;
    assert_eq!(
        reactivated.action, "subscription.trial",
        "back to its trial"
    );
    assert_eq!(reactivated.detail["before"], "suspended");
    wait_served(&app, "acts").await;

    // Refused actions: a readable page, not JSON, and no audit row.
    let rows_before = app.store.audit_trail(id, 1000).await.unwrap().len();
    for (action, form, message) in [
        ("reactivate", "", "cannot become"),
        ("extend-trial", "days=0", "days"),
        ("plan", "plan=platinum", "no such plan"),
        ("module", "module=teleport&enabled=on", "no such module"),
        ("offboard", "grace=whenever", "grace"),
    ] {
        let refused = act(&app, &token, "acts", action, form).await;
        assert!(refused.status().is_client_error(), "{action} {form}");
        assert!(
            refused.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = refused.text().await.unwrap();
        assert!(page.contains("id=\"error\""), "{page}");
        assert!(page.contains(message), "{action} {form}: {page}");
    }
    assert_eq!(
        app.store.audit_trail(id, 1000).await.unwrap().len(),
        rows_before
    );
    wait_served(&app, "acts").await;

    let offboarded = act_and_audit(&app, &token, "acts", "offboard", "grace=1h").await;
    let acts_trail = app.store.audit_trail(id, 5).await.unwrap();
    let cancel = acts_trail
        .iter()
        .find(|entry| entry.action == "tenant.cancel")
        .unwrap_or_else(|| panic!("{acts_trail:?} / {offboarded:?}"));
    assert_eq!(cancel.actor, ACTOR);
    assert_eq!(cancel.detail["before"], "active");
    app.wait_for_error("acts", StatusCode::GONE, "tenant_cancelled")
        .await;

    act_and_audit(&app, &token, "other", "cancel-now", "").await;
    let trail = app
        .store
        .audit_trail(tenant_id(&app, "other").await, 5)
        .await
        .unwrap();
    let cancelled = trail
        .iter()
        .find(|entry| entry.action == "subscription.cancelled")
        .unwrap_or_else(|| panic!("{trail:?}"));
    assert_eq!(cancelled.actor, ACTOR);
    assert_eq!(cancelled.detail["before"], "trial");
    assert_eq!(cancelled.detail["after"], "cancelled");
    app.wait_for_error("other", StatusCode::GONE, "tenant_cancelled")
        .await;

    // The JSON tenant view shows what the page shows, the audit trail newest first.
    let shown: Value = admin_call(&app, Method::GET, "/api/v1/admin/tenants/acts", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["plan"]["code"], "professional");
    assert_eq!(shown["subscription"]["status"], "cancelled");
    assert!(!shown["provisioning"].as_array().unwrap().is_empty());
    assert!(shown["transitions"].as_array().unwrap().len() >= 4);
    let audit = shown["audit"].as_array().unwrap();
    assert_eq!(audit[0]["action"], acts_trail[0].action.as_str());
    assert_eq!(audit.last().unwrap()["action"], "subscription.trial");

    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_access_is_audited_first_read_only_and_shows_no_password_hashes() {
    let app = TestApp::spawn().await;
    app.active_tenant("helpdesk").await;
    let token = admin_token(&app).await;
    let id = tenant_id(&app, "helpdesk").await;
    let tenant_database = crate::harness::connect(&app.tenant_url("helpdesk").await)
        .await
        .unwrap();
    tenant_database
        .batch_execute(
            "INSERT INTO items (sku, name) VALUES ('ASP-100', 'Aspirin'), ('IBU-200', 'Ibuprofen')",
        )
        .await
        .unwrap();

    let response = admin_call(
        &app,
        Method::GET,
        "/api/v1/admin/tenants/helpdesk/support?reason=ticket%2042",
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("argon2") && !text.contains("password"),
        "{text}"
    );
    let support: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(support["read_only"], true);
    assert_eq!(support["users"][0]["email"], "owner@helpdesk.test");
    assert_eq!(support["users"][0]["role"], "owner");
    assert_eq!(support["users"][0]["active"], true);
    assert_eq!(support["counts"]["items"], 2);
    assert_eq!(support["counts"]["users"], 1);
    let trail = app.store.audit_trail(id, 10).await.unwrap();
    assert_eq!(trail[0].action, "tenant.support_access");
    assert_eq!(trail[0].actor, ACTOR);
    assert_eq!(trail[0].detail["via"], "api");
    assert_eq!(trail[0].detail["reason"], "ticket 42");

    // The page: the same data, one more audit row.
    let page = admin_call(&app, Method::GET, "/admin/tenants/helpdesk/support", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("owner@helpdesk.test"), "{page}");
    assert!(!page.contains("argon2"));
    let trail = app.store.audit_trail(id, 10).await.unwrap();
    let accesses: Vec<_> = trail
        .iter()
        .filter(|entry| entry.action == "tenant.support_access")
        .collect();
    assert_eq!(accesses.len(), 2);
    assert_eq!(accesses[0].detail["via"], "console");

    // The session support reads through refuses writes, and cannot be made read-write.
    let tenant = app.store.tenant(id).await.unwrap();
    for write in [
        "INSERT INTO items (sku, name) VALUES ('X-1', 'Written by support')",
        "UPDATE users SET role = 'staff'",
        "DELETE FROM items",
    ] {
        let session = admin::support::SupportSession::open(&app.keyring, &tenant)
            .await
            .unwrap();
        let refused = session.query(write).await.unwrap_err();
        assert_eq!(
            refused.sql_state(),
            Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
            "{write}: {refused}"
        );
        session.close().await;
    }
    let session = admin::support::SupportSession::open(&app.keyring, &tenant)
        .await
        .unwrap();
    assert!(session.query("SET TRANSACTION READ WRITE").await.is_err());
    session.close().await;
    let row = tenant_database
        .query_one(
            "SELECT (SELECT count(*) FROM items) AS items, (SELECT role FROM users) AS role",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("items"), 2);
    assert_eq!(row.get::<_, String>("role"), "owner");

    // If the access cannot be recorded, nothing is read.
    let control_plane = superuser_client(&app.database).await;
    control_plane
        .batch_execute(
            "CREATE FUNCTION refuse_support_audit() RETURNS trigger LANGUAGE plpgsql AS \
               $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$; \
             CREATE TRIGGER refuse_support_audit BEFORE INSERT ON audit_log FOR EACH ROW \
               WHEN (NEW.action = 'tenant.support_access') EXECUTE FUNCTION refuse_support_audit();",
        )
        .await
        .unwrap();
    let unrecorded = admin_call(
        &app,
        Method::GET,
        "/api/v1/admin/tenants/helpdesk/support",
        &token,
    )
    .send()
    .await
    .unwrap();
    assert!(unrecorded.status().is_server_error());
    assert!(
        !unrecorded
            .text()
            .await
            .unwrap()
            .contains("owner@helpdesk.test")
    );
    control_plane
        .batch_execute(
            "DROP TRIGGER refuse_support_audit ON audit_log; DROP FUNCTION refuse_support_audit();",
        )
        .await
        .unwrap();

    let missing = admin_call(
        &app,
        Method::GET,
        "/api/v1/admin/tenants/nobody/support",
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(error_code(missing).await.0, StatusCode::NOT_FOUND);

    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_needs_a_session() {
    let app = TestApp::spawn().await;
    app.active_tenant("locked").await;
    let id = tenant_id(&app, "locked").await;
    for path in [
        "/admin/tenants",
        "/admin/tenants?status=active&plan=starter",
        "/admin/tenants/locked",
        "/admin/tenants/locked/actions/suspend",
        "/admin/tenants/locked/support",
    ] {
        for cookie in [None, Some("silo_admin=forged-token")] {
            let mut request = app.request(Method::GET, &app.apex_host(), path);
            if let Some(cookie) = cookie {
                request = request.header(header::COOKIE, cookie);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(response.headers()[header::LOCATION], "/admin/login");
        }
    }
    for action in ["suspend", "offboard", "plan"] {
        let response = app
            .request(
                Method::POST,
                &app.apex_host(),
                &format!("/admin/tenants/locked/actions/{action}"),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("plan=enterprise&grace=0s")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{action}");
        assert_eq!(response.headers()[header::LOCATION], "/admin/login");
    }
    for path in [
        "/api/v1/admin/tenants?plan=starter",
        "/api/v1/admin/tenants/locked",
        "/api/v1/admin/tenants/locked/support",
    ] {
        let response = app.apex_get(path).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned()),
            "{path}"
        );
    }
    assert!(app.store.audit_trail(id, 10).await.unwrap().is_empty());
    assert_eq!(
        app.store.entitlements(id).await.unwrap().plan.code,
        "starter"
    );
    assert_eq!(
        app.tenant_get("locked", "/api/v1/health").await.status(),
        StatusCode::OK
    );
    app.finish().await;
}
