//! Rules that must not leak: the plan's user limit under racing requests and reactivation,
//! subscription moves that are never a free upgrade (and a console that promises only allowed
//! ones), failed tenants off the billing clock and purged by an operator so their subdomain is
//! free again, and money in integer cents with a defined rounding per line.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::{admin_call, admin_token};
use crate::harness::{TestApp, error_code, superuser_client};
use crate::session::Session;

/// Calls `POST path` until it is not answered `503 busy` (password hashing is bounded per
/// process, and the tests share it): the final status and code.
async fn call_past_busy(session: &Session<'_>, path: &str, body: Value) -> (StatusCode, String) {
    loop {
        let response = session.call(Method::POST, path, Some(body.clone())).await;
        if response.status().is_success() {
            return (response.status(), String::new());
        }
        let answer = error_code(response).await;
        if answer.1 != "busy" {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn active_users(app: &TestApp, slug: &str) -> i64 {
    let tenant = crate::harness::connect(&app.tenant_url(slug).await)
        .await
        .unwrap();
    tenant
        .query_one("SELECT count(*) FROM users WHERE is_active", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_limit_holds_under_parallel_creates_and_on_reactivation() {
    let app = TestApp::spawn().await;
    app.active_tenant("crowd").await;
    let owner = Session::owner(&app, "crowd").await;
    // Starter allows 5 users; the owner is one. Twelve creates at once: exactly four get in.
    let creates = (0..12).map(|index| {
        call_past_busy(
            &owner,
            "/api/v1/users",
            json!({"email": format!("clerk{index}@crowd.test"), "password": "long enough password",
                   "role": "staff"}),
        )
    });
    let answers = futures::future::join_all(creates).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    let refused = answers
        .iter()
        .filter(|answer| **answer == (StatusCode::FORBIDDEN, "plan_limit_reached".to_owned()))
        .count();
    assert_eq!((created, refused), (4, 8), "{answers:?}");
    assert_eq!(active_users(&app, "crowd").await, 5);

    // Reactivating a user beyond the limit is refused the same way and changes nothing.
    let users = owner
        .expect(Method::GET, "/api/v1/users?limit=100", None, StatusCode::OK)
        .await;
    let clerk = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["role"] == "staff")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    owner
        .expect(
            Method::DELETE,
            &format!("/api/v1/users/{clerk}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    assert_eq!(
        call_past_busy(
            &owner,
            "/api/v1/users",
            json!({"email": "late@crowd.test", "password": "long enough password", "role": "staff"}),
        )
        .await
        .0,
        StatusCode::CREATED,
        "the freed place is taken by a new user"
    );
    assert_eq!(
        owner
            .error(
                Method::PATCH,
                &format!("/api/v1/users/{clerk}"),
                Some(json!({"is_active": true})),
            )
            .await,
        (StatusCode::FORBIDDEN, "plan_limit_reached".to_owned())
    );
    assert_eq!(active_users(&app, "crowd").await, 5);
    let clerk_now = owner
        .expect(Method::GET, "/api/v1/users?limit=100", None, StatusCode::OK)
        .await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["id"] == clerk)
        .cloned()
        .unwrap();
    assert_eq!(clerk_now["is_active"], false, "nothing changed");
    // Changing an active user's name is no new place: allowed at the limit.
    owner
        .expect(
            Method::PATCH,
            &format!("/api/v1/users/{}", users["data"][0]["id"]),
            Some(json!({"display_name": "The Owner", "is_active": true})),
            StatusCode::OK,
        )
        .await;
    app.finish().await;
}

async fn subscription_row(app: &TestApp, slug: &str) -> (String, Option<chrono::DateTime<Utc>>) {
    let row = app
        .control_plane()
        .await
        .query_one(
            "SELECT s.status, s.trial_ends_at FROM subscriptions s JOIN tenants t ON t.id = s.tenant_id \
             WHERE t.slug = $1",
            &[&slug],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_trial_comes_back_a_trial_and_the_console_promises_only_allowed_moves() {
    let app = TestApp::spawn().await;
    app.active_tenant("tryout").await;
    app.active_tenant("lapsed").await;
    let token = admin_token(&app).await;
    let post = |path: String| {
        let token = token.clone();
        let app = &app;
        async move {
            admin_call(app, Method::POST, &path, &token)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
        }
    };
    let page = |path: String| {
        let token = token.clone();
        let app = &app;
        async move {
            let response = admin_call(app, Method::GET, &path, &token)
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };

    // The console refuses, on the confirmation itself, to promise reactivating a trial.
    let (status, refused) = page("/admin/tenants/tryout/actions/reactivate".to_owned()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.contains("cannot become"), "{refused}");
    assert!(
        !refused.contains("id=\"confirm\""),
        "no button for a refused move"
    );

    let (_, trial_ends) = subscription_row(&app, "tryout").await;
    let suspended = post("/api/v1/admin/tenants/tryout/suspend".to_owned()).await;
    assert_eq!(suspended.status(), StatusCode::OK);
    // Its confirmation shows where reactivation really goes: back to the trial.
    let (status, confirm) = page("/admin/tenants/tryout/actions/reactivate".to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    assert!(
        confirm.contains(
            "<td>subscription</td><td class=\"before\">suspended</td><td class=\"after\">trial</td>"
        ),
        "{confirm}"
    );
    let reactivated = post("/api/v1/admin/tenants/tryout/reactivate".to_owned()).await;
    assert_eq!(reactivated.status(), StatusCode::OK);
    assert_eq!(
        subscription_row(&app, "tryout").await,
        ("trial".to_owned(), trial_ends),
        "a trial, with its own end date: no free upgrade"
    );

    // A trial that ended while suspended comes back past due (served, with a warning).
    post("/api/v1/admin/tenants/lapsed/suspend".to_owned()).await;
    app.control_plane()
        .await
        .execute(
            "UPDATE subscriptions SET trial_ends_at = now() - interval '1 day' \
             WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'lapsed')",
            &[],
        )
        .await
        .unwrap();
    let reactivated = post("/api/v1/admin/tenants/lapsed/reactivate".to_owned()).await;
    assert_eq!(reactivated.status(), StatusCode::OK);
    assert_eq!(subscription_row(&app, "lapsed").await.0, "past_due");
    let transitions: Vec<(Option<String>, String)> = app
        .control_plane()
        .await
        .query(
            "SELECT from_status, to_status FROM subscription_transitions x JOIN tenants t \
             ON t.id = x.tenant_id WHERE t.slug = 'lapsed' ORDER BY x.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        transitions,
        [
            (None, "trial".to_owned()),
            (Some("trial".to_owned()), "suspended".to_owned()),
            (Some("suspended".to_owned()), "past_due".to_owned()),
        ]
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tenant_is_off_the_billing_clock_and_purge_failed_frees_its_subdomain() {
    let app = TestApp::spawn().await;
    // The only host's admin password is wrong: provisioning fails after placement.
    let good = app.break_the_default_host().await;
    let accepted = app.signup("doomed").await;
    let status = app.wait_provisioned(&accepted).await;
    assert_eq!(status.status.as_str(), "failed");
    // The status page says what is true: the subdomain stays taken until the team acts.
    let reason = status.reason.unwrap();
    assert!(!reason.contains("retry the signup"), "{reason}");
    assert!(reason.contains("reserved"), "{reason}");
    let again = app.signup_raw(&crate::harness::signup_body("doomed")).await;
    assert_eq!(
        error_code(again).await,
        (StatusCode::CONFLICT, "subdomain_taken".to_owned())
    );

    // The billing clock leaves it alone, however late it runs.
    let lifecycle = crate::harness::test_settings(&app.database, &app.keys).lifecycle();
    let moved = app
        .store
        .apply_due_transitions(Utc::now() + chrono::Duration::days(90), &lifecycle)
        .await
        .unwrap();
    assert_eq!(moved.trials_ended + moved.suspended + moved.cancelled, 0);
    assert_eq!(subscription_row(&app, "doomed").await.0, "trial");
    let billing_audit: i64 = app
        .control_plane()
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE actor = 'system:billing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(billing_audit, 0);

    // The host is mended. A role and database of the tenant's generated names that Silo did
    // not make (no marker on the role) are refused, never dropped: the tenant keeps its record.
    app.set_default_host(&good).await;
    let tenant = app.store.tenant(accepted.tenant_id).await.unwrap();
    let (database, role) = (
        tenant.database_name.clone().unwrap(),
        tenant.role_name.clone().unwrap(),
    );
    let admin = superuser_client("postgres").await;
    admin
        .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{database}\" OWNER \"{role}\""))
        .await
        .unwrap();
    let exists = |name: &'static str, value: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(&format!("SELECT count(*) FROM {name} = $1"), &[&value])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let run = |args: &'static str| app.silo_tenants(args);
    let refused = run("purge-failed").await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("could not be purged"),
        "{refused:#}"
    );
    assert!(app.store.tenant_by_slug("doomed").await.unwrap().is_some());
    assert_eq!(
        exists("pg_database WHERE datname", database.clone()).await,
        1
    );
    assert_eq!(exists("pg_roles WHERE rolname", role.clone()).await, 1);
    // Silo's own leftovers, as a crash after the role and database steps leaves them (the role
    // carries Silo's marker).
    admin
        .batch_execute(&format!(
            "COMMENT ON ROLE \"{role}\" IS '{}'",
            provisioner::host_sql::ROLE_MARKER.replace('\'', "''")
        ))
        .await
        .unwrap();
    // A dry run changes nothing.
    run("purge-failed --dry-run --json").await.unwrap();
    assert!(app.store.tenant_by_slug("doomed").await.unwrap().is_some());
    assert_eq!(
        exists("pg_database WHERE datname", database.clone()).await,
        1
    );
    // The purge drops the database and role, removes the record (audited), frees the name.
    run("purge-failed --json").await.unwrap();
    assert!(app.store.tenant_by_slug("doomed").await.unwrap().is_none());
    assert_eq!(
        exists("pg_database WHERE datname", database.clone()).await,
        0
    );
    assert_eq!(exists("pg_roles WHERE rolname", role.clone()).await, 0);
    let audit = app
        .control_plane()
        .await
        .query_one(
            "SELECT actor, detail::text FROM audit_log WHERE action = 'tenant.purge_failed'",
            &[],
        )
        .await
        .unwrap();
    assert!(audit.get::<_, String>(0).starts_with("cli:"));
    let detail: Value = serde_json::from_str(audit.get(1)).unwrap();
    assert_eq!(detail["slug"], "doomed");
    assert_eq!(detail["database"], json!(database));
    // Again: nothing left to do, and that is no error.
    run("purge-failed").await.unwrap();
    // The subdomain is free: a new signup takes it and gets a working tenant.
    let reborn = app.signup("doomed").await;
    assert_ne!(reborn.tenant_id, accepted.tenant_id);
    assert_eq!(
        app.wait_provisioned(&reborn).await.status.as_str(),
        "active"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_totals_round_half_away_from_zero_and_a_line_worth_nothing_is_refused() {
    let app = TestApp::spawn().await;
    let shop = app.active_tenant("pennies").await;
    app.store
        .set_plan(shop.tenant_id, "professional", "test:setup")
        .await
        .unwrap();
    let owner = Session::owner(&app, "pennies").await;
    owner
        .wait_until_answered("/api/v1/reports/sales", StatusCode::OK, "the plan change")
        .await;
    let main = owner
        .expect(Method::GET, "/api/v1/branches", None, StatusCode::OK)
        .await["data"][0]["id"]
        .as_i64()
        .unwrap();
    let item = |sku: &'static str, price: i64| {
        let owner = &owner;
        async move {
            owner
                .expect(
                    Method::POST,
                    "/api/v1/items",
                    Some(json!({"sku": sku, "name": sku, "sale_price_cents": price,
                                "cost_price_cents": price})),
                    StatusCode::CREATED,
                )
                .await["id"]
                .as_i64()
                .unwrap()
        }
    };
    let supplier = owner
        .expect(
            Method::POST,
            "/api/v1/suppliers",
            Some(json!({"name": "Dust Ltd"})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let dust = item("DUST", 200).await;
    let gauze = item("GAUZE", 100).await;
    // 0.015 × 100 = 1.5 cents → 2 (as floats it is 1.4999…); 1.5 × 33 = 49.5 → 50.
    let purchase = owner
        .expect(
            Method::POST,
            "/api/v1/purchases",
            Some(
                json!({"branch_id": main, "supplier_id": supplier, "lines": [
                {"item_id": gauze, "quantity": 0.015, "unit_cost_cents": 100},
                {"item_id": dust, "quantity": 1.5, "unit_cost_cents": 33},
                {"item_id": dust, "quantity": 10, "unit_cost_cents": 200}]}),
            ),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(purchase["total_cents"], 2 + 50 + 2000);

    // 0.001 × 200 cents is 0.2 cents: refused, naming the line's quantity, nothing recorded.
    let sales_before = owner
        .expect(Method::GET, "/api/v1/sales", None, StatusCode::OK)
        .await["data"]
        .as_array()
        .unwrap()
        .len();
    let refused = owner
        .call(
            Method::POST,
            "/api/v1/sales",
            Some(json!({"branch_id": main, "lines": [
                {"item_id": dust, "quantity": 1},
                {"item_id": dust, "quantity": 0.001}]})),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    let problem = body["error"]["fields"]["lines[1].quantity"]
        .as_str()
        .unwrap();
    assert!(problem.contains("0.003"), "{problem}");
    // More than three decimals cannot be stored: refused rather than silently cut.
    let too_fine = owner
        .call(
            Method::POST,
            "/api/v1/sales",
            Some(json!({"branch_id": main, "lines": [{"item_id": dust, "quantity": 1.0004}]})),
        )
        .await;
    let body: Value = too_fine.json().await.unwrap();
    assert!(
        body["error"]["fields"]["lines[0].quantity"].is_string(),
        "{body}"
    );
    let sales = owner
        .expect(Method::GET, "/api/v1/sales", None, StatusCode::OK)
        .await;
    assert_eq!(sales["data"].as_array().unwrap().len(), sales_before);
    // The smallest quantity worth a cent is recorded at one cent.
    let sale = owner
        .expect(
            Method::POST,
            "/api/v1/sales",
            Some(json!({"branch_id": main, "lines": [{"item_id": dust, "quantity": 0.003}]})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(sale["total_cents"], 1);
    app.finish().await;
}
