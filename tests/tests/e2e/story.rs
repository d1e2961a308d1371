//! The back office as one pharmacy lives it, in a real browser from start to end: sign up and
//! land signed in, find stock takes behind an upgrade on Starter, add an item and a supplier,
//! receive stock, sell (an oversold line refused on its line, nothing recorded), count stock,
//! read the dashboard and the report's chart, invite a staff member who joins from the mailed
//! link and sees only staff controls, reset the owner's password from the mailed link, and meet
//! the suspended workspace's page. Each step screenshots itself when it fails (`browser.rs`).

use std::time::{Duration, Instant};

use control_plane::model::TenantStatus;
use fantoccini::Locator;

use crate::browser::Browser;
use crate::harness::{TestApp, TestOptions};
use crate::smtp::SmtpReceiver;

const PASSWORD: &str = "violet tram oyster gravel";
const STAFF_PASSWORD: &str = "amber kettle meadow fossil";
const NEW_PASSWORD: &str = "harbour lantern quartz pepper";

/// The `href`s of the main navigation's entries.
async fn navigation(browser: &Browser) -> Vec<String> {
    let mut hrefs = Vec::new();
    for link in browser
        .client
        .find_all(Locator::Css("nav.main a"))
        .await
        .unwrap()
    {
        hrefs.extend(link.attr("href").await.unwrap());
    }
    hrefs
}

async fn exists(browser: &Browser, css: &str) -> bool {
    browser.client.find(Locator::Css(css)).await.is_ok()
}

/// Reloads `url` until `css` is on the page (a change the router hears of, not at once).
async fn reload_until(browser: &Browser, url: &str, css: &str, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        browser.open(url).await;
        if exists(browser, css).await {
            return;
        }
        if Instant::now() >= deadline {
            let shot = browser.screenshot(why).await;
            panic!("{why}: `{css}` never appeared at {url} (screenshot: {shot})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_out(browser: &Browser) {
    browser.click(".topbar button").await;
    browser
        .wait_for_text("h1", |text| text.starts_with("Sign in to"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pharmacy_from_signup_to_suspension_in_the_browser() {
    let receiver = SmtpReceiver::start().await;
    let app = TestApp::spawn_with(TestOptions {
        smtp_url: Some(receiver.url()),
        ..TestOptions::default()
    })
    .await;
    let browser = Browser::start().await;
    let port = app.address.port();
    let workspace = format!("http://story.localhost:{port}");

    // Signing up lands the owner in the workspace, signed in; the welcome mail links to it.
    browser.open(&format!("http://localhost:{port}/")).await;
    browser.fill("#company_name", "Story Pharmacy").await;
    browser.fill("#subdomain", "story").await;
    browser.fill("#admin_email", "owner@story.test").await;
    browser.fill("#admin_password", PASSWORD).await;
    browser.click("#submit").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;
    let welcome = receiver
        .wait_for("owner@story.test", 1, Duration::from_secs(15))
        .await;
    assert!(
        welcome.link_starting(&workspace).is_some(),
        "the welcome mail links to the workspace: {welcome:?}"
    );

    // Starter has no stock takes: the navigation marks them, the page offers the upgrade and
    // no form that would fail.
    browser.click("nav.main a[href='/stock-takes']").await;
    browser
        .wait_for_text("#upgrade h2", |text| text == "Not in your plan")
        .await;
    assert!(!exists(&browser, "form[action='/stock-takes']").await);
    assert!(exists(&browser, "nav.main a.locked[href='/stock-takes']").await);
    let tenant = app.store.tenant_by_slug("story").await.unwrap().unwrap();
    app.store
        .set_plan(tenant.id, "professional", "story test")
        .await
        .unwrap();
    reload_until(
        &browser,
        &format!("{workspace}/stock-takes"),
        "form[action='/stock-takes']",
        "the upgrade reaches the stock takes page",
    )
    .await;

    // An item, a supplier, and stock received from it.
    browser.click("nav.main a[href='/items']").await;
    browser.click("a[href='/items/new']").await;
    browser.fill("#sku", "PARA").await;
    browser.fill("#name", "Paracetamol 500 mg").await;
    browser.fill("#cost_price_cents", "1.50").await;
    browser.fill("#sale_price_cents", "3.20").await;
    browser.fill("#reorder_level", "8").await;
    browser
        .click("form[action='/items/new'] button.primary")
        .await;
    browser
        .wait_for_text("#items", |text| text.contains("Paracetamol 500 mg"))
        .await;

    browser.click("nav.main a[href='/suppliers']").await;
    browser.fill("#name", "Wholesale Ltd").await;
    browser
        .click("form[action='/suppliers'] button.primary")
        .await;
    browser
        .wait_for_text("#suppliers", |text| text.contains("Wholesale Ltd"))
        .await;

    browser.click("nav.main a[href='/purchases/new']").await;
    browser.fill("#item_0", "PARA").await;
    browser.fill("#quantity_0", "10").await;
    browser.fill("#cost_0", "1.50").await;
    browser.click("button[value='receive']").await;
    browser
        .wait_for_text("#received", |text| text.contains("15.00"))
        .await;

    // A sale of more than the branch holds is refused on its line and records nothing; the
    // right quantity is priced, then recorded.
    browser.click("nav.main a[href='/sales/new']").await;
    browser.fill("#item_0", "para").await;
    browser.fill("#quantity_0", "12").await;
    browser.click("button[value='record']").await;
    let refused = browser
        .wait_for_text("#quantity_0-error", |text| !text.is_empty())
        .await;
    assert!(refused.starts_with("Not enough stock"), "{refused}");
    browser.click("nav.main a[href='/']").await;
    browser
        .wait_for_text("#today .figure", |text| text == "0.00")
        .await;
    browser.click("nav.main a[href='/sales/new']").await;
    browser.fill("#item_0", "para").await;
    browser.fill("#quantity_0", "2").await;
    browser.click("button[value='check']").await;
    browser.wait_for_text("#total", |text| text == "6.40").await;
    browser.click("button[value='record']").await;
    browser
        .wait_for_text("#recorded", |text| text.contains("6.40"))
        .await;

    // A stock take: 8 on hand, 7 counted, the variance shown, posted.
    browser.click("nav.main a[href='/stock-takes']").await;
    browser
        .click("form[action='/stock-takes'] button.primary")
        .await;
    browser
        .wait_for_text("#sheet", |text| text.contains("Paracetamol 500 mg"))
        .await;
    browser.fill("#sheet input[name^='count_']", "7").await;
    browser
        .click("form[action^='/stock-takes/'] .actions button.primary")
        .await;
    browser
        .wait_for_text("td.variance", |text| text == "-1")
        .await;
    browser.click("#post-stock-take").await;
    browser
        .wait_for_text("#status", |text| text == "completed")
        .await;

    // The dashboard: today's sale, and the item now at its reorder level.
    browser.click("nav.main a[href='/']").await;
    browser
        .wait_for_text("#today .figure", |text| text == "6.40")
        .await;
    browser
        .wait_for_text("#low-stock", |text| text.contains("Paracetamol 500 mg"))
        .await;

    // The report: the total, a chart drawn on the server, a CSV to download.
    browser.click("nav.main a[href='/reports']").await;
    browser
        .wait_for_text("#report-total", |text| text == "6.40")
        .await;
    assert!(exists(&browser, "svg#sales-chart").await);
    let csv = browser
        .client
        .find(Locator::Css("#csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(csv.starts_with("/reports/sales.csv?from="), "{csv}");

    // A staff member is invited, joins from the mailed link, and sees staff controls only.
    browser.open(&format!("{workspace}/workspace/users")).await;
    browser.fill("#email", "clerk@story.test").await;
    browser
        .click("form[action='/workspace/users/invite'] button.primary")
        .await;
    browser
        .wait_for_text("#invitations", |text| text.contains("clerk@story.test"))
        .await;
    let invitation = receiver
        .wait_for("clerk@story.test", 1, Duration::from_secs(15))
        .await;
    let join = invitation
        .link_starting(&format!("{workspace}/join?token="))
        .unwrap_or_else(|| panic!("no join link in {invitation:?}"));
    sign_out(&browser).await;
    browser.open(&join).await;
    browser.fill("#display_name", "Clara Clerk").await;
    browser.fill("#password", STAFF_PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;
    browser
        .wait_for_text(".topbar .who", |text| text == "Clara Clerk")
        .await;
    let nav = navigation(&browser).await;
    for staff_may in ["/sales/new", "/purchases/new", "/stock-takes"] {
        assert!(nav.iter().any(|href| href == staff_may), "{nav:?}");
    }
    for owners_only in ["/workspace", "/billing", "/branches"] {
        assert!(!nav.iter().any(|href| href == owners_only), "{nav:?}");
    }
    browser.open(&format!("{workspace}/workspace/users")).await;
    browser
        .wait_for_text("#refused", |text| !text.is_empty())
        .await;
    assert!(!exists(&browser, "form[action='/workspace/users/invite']").await);
    browser.open(&format!("{workspace}/")).await;
    sign_out(&browser).await;

    // The owner forgot the password: the mailed link sets a new one and signs in; the old one
    // no longer works.
    browser.click("a[href='/password/forgot']").await;
    browser.fill("#email", "owner@story.test").await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("#reset-sent", |text| !text.is_empty())
        .await;
    let reset = receiver
        .wait_for("owner@story.test", 2, Duration::from_secs(15))
        .await;
    let reset = reset
        .link_starting(&format!("{workspace}/password/reset?token="))
        .unwrap_or_else(|| panic!("no reset link in {reset:?}"));
    browser.open(&reset).await;
    browser.fill("#password", NEW_PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;
    sign_out(&browser).await;
    browser.fill("#email", "owner@story.test").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("#sign-in-problem", |text| !text.is_empty())
        .await;
    browser.fill("#password", NEW_PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;

    // Suspended: the workspace's users get a page saying so, not JSON.
    app.store
        .set_status(tenant.id, TenantStatus::Suspended)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        browser.open(&format!("{workspace}/")).await;
        let body = browser
            .client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains("This workspace is suspended") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no suspended page; last seen: {body} (screenshot: {})",
            browser.screenshot("suspended").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.finish().await;
    app.finish().await;
}
