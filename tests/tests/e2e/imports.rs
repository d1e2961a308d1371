//! Items imported from CSV as tenant-scoped jobs: a file with problems imports nothing and names
//! each by line and column; a good file imports every row; an import is its own tenant's only;
//! one at a time per tenant; a tenant's 100,000-row import does not hold up another tenant's
//! mail or import; and the page in Chromium, from choosing a file to the result.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::browser::Browser;
use crate::harness::{TestApp, TestOptions, connect, error_code};
use crate::session::Session;
use crate::smtp::SmtpReceiver;

/// `POST /api/v1/items/imports` with `file` as `text/csv`.
async fn post_import(session: &Session<'_>, file: String) -> reqwest::Response {
    session
        .app
        .request(
            Method::POST,
            &session.app.tenant_host(&session.slug),
            "/api/v1/items/imports",
        )
        .bearer_auth(&session.token)
        .header("content-type", "text/csv")
        .body(file)
        .send()
        .await
        .unwrap()
}

/// Queues `file` and returns the import's id.
async fn queue(session: &Session<'_>, file: String) -> i64 {
    let response = post_import(session, file).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "queued", "{body}");
    body["id"].as_i64().unwrap()
}

/// Waits for the import to end and returns it.
async fn ended(session: &Session<'_>, id: i64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let import = session
            .expect(
                Method::GET,
                &format!("/api/v1/items/imports/{id}"),
                None,
                StatusCode::OK,
            )
            .await;
        if !matches!(import["state"].as_str(), Some("queued" | "running")) {
            return import;
        }
        assert!(
            Instant::now() < deadline,
            "the import never ended: {import}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Items in the tenant's own database.
async fn items_in(app: &TestApp, slug: &str) -> i64 {
    let tenant = connect(&app.tenant_url(slug).await).await.unwrap();
    tenant
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0)
}

fn lines_and_fields(import: &Value) -> Vec<(i64, String)> {
    import["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| {
            (
                problem["line"].as_i64().unwrap(),
                problem["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn catalogue(prefix: &str, rows: usize) -> String {
    let mut file = String::from("sku,name,barcode,sale_price,cost_price,requires_prescription\n");
    for row in 0..rows {
        file.push_str(&format!(
            "{prefix}-{row},Item {row},{prefix}B{row},{}.{:02},1.00,{}\n",
            row % 90 + 1,
            row % 100,
            if row % 7 == 0 { "yes" } else { "no" }
        ));
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_problems_imports_nothing_and_a_good_one_imports_every_row() {
    let app = TestApp::spawn().await;
    app.active_tenant("importer").await;
    app.active_tenant("neighbour").await;
    let owner = Session::owner(&app, "importer").await;
    owner
        .expect(
            Method::POST,
            "/api/v1/items",
            Some(serde_json::json!({"sku": "HAVE-1", "name": "Already here"})),
            StatusCode::CREATED,
        )
        .await;

    // Problems in the file: each named by line and column, nothing imported.
    let bad = "sku,name,sale_price\nA-1,Aspirin,2.50\nA-2,Bandage,two\nA-1,Again,1\n,Nameless,1\n";
    let id = queue(&owner, bad.to_owned()).await;
    let import = ended(&owner, id, Duration::from_secs(15)).await;
    assert_eq!(import["state"], "refused", "{import}");
    assert_eq!(
        lines_and_fields(&import),
        [
            (3, "sale_price".to_owned()),
            (4, "sku".to_owned()),
            (5, "sku".to_owned())
        ]
    );
    assert!(
        !import.to_string().contains("Bandage"),
        "no cell values kept: {import}"
    );
    assert_eq!(items_in(&app, "importer").await, 1);

    // A row whose SKU an item already has: refused by the database check, nothing imported.
    let clash = "sku,name\nNEW-1,New one\nHAVE-1,Clash\n".to_owned();
    let id = queue(&owner, clash).await;
    let import = ended(&owner, id, Duration::from_secs(15)).await;
    assert_eq!(import["state"], "refused", "{import}");
    assert_eq!(lines_and_fields(&import), [(3, "sku".to_owned())]);
    assert_eq!(items_in(&app, "importer").await, 1, "not half a catalogue");

    // A good file: every row, with its prices in cents.
    let id = queue(&owner, catalogue("OK", 500)).await;
    let import = ended(&owner, id, Duration::from_secs(30)).await;
    assert_eq!(import["state"], "imported", "{import}");
    assert_eq!(import["rows_done"], 500);
    assert_eq!(items_in(&app, "importer").await, 501);
    let found = owner
        .expect(Method::GET, "/api/v1/items?q=OK-42", None, StatusCode::OK)
        .await;
    let item = &found["data"][0];
    assert_eq!(item["sku"], "OK-42");
    assert_eq!(item["sale_price_cents"], 4342);
    assert_eq!(item["requires_prescription"], true);

    // Past the plan's item limit (Starter: 10,000): the whole file is refused.
    let id = queue(&owner, catalogue("MANY", 9_500)).await;
    let import = ended(&owner, id, Duration::from_secs(60)).await;
    assert_eq!(import["state"], "refused", "{import}");
    assert!(
        import["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("the plan allows 10000 items"),
        "{import}"
    );
    assert_eq!(items_in(&app, "importer").await, 501);

    // Another tenant sees neither the import nor, with its own token, can it start one here.
    let neighbour = Session::owner(&app, "neighbour").await;
    let (status, code) = neighbour
        .error(Method::GET, &format!("/api/v1/items/imports/{id}"), None)
        .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let elsewhere = post_import(&neighbour.on("importer"), catalogue("X", 1)).await;
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
    // A file that is no text, and an empty one: the field is named, nothing queued.
    let binary = owner
        .app
        .request(
            Method::POST,
            &app.tenant_host("importer"),
            "/api/v1/items/imports",
        )
        .bearer_auth(&owner.token)
        .body(vec![0xff_u8, 0xfe, 0x00, 0x41])
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(binary).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    let (status, _) = error_code(post_import(&owner, String::new()).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.finish().await;
}

/// The rows written that the import page first shows between none and all of them, read while
/// the import runs (`Refresh: 2` on each such page); 0 if the import ended before any showed.
async fn progress_seen(app: &TestApp, owner: &Session<'_>) -> u64 {
    let host = app.tenant_host(&owner.slug);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let page = app
            .request(Method::GET, &host, "/items/import")
            .header(
                reqwest::header::COOKIE,
                format!("silo_session={}", owner.token),
            )
            .send()
            .await
            .unwrap();
        let refresh = page.headers().get("refresh").cloned();
        let html = page.text().await.unwrap();
        if html.contains(r#"data-state="imported""#) {
            return 0;
        }
        let shown = html
            .split_once("<progress value=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .and_then(|(value, _)| value.parse::<u64>().ok());
        if let Some(value) = shown.filter(|value| *value > 0) {
            assert_eq!(
                refresh.as_ref().map(|value| value.as_bytes()),
                Some(&b"2"[..])
            );
            assert!(html.contains(r#"max="100000""#), "{html}");
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    0
}

/// The issue's fairness test: while one tenant imports 100,000 items, another tenant's mail
/// arrives and its small import finishes within a second; the big one is all there after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_row_import_holds_up_neither_another_tenants_mail_nor_its_import() {
    let receiver = SmtpReceiver::start().await;
    let app = TestApp::spawn_with(TestOptions {
        smtp_url: Some(receiver.url()),
        ..TestOptions::default()
    })
    .await;
    // Enterprise: no item limit, so all 100,000 rows may arrive.
    let (big, _) = Session::owner_on_plan(&app, "bigimport", "enterprise").await;
    let quiet_id = app.active_tenant("quietimport").await.tenant_id;
    receiver
        .wait_for("owner@quietimport.test", 1, Duration::from_secs(15))
        .await;
    let quiet = Session::owner(&app, "quietimport").await;

    let file = catalogue("BIG", 100_000);
    assert!(file.len() > 4_000_000, "a file of {} bytes", file.len());
    let big_id = queue(&big, file).await;
    // One at a time per tenant.
    let (status, code) = error_code(post_import(&big, catalogue("MORE", 1)).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "import_running")
    );

    let started = Instant::now();
    app.store
        .enqueue_mail(&control_plane::mail::MailJob {
            tenant_id: quiet_id,
            to: "owner@quietimport.test".to_owned(),
            mail: control_plane::mail::Mail::Welcome,
        })
        .await
        .unwrap();
    let quiet_import = queue(&quiet, catalogue("Q", 10)).await;
    receiver
        .wait_for("owner@quietimport.test", 2, Duration::from_secs(5))
        .await;
    let mail_waited = started.elapsed();
    let import = ended(&quiet, quiet_import, Duration::from_secs(5)).await;
    let import_waited = started.elapsed();
    assert_eq!(import["state"], "imported", "{import}");
    let big_state = big
        .expect(
            Method::GET,
            &format!("/api/v1/items/imports/{big_id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert!(
        matches!(big_state["state"].as_str(), Some("queued" | "running")),
        "the big import was over before the quiet tenant's work was measured: {big_state}"
    );
    assert!(
        mail_waited < Duration::from_secs(1) && import_waited < Duration::from_secs(1),
        "the quiet tenant waited {mail_waited:?} for its mail and {import_waited:?} for its import"
    );

    // While it runs, its page shows how far it got and asks the browser to come back.
    let progress = progress_seen(&app, &big).await;
    assert!(
        progress > 0 && progress < 100_000,
        "the page showed {progress} of 100000 rows"
    );

    let done = ended(&big, big_id, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "imported", "{done}");
    assert_eq!(items_in(&app, "bigimport").await, 100_000);
    assert_eq!(items_in(&app, "quietimport").await, 10);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_page_lists_a_files_problems_then_imports_a_good_one() {
    let app = TestApp::spawn().await;
    app.active_tenant("importpage").await;
    let folder = crate::harness::test_root().join("import-page-files");
    std::fs::create_dir_all(&folder).unwrap();
    let bad = folder.join("bad.csv");
    std::fs::write(
        &bad,
        "sku,name,sale_price\nP-1,Plaster,1.00\nP-2,Gauze,lots\n",
    )
    .unwrap();
    let good = folder.join("good.csv");
    std::fs::write(&good, catalogue("PAGE", 3)).unwrap();

    let browser = Browser::start().await;
    let base = crate::settings_pages::sign_in_in_browser(&browser, &app, "importpage").await;
    browser.client.goto(&format!("{base}/items")).await.unwrap();
    browser.click("a[href='/items/import']").await;
    browser
        .wait_for_text("h1", |text| text == "Import items")
        .await;
    // No file chosen: the problem beside the field.
    browser.click("form[action='/items/import'] button").await;
    browser
        .wait_for_text("#file-error", |text| text.contains("must be chosen"))
        .await;
    for (file, expected) in [(&bad, "Nothing was imported"), (&good, "Imported")] {
        browser
            .client
            .find(Locator::Css("#file"))
            .await
            .unwrap()
            .send_keys(file.to_str().unwrap())
            .await
            .unwrap();
        browser.click("form[action='/items/import'] button").await;
        browser
            .wait_for_text("#import-status h2", |text| text == expected)
            .await;
        if expected != "Imported" {
            browser
                .wait_for_text("#import-problems", |text| {
                    text.contains('3') && text.contains("sale_price") && !text.contains("lots")
                })
                .await;
        }
    }
    browser
        .wait_for_text("#import-result", |text| text == "3 items were added.")
        .await;
    // What a failing step leaves behind: a screenshot of the page.
    let shot = browser.screenshot("import result").await;
    let png = std::fs::read(&shot).unwrap_or_else(|error| panic!("{shot}: {error}"));
    assert!(png.starts_with(b"\x89PNG"), "{shot} is no PNG");
    std::fs::remove_file(&shot).unwrap();
    browser.finish().await;
    assert_eq!(items_in(&app, "importpage").await, 3);
    app.finish().await;
}

/// An import whose tenant database is out of reach ends `failed`, saying so, instead of staying
/// open (which would block the tenant's next import); once the database is back, the next
/// import runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_whose_database_is_out_of_reach_ends_failed_and_the_next_one_runs() {
    use secrecy::SecretString;
    let app = TestApp::spawn().await;
    let cluster = crate::harness::private_cluster("importdown", 30);
    app.store
        .add_host(
            &app.keyring,
            "importdown",
            &cluster.superuser_url("postgres"),
            5,
            "test",
        )
        .await
        .unwrap();
    app.store
        .set_host_status("local", "draining", "test")
        .await
        .unwrap();
    let tenant = app.active_tenant("faraway").await.tenant_id;
    let seal = |file: String| {
        app.keyring.seal(
            control_plane::Purpose::ItemImport,
            tenant,
            &SecretString::from(file),
        )
    };
    cluster.stop().unwrap();
    let first = app
        .store
        .create_import(tenant, "test", &seal(catalogue("DOWN", 5)))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let import = app.store.import_of(tenant, first.id).await.unwrap();
        if !import.is_open() {
            break import;
        }
        assert!(
            Instant::now() < deadline,
            "the import never ended: {import:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.state, "failed", "{failed:?}");
    assert!(
        failed.problems[0].message.contains("could not be reached"),
        "{failed:?}"
    );

    let _back = crate::harness::restart_private_cluster("importdown", 30).await;
    let next = app
        .store
        .create_import(tenant, "test", &seal(catalogue("BACK", 5)))
        .await
        .expect("a failed import does not block the next");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let import = app.store.import_of(tenant, next.id).await.unwrap();
        if !import.is_open() {
            assert_eq!(import.state, "imported", "{import:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the import never ended: {import:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(items_in(&app, "faraway").await, 5);
    app.finish().await;
}
