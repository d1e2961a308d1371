//! The owner's settings as pages: users and invitations (invite, revoke, join from the link),
//! API keys (the secret shown once), custom domains (the TXT record to create), branding (on
//! every page), integration credentials, in a real browser; staff get 403 pages; the plan and
//! billing page sends the owner to Stripe Checkout and the customer portal (a local stand-in),
//! and a portal refusal is a 502 page that records nothing.

use std::sync::atomic::Ordering;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::browser::Browser;
use crate::harness::{TestApp, TestOptions};
use crate::session::Session;
use crate::stripe_stand_in::StripeStandIn;

const PASSWORD: &str = "violet tram oyster gravel";
const NEW_PASSWORD: &str = "quartz lantern meadow pilot";

pub(crate) async fn sign_in_in_browser(browser: &Browser, app: &TestApp, slug: &str) -> String {
    let base = format!("http://{slug}.localhost:{}", app.address.port());
    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.fill("#email", &format!("owner@{slug}.test")).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_invites_and_revokes_in_the_browser_and_staff_get_403_pages() {
    let app = TestApp::spawn().await;
    app.active_tenant("people").await;
    let browser = Browser::start().await;
    sign_in_in_browser(&browser, &app, "people").await;
    browser.click("nav.main a[href='/workspace']").await;
    browser.wait_for_text("h1", |text| text == "Settings").await;
    browser.click("a[href='/workspace/users']").await;
    browser
        .wait_for_text("h1", |text| text == "Users and invitations")
        .await;
    let invite = "form[action='/workspace/users/invite'] button";

    // A bad email: the problem beside its field, what was typed kept.
    browser.fill("#email", "not an email").await;
    browser.click(invite).await;
    browser
        .wait_for_text("#email-error", |text| text.starts_with("Email"))
        .await;
    // Two invitations: each link is shown once made, both are listed as pending.
    browser.fill("#email", "gone@people.test").await;
    browser.click(invite).await;
    let first = browser
        .wait_for_text("#invitation-link", |text| {
            text.contains("/join?token=inv1.")
        })
        .await;
    browser.fill("#email", "clerk@people.test").await;
    browser.click(invite).await;
    let second = browser
        .wait_for_text("#invitation-link", |text| {
            text.contains("/join?token=") && text != first
        })
        .await;
    browser
        .wait_for_text("#invitations", |text| {
            text.contains("gone@people.test") && text.contains("clerk@people.test")
        })
        .await;
    // Revoked: gone from the list, and its link creates nobody.
    browser
        .click("button[aria-label='Revoke gone@people.test']")
        .await;
    browser
        .wait_for_text("#invitations", |text| {
            !text.contains("gone@people.test") && text.contains("clerk@people.test")
        })
        .await;
    browser.client.goto(&first).await.unwrap();
    browser.fill("#password", NEW_PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("#join-problem", |text| text.contains("revoked"))
        .await;
    // The other link: the invited person chooses a password and joins as staff, signed in.
    browser.client.goto(&second).await.unwrap();
    browser.fill("#display_name", "Clerk").await;
    browser.fill("#password", NEW_PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;
    browser.finish().await;

    let owner = Session::owner(&app, "people").await;
    let users = owner
        .expect(Method::GET, "/api/v1/users", None, StatusCode::OK)
        .await;
    let emails: Vec<&str> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["owner@people.test", "clerk@people.test"]);
    let pending = owner
        .expect(
            Method::GET,
            "/api/v1/users/invitations",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(pending["data"], json!([]));

    // Staff see no settings in the navigation and get a 403 page on every settings page and form.
    let staff = Session::sign_in(&app, "people", "clerk@people.test", NEW_PASSWORD).await;
    let items = staff.page(Method::GET, "/items", None).await;
    let html = items.text().await.unwrap();
    assert!(
        !html.contains("href=\"/workspace\"") && !html.contains("href=\"/billing\""),
        "{html}"
    );
    for path in [
        "/workspace",
        "/workspace/users",
        "/workspace/branding",
        "/workspace/domains",
        "/workspace/api-keys",
        "/workspace/integrations",
        "/branches",
        "/billing",
    ] {
        let refused = staff.page(Method::GET, path, None).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        let html = refused.text().await.unwrap();
        assert!(html.contains("This needs the owner role"), "{path}: {html}");
    }
    let posted = staff
        .page(
            Method::POST,
            "/workspace/users/invite",
            Some("email=sneaky%40people.test&role=owner"),
        )
        .await;
    assert_eq!(posted.status(), StatusCode::FORBIDDEN);
    let pending = owner
        .expect(
            Method::GET,
            "/api/v1/users/invitations",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(pending["data"], json!([]));
    // The old script page's address leads to the new settings.
    let moved = owner.page(Method::GET, "/settings", None).await;
    assert_eq!(moved.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(moved.headers()[LOCATION], "/workspace");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_sees_a_key_once_adds_a_domain_and_brands_every_page_in_the_browser() {
    let app = TestApp::spawn().await;
    let (_, shop) = Session::owner_on_plan(&app, "brand", "professional").await;
    let browser = Browser::start().await;
    let base = sign_in_in_browser(&browser, &app, "brand").await;

    // An API key: its secret on the answering page only, and it works until revoked.
    browser.open(&format!("{base}/workspace/api-keys")).await;
    browser
        .click("form[action='/workspace/api-keys'] button")
        .await;
    browser
        .wait_for_text("#name-error", |text| text.starts_with("Name"))
        .await;
    browser.fill("#name", "Online shop").await;
    browser
        .click("form[action='/workspace/api-keys'] button")
        .await;
    let secret = browser
        .wait_for_text("#key-secret", |text| text.starts_with("silo_"))
        .await;
    let key = Session {
        app: &app,
        slug: "brand".to_owned(),
        token: secret.clone(),
    };
    let me = key
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    assert_eq!(me["role"], "read_only");
    browser.open(&format!("{base}/workspace/api-keys")).await;
    browser
        .wait_for_text("#keys", |text| text.contains("Online shop"))
        .await;
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains(&secret), "the secret is shown once only");
    browser
        .click("button[aria-label='Revoke Online shop']")
        .await;
    browser
        .wait_for_text("#keys", |text| text.contains("Revoked"))
        .await;
    assert_eq!(
        key.call(Method::GET, "/api/v1/me", None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A custom domain: the TXT record to create is shown with it.
    browser.open(&format!("{base}/workspace/domains")).await;
    browser.fill("#domain", "not a domain").await;
    browser
        .click("form[action='/workspace/domains'] button")
        .await;
    browser
        .wait_for_text("#domain-error", |text| text.starts_with("Domain"))
        .await;
    browser.fill("#domain", "shop.brand-example.test").await;
    browser
        .click("form[action='/workspace/domains'] button")
        .await;
    let record = browser
        .wait_for_text("#domains .txt-name", |text| !text.is_empty())
        .await;
    assert_eq!(record, "_silo-challenge.shop.brand-example.test");
    let token = browser
        .wait_for_text("#domains .txt-value", |text| !text.is_empty())
        .await;
    let stored = app.store.domains_of(shop).await.unwrap();
    assert_eq!(token, stored[0].verification_token);
    browser
        .wait_for_text("#domains .status", |text| {
            text == "Waiting for verification"
        })
        .await;

    // An integration credential: listed by its last four characters, never in the page.
    browser
        .open(&format!("{base}/workspace/integrations"))
        .await;
    browser.fill("#name", "shipping_api").await;
    browser.fill("#secret", "tok-abcdef-9876").await;
    browser
        .click("form[action='/workspace/integrations'] button")
        .await;
    browser
        .wait_for_text("#integrations", |text| text.contains("…9876"))
        .await;
    assert!(
        !browser
            .client
            .source()
            .await
            .unwrap()
            .contains("tok-abcdef")
    );

    // Branding: a bad colour beside its field; saved, it is on every page.
    browser.open(&format!("{base}/workspace/branding")).await;
    browser.fill("#display_name", "Brand Chemists").await;
    browser.fill("#primary_color", "green").await;
    browser
        .click("form[action='/workspace/branding'] button")
        .await;
    browser
        .wait_for_text("#primary_color-error", |text| text.starts_with("Colour"))
        .await;
    browser.fill("#primary_color", "#1a7f5a").await;
    browser
        .click("form[action='/workspace/branding'] button")
        .await;
    browser
        .wait_for_text("#saved", |text| text.starts_with("Saved"))
        .await;
    browser.open(&format!("{base}/items")).await;
    browser
        .wait_for_text(".topbar .name", |text| text == "Brand Chemists")
        .await;
    let colour = browser
        .client
        .execute(
            "return getComputedStyle(document.querySelector('.topbar')).backgroundColor",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(colour, json!("rgb(26, 127, 90)"));
    browser.finish().await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_page_goes_to_checkout_and_the_portal_and_a_refusal_records_nothing() {
    let stripe = StripeStandIn::start().await;
    let app = TestApp::spawn_with(TestOptions {
        stripe: Some((stripe.base.clone(), "sk_test_pages".to_owned().into())),
        ..TestOptions::default()
    })
    .await;
    let shop = app.active_tenant("payer").await.tenant_id;
    let owner = Session::owner(&app, "payer").await;

    let page = owner.page(Method::GET, "/billing", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    for shown in [
        "Starter",
        "Trial: 1",
        "no-billing-account",
        "data-usage=\"api_keys\"",
        "id=\"checkout\"",
    ] {
        assert!(html.contains(shown), "{shown}: {html}");
    }
    assert!(!html.contains("manage-billing"), "{html}");
    // Before a first checkout there is no billing account: a clear message, Stripe not called.
    let early = owner.page(Method::POST, "/billing/portal", Some("")).await;
    assert_eq!(early.status(), StatusCode::CONFLICT);
    assert!(
        early
            .text()
            .await
            .unwrap()
            .contains("no billing account yet")
    );
    // A plan that does not exist: shown on the page, Stripe not called.
    let bad = owner
        .page(
            Method::POST,
            "/billing/checkout",
            Some("plan=platinum&interval=year"),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(stripe.paths().is_empty());

    // Upgrade: 303 to Checkout (the customer is made first).
    let upgrade = owner
        .page(
            Method::POST,
            "/billing/checkout",
            Some("plan=professional&interval=year"),
        )
        .await;
    assert_eq!(upgrade.status(), StatusCode::SEE_OTHER);
    let location = upgrade.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://checkout.stripe.test/"),
        "{location}"
    );
    assert_eq!(stripe.paths(), ["/v1/customers", "/v1/checkout/sessions"]);

    // Now the portal: 303 to Stripe's page for this customer, returning to the billing page.
    let html = owner
        .page(Method::GET, "/billing", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("manage-billing"), "{html}");
    let portal = owner.page(Method::POST, "/billing/portal", Some("")).await;
    assert_eq!(portal.status(), StatusCode::SEE_OTHER);
    let location = portal.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("https://billing.stripe.test/p/session/"),
        "{location}"
    );
    let call = stripe.calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(call.path, "/v1/billing_portal/sessions");
    assert_eq!(call.field("customer").as_deref(), Some("cus_local_1"));
    assert!(
        call.field("return_url")
            .unwrap()
            .ends_with("payer.localhost/billing")
    );
    assert_eq!(call.authorization.as_deref(), Some("Bearer sk_test_pages"));

    // Stripe refuses: a 502 page saying so, and nothing recorded.
    stripe.refuse_portal.store(true, Ordering::SeqCst);
    let before = (
        format!("{:?}", app.store.subscription(shop).await.unwrap()),
        app.store.audit_of(shop).await.unwrap().len(),
    );
    let refused = owner.page(Method::POST, "/billing/portal", Some("")).await;
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    assert!(
        refused.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("did not accept") && html.contains("id=\"billing-problem\""),
        "{html}"
    );
    let after = (
        format!("{:?}", app.store.subscription(shop).await.unwrap()),
        app.store.audit_of(shop).await.unwrap().len(),
    );
    assert_eq!(before, after);
    assert_eq!(stripe.paths().len(), 4);

    // Only the owner: staff get a 403 page and Stripe hears nothing.
    owner
        .expect(
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "till@payer.test", "password": PASSWORD, "role": "staff"})),
            StatusCode::CREATED,
        )
        .await;
    let staff = Session::sign_in(&app, "payer", "till@payer.test", PASSWORD).await;
    let forbidden = staff.page(Method::POST, "/billing/portal", Some("")).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(stripe.paths().len(), 4);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_branches_page_adds_within_the_plan_and_renames() {
    let app = TestApp::spawn().await;
    let shop = app.active_tenant("stores").await.tenant_id;
    let owner = Session::owner(&app, "stores").await;
    let form = "code=NORTH&name=North+Street&address=";

    // Starter allows one branch (the main one): the limit is said on the page, nothing added.
    let refused = owner.page(Method::POST, "/branches", Some(form)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("id=\"branch-problem\"") && html.contains("allows 1 branches"),
        "{html}"
    );
    app.store
        .set_plan(shop, "professional", "test:setup")
        .await
        .unwrap();
    owner
        .wait_until_answered("/api/v1/api-keys", StatusCode::OK, "the plan change")
        .await;
    // Missing fields: each beside its field, what was typed kept.
    let bad = owner
        .page(
            Method::POST,
            "/branches",
            Some("code=&name=&address=Quay+1"),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("id=\"code-error\"") && html.contains("id=\"name-error\""),
        "{html}"
    );
    assert!(html.contains("value=\"Quay 1\""), "{html}");

    let added = owner.page(Method::POST, "/branches", Some(form)).await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let branches = owner
        .expect(Method::GET, "/api/v1/branches", None, StatusCode::OK)
        .await;
    let north = branches["data"][1]["id"].as_i64().unwrap();
    let renamed = owner
        .page(
            Method::POST,
            &format!("/branches/{north}"),
            Some("name=North+Quay"),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::SEE_OTHER);
    let html = owner
        .page(Method::GET, "/branches", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("value=\"North Quay\"") && !html.contains("North Street"),
        "{html}"
    );
    let empty = owner
        .page(Method::POST, &format!("/branches/{north}"), Some("name="))
        .await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.finish().await;
}
