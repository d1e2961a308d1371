//! The back office's pages: items in a real browser (add with every error beside its field at
//! once, fix, find, change, deactivate; usable at 390 px wide), and what each role sees.

use fantoccini::Locator;
use reqwest::header::{ACCEPT, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::browser::Browser;
use crate::harness::TestApp;
use crate::session::Session;

const PASSWORD: &str = "violet tram oyster gravel";

/// The tenant's main branch and a new item priced 2.50 with `stock` received into it.
pub(crate) async fn stocked_item(
    owner: &Session<'_>,
    sku: &str,
    name: &str,
    stock: u32,
) -> (i64, i64) {
    let branch = owner
        .expect(Method::GET, "/api/v1/branches", None, StatusCode::OK)
        .await["data"][0]["id"]
        .as_i64()
        .unwrap();
    let supplier = owner
        .expect(
            Method::POST,
            "/api/v1/suppliers",
            Some(json!({"name": "Wholesale"})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let item = owner
        .expect(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": sku, "name": name, "sale_price_cents": 250})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    owner
        .expect(
            Method::POST,
            "/api/v1/purchases",
            Some(json!({"branch_id": branch, "supplier_id": supplier,
                        "lines": [{"item_id": item, "quantity": stock, "unit_cost_cents": 100}]})),
            StatusCode::CREATED,
        )
        .await;
    (branch, item)
}

async fn sign_in_in_browser(browser: &Browser, base: &str, email: &str) {
    browser.client.goto(base).await.unwrap();
    browser.fill("#email", email).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("h1", |text| text == "Dashboard")
        .await;
}

async fn value_of(browser: &Browser, css: &str) -> String {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no `{css}`: {error}"))
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_manages_items_in_the_browser_with_errors_beside_their_fields() {
    let app = TestApp::spawn().await;
    app.active_tenant("shelves").await;
    let browser = Browser::start().await;
    let base = format!("http://shelves.localhost:{}/", app.address.port());
    sign_in_in_browser(&browser, &base, "owner@shelves.test").await;

    browser.click("nav.main a[href='/items']").await;
    browser
        .wait_for_text("#no-items", |text| text == "No items yet.")
        .await;
    browser.click("a[href='/items/new']").await;
    browser.wait_for_text("h1", |text| text == "New item").await;

    // Nothing filled and a price that is no amount: every problem at once, beside its field,
    // what was typed kept, focus on the first.
    browser.fill("#sale_price_cents", "twelve").await;
    browser.click("button.primary").await;
    let sku_error = browser
        .wait_for_text("#sku-error", |text| !text.is_empty())
        .await;
    assert!(sku_error.starts_with("SKU"), "{sku_error}");
    let price_error = browser
        .wait_for_text("#sale_price_cents-error", |text| !text.is_empty())
        .await;
    assert!(price_error.contains("amount"), "{price_error}");
    assert_eq!(value_of(&browser, "#sale_price_cents").await, "twelve");
    let focused = browser
        .client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("sku"));
    assert_eq!(
        app.tenant_get("shelves", "/api/v1/health").await.status(),
        StatusCode::OK
    );

    // The price fixed (now the API's own checks run): name still missing, beside its field.
    browser.fill("#sku", "PARA-500").await;
    browser.fill("#sale_price_cents", "4.50").await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("#name-error", |text| text.starts_with("Name"))
        .await;
    assert_eq!(value_of(&browser, "#sku").await, "PARA-500");

    browser.fill("#name", "Paracetamol 500 mg").await;
    browser.fill("#reorder_level", "10").await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("p.notice.info", |text| text == "Saved.")
        .await;
    let row = browser
        .wait_for_text("#items tbody tr", |text| text.contains("PARA-500"))
        .await;
    assert!(row.contains("4.50"), "{row}");

    // Find it, change it, deactivate it.
    browser.fill("#q", "parac").await;
    browser.click(".toolbar button").await;
    browser
        .wait_for_text("#items tbody", |text| text.contains("Paracetamol"))
        .await;
    browser.fill("#q", "aspirin").await;
    browser.click(".toolbar button").await;
    browser
        .wait_for_text("#no-items", |text| text.contains("matches"))
        .await;
    browser.client.goto(&format!("{base}items")).await.unwrap();
    browser.click("#items a").await;
    browser
        .wait_for_text("h1", |text| text == "Paracetamol 500 mg")
        .await;
    assert_eq!(value_of(&browser, "#sale_price_cents").await, "4.50");
    browser.fill("#sale_price_cents", "4.75").await;
    browser.click("button.primary").await;
    browser
        .wait_for_text("#items tbody", |text| text.contains("4.75"))
        .await;
    browser.click("#items a").await;
    browser.click("button.secondary").await;
    browser
        .wait_for_text("#items tbody", |text| text.contains("Inactive"))
        .await;

    // At a phone's width the page itself never scrolls sideways.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.client.refresh().await.unwrap();
    browser.wait_for_text("h1", |text| text == "Items").await;
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow,
        json!(0),
        "the items page scrolls sideways at 390 px"
    );
    browser.finish().await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_users_see_no_write_controls_and_are_refused_write_pages() {
    let app = TestApp::spawn().await;
    app.active_tenant("viewing").await;
    app.active_tenant("neighbour").await;
    let owner = Session::owner(&app, "viewing").await;
    owner
        .expect(
            Method::POST,
            "/api/v1/users",
            Some(
                json!({"email": "viewer@viewing.test", "password": PASSWORD, "role": "read_only"}),
            ),
            StatusCode::CREATED,
        )
        .await;
    owner
        .expect(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": "GAUZE", "name": "Gauze roll", "sale_price_cents": 250})),
            StatusCode::CREATED,
        )
        .await;
    let viewer = Session::sign_in(&app, "viewing", "viewer@viewing.test", PASSWORD).await;
    let page = |session: &Session<'_>, path: &'static str| {
        app.request(Method::GET, &app.tenant_host(&session.slug), path)
            .header(COOKIE, format!("silo_session={}", session.token))
            .header(ACCEPT, "text/html")
            .send()
    };

    let items = page(&viewer, "/items").await.unwrap();
    assert_eq!(items.status(), StatusCode::OK);
    let html = items.text().await.unwrap();
    assert!(html.contains("Gauze roll"), "{html}");
    assert!(
        !html.contains("/items/new"),
        "no add button for read-only: {html}"
    );
    assert!(
        !html.contains("href=\"/items/1\""),
        "no edit links for read-only: {html}"
    );
    assert!(
        !html.contains("href=\"/workspace\""),
        "settings are the owner's: {html}"
    );
    let new = page(&viewer, "/items/new").await.unwrap();
    assert_eq!(new.status(), StatusCode::FORBIDDEN);
    assert!(
        new.text()
            .await
            .unwrap()
            .contains("This needs the staff role")
    );

    // A read-only user posting the form anyway (same origin) changes nothing.
    let posted = app
        .request(Method::POST, &app.tenant_host("viewing"), "/items/new")
        .header(COOKIE, format!("silo_session={}", viewer.token))
        .header("origin", format!("http://{}", app.tenant_host("viewing")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("sku=X&name=Y")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::FORBIDDEN);
    let listed = owner
        .expect(Method::GET, "/api/v1/items", None, StatusCode::OK)
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // The owner sees the controls; the owner's cookie on the neighbour is no session there.
    let html = page(&owner, "/items").await.unwrap().text().await.unwrap();
    assert!(
        html.contains("/items/new") && html.contains("href=\"/workspace\""),
        "{html}"
    );
    let foreign = page(&owner.on("neighbour"), "/items").await.unwrap();
    assert!(foreign.url().path() == "/" || foreign.status() == StatusCode::SEE_OTHER);
    assert!(!foreign.text().await.unwrap().contains("Gauze"));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_page_charts_sales_offers_csv_and_prompts_an_upgrade_where_the_plan_lacks_it() {
    let app = TestApp::spawn().await;
    let accepted = app.active_tenant("charts").await;
    let owner = Session::owner(&app, "charts").await;
    let get = |path: String| {
        app.request(Method::GET, &app.tenant_host("charts"), &path)
            .header(COOKIE, format!("silo_session={}", owner.token))
            .header(ACCEPT, "text/html")
            .send()
    };

    // Starter has no reports: the navigation marks it and the page names the plans that do.
    let prompt = get("/reports".into()).await.unwrap();
    assert_eq!(prompt.status(), StatusCode::FORBIDDEN);
    let html = prompt.text().await.unwrap();
    assert!(
        html.contains("Not in your plan") && html.contains("Professional"),
        "{html}"
    );
    assert!(html.contains(r#"href="/reports" class="locked""#), "{html}");
    assert!(!html.contains("sales-chart"));

    app.store
        .set_plan(accepted.tenant_id, "professional", "test")
        .await
        .unwrap();
    owner
        .wait_until_answered("/api/v1/reports/sales", StatusCode::OK, "the plan change")
        .await;
    let (branch, item) = stocked_item(&owner, "ZINC", "Zinc tablets", 10).await;
    owner
        .expect(
            Method::POST,
            "/api/v1/sales",
            Some(json!({"branch_id": branch, "lines": [{"item_id": item, "quantity": 2}]})),
            StatusCode::CREATED,
        )
        .await;

    let today = chrono::Utc::now().date_naive();
    let page = get("/reports".into()).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"id="sales-chart""#), "{html}");
    assert_eq!(
        html.matches(r#"class="bar""#).count(),
        30,
        "a bar per day of 30"
    );
    assert!(html.contains(&format!(r#"data-day="{today}""#)), "{html}");
    assert!(
        html.contains(r#"<p class="figure" id="report-total">5.00</p>"#),
        "{html}"
    );
    assert!(html.contains("Zinc tablets"), "{html}");
    assert!(
        !html.contains("cdn") && !html.contains("<script"),
        "nothing from elsewhere: {html}"
    );

    let csv = get("/reports/sales.csv".into()).await.unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("day,sales,total_cents,total\n"), "{csv}");
    assert!(csv.contains(&format!("{today},1,500,5.00\n")), "{csv}");
    assert_eq!(csv.lines().count(), 31, "{csv}");

    // Dates that are not dates, and a range backwards: 422, the problem beside its field.
    for query in [
        "/reports?from=soon",
        "/reports?from=2026-12-05&to=2026-12-01",
    ] {
        let refused = get(query.into()).await.unwrap();
        assert_eq!(
            refused.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
        let html = refused.text().await.unwrap();
        assert!(html.contains(r#"id="from-error""#), "{query}: {html}");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_sale_prices_lines_refuses_too_little_stock_on_its_line_and_records_once_right() {
    let app = TestApp::spawn().await;
    app.active_tenant("till").await;
    let owner = Session::owner(&app, "till").await;
    let (branch, zinc) = stocked_item(&owner, "ZINC", "Zinc tablets", 3).await;
    owner
        .expect(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": "ZSYR", "name": "Zinc syrup", "sale_price_cents": 250})),
            StatusCode::CREATED,
        )
        .await;
    let host = app.tenant_host("till");
    let post = |fields: Vec<(&'static str, String)>| {
        let mut fields = fields;
        fields.push(("branch_id", branch.to_string()));
        app.request(Method::POST, &host, "/sales/new")
            .header(COOKIE, format!("silo_session={}", owner.token))
            .header("origin", format!("http://{host}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
    };
    let sales = || async {
        owner
            .expect(Method::GET, "/api/v1/sales", None, StatusCode::OK)
            .await["data"]
            .as_array()
            .unwrap()
            .len()
    };

    // Check: the SKU (any case) finds the item and prices the line; an unknown and an ambiguous
    // name say so on their own lines.
    let checked = post(vec![
        ("item_0", "zinc".into()),
        ("quantity_0", "2".into()),
        ("item_1", "aspirin".into()),
        ("quantity_1", "1".into()),
        ("item_2", "zin".into()),
        ("quantity_2", "1".into()),
        ("action", "check".into()),
    ])
    .await
    .unwrap();
    assert_eq!(checked.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = checked.text().await.unwrap();
    assert!(
        html.contains("Zinc tablets") && html.contains(r#"<strong id="total">5.00</strong>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"id="item_1-error">No active item"#),
        "{html}"
    );
    assert!(
        html.contains(r#"id="item_2-error">Several items match (Zinc syrup, Zinc tablets)"#),
        "{html}"
    );
    assert!(
        html.contains(r#"value="aspirin""#),
        "the typed lines are kept: {html}"
    );

    // More than the branch holds: the problem on the line, nothing recorded.
    let oversold = post(vec![
        ("item_0", "ZINC".into()),
        ("quantity_0", "5".into()),
        ("action", "record".into()),
    ])
    .await
    .unwrap();
    assert_eq!(oversold.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = oversold.text().await.unwrap();
    assert!(
        html.contains(r#"id="quantity_0-error">Not enough stock: only 3 at this branch"#),
        "{html}"
    );
    assert_eq!(sales().await, 0);

    // Within stock: recorded once, the screen says so with the total.
    let recorded = post(vec![
        ("item_0", "ZINC".into()),
        ("quantity_0", "2".into()),
        ("action", "record".into()),
    ])
    .await
    .unwrap();
    assert_eq!(recorded.status(), StatusCode::SEE_OTHER);
    let location = recorded.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/sales/new?recorded=") && location.ends_with("&total=500"),
        "{location}"
    );
    let html = app
        .request(Method::GET, &host, &location)
        .header(COOKIE, format!("silo_session={}", owner.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("recorded: 5.00."), "{html}");
    assert_eq!(sales().await, 1);
    let stock = owner
        .expect(
            Method::GET,
            &format!("/api/v1/stock?item_id={zinc}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(stock["data"][0]["quantity"], json!(1.0), "{stock}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_is_received_from_a_supplier_added_in_the_browser_pages() {
    let app = TestApp::spawn().await;
    app.active_tenant("depot").await;
    let owner = Session::owner(&app, "depot").await;
    let item = owner
        .expect(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": "IBU", "name": "Ibuprofen 200 mg", "cost_price_cents": 120})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let host = app.tenant_host("depot");
    let get = |path: String| {
        app.request(Method::GET, &host, &path)
            .header(COOKIE, format!("silo_session={}", owner.token))
            .send()
    };
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        app.request(Method::POST, &host, path)
            .header(COOKIE, format!("silo_session={}", owner.token))
            .header("origin", format!("http://{host}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
    };

    let empty = get("/purchases/new".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(empty.contains(r#"id="no-suppliers""#), "{empty}");

    // A supplier without a name: the problem beside it; then one with a name.
    let nameless = post(
        "/suppliers",
        vec![("name", "  ".into()), ("email", "nope".into())],
    )
    .await
    .unwrap();
    assert_eq!(nameless.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = nameless.text().await.unwrap();
    assert!(
        html.contains(r#"id="name-error""#) && html.contains(r#"id="email-error""#),
        "{html}"
    );
    let added = post("/suppliers", vec![("name", "Wholesale Ltd".into())])
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let suppliers = owner
        .expect(Method::GET, "/api/v1/suppliers", None, StatusCode::OK)
        .await;
    let supplier = suppliers["data"][0]["id"].as_i64().unwrap();
    assert_eq!(suppliers["data"][0]["name"], "Wholesale Ltd");
    let branch = owner
        .expect(Method::GET, "/api/v1/branches", None, StatusCode::OK)
        .await["data"][0]["id"]
        .as_i64()
        .unwrap();
    let base = || {
        vec![
            ("supplier_id", supplier.to_string()),
            ("branch_id", branch.to_string()),
        ]
    };

    // Unreadable numbers: beside their fields, nothing received.
    let mut bad = base();
    bad.extend([
        ("item_0", "IBU".into()),
        ("quantity_0", "ten".into()),
        ("item_1", "IBU".into()),
        ("quantity_1", "2".into()),
        ("cost_1", "1.2.3".into()),
        ("action", "receive".into()),
    ]);
    let refused = post("/purchases/new", bad).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains(r#"id="quantity_0-error""#) && html.contains(r#"id="cost_1-error""#),
        "{html}"
    );

    // Check prices the line at the item's cost price; Receive records it and raises stock.
    let mut good = base();
    good.extend([
        ("item_0", "ibu".into()),
        ("quantity_0", "10".into()),
        ("action", "check".into()),
    ]);
    let checked = post("/purchases/new", good.clone()).await.unwrap();
    assert_eq!(checked.status(), StatusCode::OK);
    let html = checked.text().await.unwrap();
    assert!(
        html.contains("Ibuprofen 200 mg") && html.contains(r#"<strong id="total">12.00</strong>"#),
        "{html}"
    );
    assert_eq!(
        owner
            .expect(
                Method::GET,
                &format!("/api/v1/stock?item_id={item}"),
                None,
                StatusCode::OK
            )
            .await["data"],
        json!([])
    );
    good.retain(|(name, _)| *name != "action");
    good.push(("action", "receive".into()));
    let received = post("/purchases/new", good).await.unwrap();
    assert_eq!(received.status(), StatusCode::SEE_OTHER);
    let location = received.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("&total=1200"), "{location}");
    let html = get(location).await.unwrap().text().await.unwrap();
    assert!(html.contains("received: 12.00."), "{html}");
    let stock = owner
        .expect(
            Method::GET,
            &format!("/api/v1/stock?item_id={item}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(stock["data"][0]["quantity"], json!(10.0), "{stock}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_take_counts_shows_variances_and_posting_sets_stock_to_the_counts() {
    let app = TestApp::spawn().await;
    let accepted = app.active_tenant("counting").await;
    let owner = Session::owner(&app, "counting").await;
    let host = app.tenant_host("counting");
    let get = |path: String| {
        app.request(Method::GET, &host, &path)
            .header(COOKIE, format!("silo_session={}", owner.token))
            .send()
    };
    let post = |path: String, body: String| {
        app.request(Method::POST, &host, &path)
            .header(COOKIE, format!("silo_session={}", owner.token))
            .header("origin", format!("http://{host}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // Starter has no stock takes: the upgrade prompt, not a form.
    let prompt = get("/stock-takes".into()).await.unwrap();
    assert_eq!(prompt.status(), StatusCode::FORBIDDEN);
    assert!(prompt.text().await.unwrap().contains("Not in your plan"));
    app.store
        .set_plan(accepted.tenant_id, "professional", "test")
        .await
        .unwrap();
    owner
        .wait_until_answered(
            "/api/v1/stock-takes/0",
            StatusCode::NOT_FOUND,
            "the plan change",
        )
        .await;
    let (branch, item) = stocked_item(&owner, "GAUZE", "Gauze roll", 10).await;

    let started = post("/stock-takes".into(), format!("branch_id={branch}"))
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let sheet_path = started.headers()["location"].to_str().unwrap().to_owned();
    let sheet = get(sheet_path.clone()).await.unwrap().text().await.unwrap();
    assert!(
        sheet.contains("Gauze roll") && sheet.contains(&format!(r#"name="count_{item}""#)),
        "{sheet}"
    );

    // A count that is no number: beside its item, nothing saved.
    let refused = post(sheet_path.clone(), format!("count_{item}=lots"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains(&format!(r#"id="count_{item}-error""#)) && html.contains(r#"value="lots""#),
        "{html}"
    );

    let saved = post(sheet_path.clone(), format!("count_{item}=8"))
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let sheet = get(sheet_path.clone()).await.unwrap().text().await.unwrap();
    assert!(
        sheet.contains(r#"<td class="number variance" data-label="Variance">-2</td>"#),
        "{sheet}"
    );
    // Not posted yet: stock unchanged.
    let stock_path = format!("/api/v1/stock?item_id={item}");
    let stock = || async {
        owner
            .expect(Method::GET, &stock_path, None, StatusCode::OK)
            .await["data"][0]["quantity"]
            .clone()
    };
    assert_eq!(stock().await, json!(10.0));

    let posted = post(format!("{sheet_path}/post"), String::new())
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    assert_eq!(stock().await, json!(8.0));
    let sheet = get(sheet_path.clone()).await.unwrap().text().await.unwrap();
    assert!(
        sheet.contains(r#"<span id="status">completed</span>"#),
        "{sheet}"
    );
    assert!(
        !sheet.contains("Save counts"),
        "a posted stock take takes no counts: {sheet}"
    );
    // Posting twice changes nothing more.
    let again = post(format!("{sheet_path}/post"), String::new())
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(stock().await, json!(8.0));
    app.finish().await;
}

/// The quick sale with its script: lines are priced as they are typed (no "Check"), too little
/// stock shows on its line at once, the script is one the page's CSP allows; and every page of
/// the navigation is usable at a phone's width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_sale_prices_as_it_is_typed_and_every_page_fits_a_phone() {
    let app = TestApp::spawn().await;
    let (owner, _) = Session::owner_on_plan(&app, "livetill", "enterprise").await;
    stocked_item(&owner, "ZINC", "Zinc tablets", 3).await;
    let host = app.tenant_host("livetill");
    let page = app
        .request(Method::GET, &host, "/sales/new")
        .header(COOKIE, format!("silo_session={}", owner.token))
        .send()
        .await
        .unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    assert_eq!(
        crate::csp::assert_inline_code_allowed(Some(&policy), &html),
        1,
        "the sale page has its one script, allowed by the policy"
    );

    let browser = Browser::start().await;
    let base = format!("http://livetill.localhost:{}/", app.address.port());
    sign_in_in_browser(&browser, &base, "owner@livetill.test").await;
    browser.click("nav.main a[href='/sales/new']").await;
    browser.fill("#item_0", "zinc").await;
    browser.fill("#quantity_0", "2").await;
    browser.wait_for_text("#total", |text| text == "5.00").await;
    browser
        .wait_for_text("#found-0", |text| text == "Zinc tablets")
        .await;
    browser.fill("#quantity_0", "4").await;
    let short = browser
        .wait_for_text("#quantity_0-error", |text| !text.is_empty())
        .await;
    assert!(short.starts_with("Not enough stock"), "{short}");
    // An item without a quantity sells one.
    browser.fill("#quantity_0", "").await;
    browser.wait_for_text("#total", |text| text == "2.50").await;
    let no_error = browser
        .client
        .execute(
            "return document.getElementById('quantity_0-error').hidden",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(no_error, json!(true), "the problem is cleared");
    // Pricing as typed records nothing.
    let sales = owner
        .expect(Method::GET, "/api/v1/sales", None, StatusCode::OK)
        .await;
    assert_eq!(sales["data"].as_array().unwrap().len(), 0);
    browser.click("button[value='record']").await;
    browser
        .wait_for_text("#recorded", |text| text.contains("2.50"))
        .await;

    // At a phone's width no page of the navigation scrolls sideways.
    browser.client.set_window_size(390, 844).await.unwrap();
    for path in [
        "",
        "items",
        "sales/new",
        "purchases/new",
        "suppliers",
        "stock-takes",
        "reports",
        "branches",
        "billing",
        "workspace",
        "workspace/users",
        "workspace/api-keys",
        "workspace/branding",
        "workspace/domains",
        "workspace/integrations",
        "items/import",
    ] {
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        browser.wait_for_text("h1", |text| !text.is_empty()).await;
        let overflow = browser
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        if overflow != json!(0) {
            let shot = browser.screenshot(&format!("phone-{path}")).await;
            panic!("/{path} scrolls sideways at 390 px by {overflow} (screenshot: {shot})");
        }
    }
    browser.finish().await;
    app.finish().await;
}

/// Suppliers are changed on their own page (a bad email beside its field, nothing saved; an
/// emptied field cleared); branches are closed and reopened, and the last open one stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppliers_are_changed_and_branches_closed_and_reopened_in_the_pages() {
    let app = TestApp::spawn().await;
    let (owner, _) = Session::owner_on_plan(&app, "chain", "enterprise").await;
    owner
        .expect(
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "viewer@chain.test", "password": PASSWORD, "role": "read_only"})),
            StatusCode::CREATED,
        )
        .await;
    let viewer = Session::sign_in(&app, "chain", "viewer@chain.test", PASSWORD).await;
    let supplier = owner
        .expect(
            Method::POST,
            "/api/v1/suppliers",
            Some(json!({"name": "Wholesale", "contact_name": "Ann", "email": "ann@w.test"})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let host = app.tenant_host("chain");
    let get = |session: &Session<'_>, path: String| {
        app.request(Method::GET, &host, &path)
            .header(COOKIE, format!("silo_session={}", session.token))
            .header(ACCEPT, "text/html")
            .send()
    };
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        app.request(Method::POST, &host, &path)
            .header(COOKIE, format!("silo_session={}", owner.token))
            .header("origin", format!("http://{host}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).unwrap())
            .send()
    };
    let stored = || async {
        owner
            .expect(
                Method::GET,
                &format!("/api/v1/suppliers/{supplier}"),
                None,
                StatusCode::OK,
            )
            .await
    };

    let list = get(&owner, "/suppliers".into()).await.unwrap();
    let html = list.text().await.unwrap();
    assert!(
        html.contains(&format!(r#"href="/suppliers/{supplier}""#)),
        "{html}"
    );
    let viewer_list = get(&viewer, "/suppliers".into()).await.unwrap();
    assert!(
        !viewer_list
            .text()
            .await
            .unwrap()
            .contains(&format!(r#"href="/suppliers/{supplier}""#)),
        "no edit link for read-only"
    );
    let refused = get(&viewer, format!("/suppliers/{supplier}"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let form = get(&owner, format!("/suppliers/{supplier}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains(r#"value="ann@w.test""#), "{form}");

    let bad = post(
        format!("/suppliers/{supplier}"),
        vec![
            ("name", "Wholesale Ltd".into()),
            ("contact_name", "".into()),
            ("email", "not an email".into()),
            ("phone", "".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains(r#"id="email-error""#) && html.contains(r#"value="Wholesale Ltd""#),
        "{html}"
    );
    assert_eq!(stored().await["name"], "Wholesale");

    let saved = post(
        format!("/suppliers/{supplier}"),
        vec![
            ("name", "Wholesale Ltd".into()),
            ("contact_name", " ".into()),
            ("email", "orders@w.test".into()),
            ("phone", "0123".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let supplier_now = stored().await;
    assert_eq!(supplier_now["name"], "Wholesale Ltd");
    assert_eq!(supplier_now["contact_name"], json!(null), "{supplier_now}");
    assert_eq!(supplier_now["email"], "orders@w.test");
    assert_eq!(supplier_now["phone"], "0123");

    // Branches: a second one, the main one closed (gone from the sale form), the last open one
    // refused with the reason on the page, the main one reopened.
    let main = owner
        .expect(Method::GET, "/api/v1/branches", None, StatusCode::OK)
        .await["data"][0]["id"]
        .as_i64()
        .unwrap();
    let north = owner
        .expect(
            Method::POST,
            "/api/v1/branches",
            Some(json!({"code": "NORTH", "name": "North shop"})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let active = |id: i64| {
        let owner = &owner;
        async move {
            owner
                .expect(
                    Method::GET,
                    &format!("/api/v1/branches/{id}"),
                    None,
                    StatusCode::OK,
                )
                .await["is_active"]
                .as_bool()
                .unwrap()
        }
    };
    let closed = post(
        format!("/branches/{main}/active"),
        vec![("active", "false".into())],
    )
    .await
    .unwrap();
    assert_eq!(closed.status(), StatusCode::SEE_OTHER);
    assert!(!active(main).await);
    let html = get(&owner, "/branches".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Closed") && html.contains("Reopen"), "{html}");
    let sale_form = get(&owner, "/sales/new".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !sale_form.contains(&format!(r#"<option value="{main}""#))
            && sale_form.contains(&format!(r#"<option value="{north}""#)),
        "{sale_form}"
    );
    let last = post(
        format!("/branches/{north}/active"),
        vec![("active", "false".into())],
    )
    .await
    .unwrap();
    assert_eq!(last.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = last.text().await.unwrap();
    assert!(
        html.contains(r#"id="branch-status-problem""#)
            && html.contains("the last open branch cannot be closed"),
        "{html}"
    );
    assert!(active(north).await);
    let reopened = post(
        format!("/branches/{main}/active"),
        vec![("active", "true".into())],
    )
    .await
    .unwrap();
    assert_eq!(reopened.status(), StatusCode::SEE_OTHER);
    assert!(active(main).await);
    app.finish().await;
}
