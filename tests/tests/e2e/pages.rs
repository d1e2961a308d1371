//! Pages in a real browser: the apex signup form creates a workspace and links to it; a taken
//! subdomain shows the API's message and creates nothing.

use crate::browser::Browser;
use crate::harness::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signup_form_creates_a_workspace_and_links_to_it() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    let home = format!("http://localhost:{}/", app.address.port());
    browser.client.goto(&home).await.unwrap();
    browser.fill("#company_name", "Corner Pharmacy").await;
    browser.fill("#subdomain", "corner").await;
    browser.fill("#admin_email", "owner@corner.test").await;
    browser
        .fill("#admin_password", "a long enough password")
        .await;
    browser.click("#submit").await;
    browser
        .wait_for_text("#status", |text| text.contains("ready"))
        .await;
    let link = browser
        .client
        .find(fantoccini::Locator::Css("#tenant-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        link,
        format!("http://corner.localhost:{}/", app.address.port())
    );

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

    // The same subdomain again: the API's message is shown, nothing more is created.
    browser.client.goto(&home).await.unwrap();
    browser.fill("#company_name", "Copycat").await;
    browser.fill("#subdomain", "corner").await;
    browser.fill("#admin_email", "copy@cat.test").await;
    browser
        .fill("#admin_password", "a long enough password")
        .await;
    browser.click("#submit").await;
    let error = browser
        .wait_for_text("#status.error", |text| !text.is_empty())
        .await;
    assert!(error.to_lowercase().contains("taken"), "{error}");
    assert_eq!(app.store.tenants().await.unwrap().len(), 1);
    browser.finish().await;
    app.finish().await;
}
