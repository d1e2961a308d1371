//! Pages in a real browser: the apex signup form creates a workspace and lands its owner in it,
//! signed in; sign-out and the sign-in page; a taken subdomain shows the API's message and
//! creates nothing.

use crate::browser::Browser;
use crate::harness::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signup_form_creates_a_workspace_and_lands_the_owner_in_it_signed_in() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    let home = format!("http://localhost:{}/", app.address.port());
    browser.client.goto(&home).await.unwrap();
    browser.fill("#company_name", "Corner Pharmacy").await;
    browser.fill("#subdomain", "corner").await;
    browser.fill("#admin_email", "owner@corner.test").await;
    browser
        .fill("#admin_password", "violet tram oyster gravel")
        .await;
    browser.click("#submit").await;
    // Once the workspace is ready the page takes the owner straight in, signed in, through a
    // one-time link: the dashboard of their own workspace, naming them.
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;
    let link = format!("http://corner.localhost:{}/", app.address.port());
    assert_eq!(browser.client.current_url().await.unwrap().as_str(), link);
    let who = browser
        .wait_for_text(".topbar .who", |text| !text.is_empty())
        .await;
    assert_eq!(who, "owner@corner.test");
    browser
        .wait_for_text("#plan-detail", |text| text.starts_with("Trial:"))
        .await;

    // The owner's plan and settings open with the same session: no second sign-in.
    browser.click("nav.main a[href='/billing']").await;
    browser
        .wait_for_text("#plan-name", |text| text.contains("Starter"))
        .await;
    browser.click("nav.main a[href='/']").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;

    // Signing out leads to the sign-in page; signing in there comes back to the dashboard.
    browser.click(".topbar button").await;
    browser
        .wait_for_text("h1", |text| text.starts_with("Sign in to"))
        .await;
    browser.fill("#email", "owner@corner.test").await;
    browser.fill("#password", "not the password").await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("#sign-in-problem", |text| text.contains("wrong"))
        .await;
    let kept = browser
        .client
        .find(fantoccini::Locator::Css("#email"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("owner@corner.test"));
    browser.fill("#password", "violet tram oyster gravel").await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;

    // Chromium resolves *.localhost to loopback: the link reaches the tenant's own database.
    browser
        .client
        .goto(&format!("{link}api/v1/health"))
        .await
        .unwrap();
    let body = browser
        .wait_for_text("body", |text| text.contains("corner"))
        .await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["tenant"], "corner");
    assert_eq!(health["schema_version"], tenant_schema::latest_version());

    // Everything wrong at once: each problem beside its field, the focus on the first, the
    // input kept, nothing created.
    browser.client.goto(&home).await.unwrap();
    browser.fill("#company_name", "Copycat").await;
    browser.fill("#subdomain", "x").await;
    browser.fill("#admin_email", "not-an-email").await;
    browser.fill("#admin_password", "short").await;
    // The browser's own checks would stop a person first; submit as a script would.
    browser
        .client
        .execute(
            "document.getElementById('signup').noValidate = true",
            vec![],
        )
        .await
        .unwrap();
    browser.click("#submit").await;
    let subdomain = browser
        .wait_for_text("#subdomain-error", |text| !text.is_empty())
        .await;
    assert!(subdomain.contains("3 to 63"), "{subdomain}");
    let email = browser
        .wait_for_text("#admin_email-error", |text| !text.is_empty())
        .await;
    assert!(email.contains("name@example.com"), "{email}");
    let password = browser
        .wait_for_text("#admin_password-error", |text| !text.is_empty())
        .await;
    assert!(password.contains("at least 10"), "{password}");
    let focused = browser
        .client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, serde_json::json!("subdomain"));
    assert!(
        browser
            .client
            .find(fantoccini::Locator::Css("#company_name-error"))
            .await
            .is_err(),
        "a valid field has no error"
    );

    // The same subdomain again: the message beside the subdomain, nothing more is created.
    browser.client.goto(&home).await.unwrap();
    browser.fill("#company_name", "Copycat").await;
    browser.fill("#subdomain", "corner").await;
    browser.fill("#admin_email", "copy@cat.test").await;
    browser
        .fill("#admin_password", "violet tram oyster gravel")
        .await;
    browser.click("#submit").await;
    let error = browser
        .wait_for_text("#subdomain-error", |text| !text.is_empty())
        .await;
    assert!(error.to_lowercase().contains("taken"), "{error}");
    assert_eq!(app.store.tenants().await.unwrap().len(), 1);
    browser.finish().await;
    app.finish().await;
}

/// The migration dashboard in a real browser: log in with password and TOTP, preview a rollout
/// (its lint finding shown), accept the risk and start it (confirming the browser's dialog),
/// watch it complete live, find the failed tenant's error through the filter, and see the new
/// released version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_dashboard_starts_a_rollout_and_shows_it_live() {
    const INDEX_RULE: &str = "require-concurrent-index-creation";
    let migrations = migrator::MigrationSet::with_extra(&[
        (
            "V3__loyalty_cards",
            "CREATE TABLE loyalty_cards (id bigint PRIMARY KEY);\n\
             CREATE INDEX items_name_idx ON items (name);",
        ),
        (
            "V4__guarded",
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM branches WHERE code = 'BROKEN') THEN \
               RAISE EXCEPTION 'branch BROKEN blocks this migration'; END IF; END $$; \
             SELECT pg_sleep(0.3);",
        ),
    ])
    .unwrap();
    let app = TestApp::spawn_with(crate::harness::TestOptions {
        migrations: Some(migrations),
        ..Default::default()
    })
    .await;
    for slug in ["one", "two", "three"] {
        app.active_tenant(slug).await;
    }
    crate::harness::connect(&app.tenant_url("two").await)
        .await
        .unwrap()
        .batch_execute("INSERT INTO branches (code, name) VALUES ('BROKEN', 'Blocks V4')")
        .await
        .unwrap();
    let secret = admin::create_admin(
        &app.store,
        &app.keyring,
        "ops@silo.test",
        secrecy::SecretString::from("correct horse battery staple"),
    )
    .await
    .unwrap()
    .totp_secret;

    let browser = Browser::start().await;
    let base = format!("http://localhost:{}", app.address.port());
    browser.client.goto(&format!("{base}/admin")).await.unwrap();
    assert!(
        browser
            .client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login")
    );
    // A wrong code is refused with a message; the right one logs in.
    browser.fill("#email", "ops@silo.test").await;
    browser
        .fill("#password", "correct horse battery staple")
        .await;
    browser.fill("#totp_code", "000000").await;
    browser.click("#login").await;
    browser
        .wait_for_text("#error", |text| text.contains("wrong"))
        .await;
    browser.fill("#email", "ops@silo.test").await;
    browser
        .fill("#password", "correct horse battery staple")
        .await;
    browser
        .fill("#totp_code", &admin::current_code(&secret).unwrap())
        .await;
    browser.click("#login").await;
    browser.wait_for_text("#released", |text| text == "2").await;

    browser.fill("#stages", "100").await;
    browser.fill("#max_failures", "1").await;
    browser.fill("#concurrency", "1").await;
    browser.click("#preview").await;
    browser
        .wait_for_text("h3", |text| {
            text.contains("Stage 1 (up to 100%): 3 tenants")
        })
        .await;
    // The preview shows V3's index without CONCURRENTLY; the start needs the risk accepted.
    browser
        .wait_for_text("#lint-findings", |text| {
            text.contains("V3__loyalty_cards.sql") && text.contains(INDEX_RULE)
        })
        .await;
    // It says which way it goes, that it moves every tenant, and what could be undone.
    browser
        .wait_for_text("#direction", |text| {
            text.contains("forward") && text.contains("3 of 3 tenants would move to version 4")
        })
        .await;
    browser
        .wait_for_text("#reverts", |text| {
            text.contains("V4") && text.contains("no: there is no V4__guarded.revert.sql")
        })
        .await;
    browser.click(&format!("#accept-{INDEX_RULE}")).await;
    browser.click("#confirm-start").await;
    browser.client.accept_alert().await.unwrap();
    // The page updates itself while the rollout runs.
    browser
        .wait_for_text("#rollout-state", |text| text == "running")
        .await;
    browser
        .wait_for_text("#accepted-risks", |text| text.contains(INDEX_RULE))
        .await;
    browser
        .wait_for_text("#rollout-state", |text| text == "completed")
        .await;
    // Completed: no pause, resume or abort any more (the failed tenant may still be retried).
    let actions = browser
        .wait_for_text("#actions", |text| text.contains("Retry failed"))
        .await;
    assert!(
        !actions.contains("Pause") && !actions.contains("Resume") && !actions.contains("Abort"),
        "{actions}"
    );
    let error = browser
        .wait_for_text("tr[data-slug='two'] .error-text", |text| !text.is_empty())
        .await;
    assert!(error.contains("branch BROKEN blocks"), "{error}");
    browser.click("#filter-failed").await;
    browser
        .wait_for_text("#tenants", |text| {
            text.contains("two") && !text.contains("three")
        })
        .await;

    browser.client.goto(&format!("{base}/admin")).await.unwrap();
    browser.wait_for_text("#released", |text| text == "4").await;
    let audit = app
        .control_plane()
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE actor = 'admin:ops@silo.test' AND action = 'rollout.start'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(audit, 1);
    browser.finish().await;
    app.finish().await;
}
