//! The tenant app over real HTTP: sign-in with the seeded admin, tokens bound to their tenant,
//! roles, the catalogue with validation and pagination, purchases and sales moving stock in one
//! transaction (an oversold sale changes nothing), stock takes, and the sales report.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, error_code};
use crate::session::Session;

const PASSWORD: &str = "violet tram oyster gravel";

/// The stock of an item in a branch.
async fn stock(session: &Session<'_>, item: i64, branch: i64) -> f64 {
    let levels = session
        .expect(
            Method::GET,
            &format!("/api/v1/stock?item_id={item}&branch_id={branch}"),
            None,
            StatusCode::OK,
        )
        .await;
    levels["data"][0]["quantity"].as_f64().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_signs_in_and_runs_the_back_office() {
    let app = TestApp::spawn().await;
    let pharma = app.active_tenant("pharma").await;
    // Every module of the back office (stock takes and reports are not in Starter).
    app.store
        .set_plan(pharma.tenant_id, "professional", "test:setup")
        .await
        .unwrap();
    let host = app.tenant_host("pharma");

    // Sign-in: a wrong password and an unknown email get the same answer.
    for (email, password) in [
        ("owner@pharma.test", "wrong password here"),
        ("nobody@pharma.test", PASSWORD),
    ] {
        let response = app
            .request(Method::POST, &host, "/api/v1/sessions")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNAUTHORIZED, "invalid_credentials".to_owned())
        );
    }
    let unauthenticated = app
        .request(Method::GET, &host, "/api/v1/items")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(unauthenticated).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );
    let owner = Session::sign_in(&app, "pharma", "OWNER@pharma.test", PASSWORD).await;
    let me = owner
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    assert_eq!(me["role"], "owner");
    // The contract's sign-in path answers the same.
    let contract = app
        .request(Method::POST, &host, "/api/v1/auth/login")
        .json(&json!({"email": "owner@pharma.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(contract.status(), StatusCode::CREATED);
    let body: Value = contract.json().await.unwrap();
    assert!(body["token"].as_str().is_some_and(|token| token.len() > 20));
    let forged = Session {
        token: format!("{}x", owner.token),
        ..owner.on("pharma")
    };
    assert_eq!(
        forged.error(Method::GET, "/api/v1/me", None).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );

    // Catalogue, with validation naming the fields.
    let branches = owner
        .expect(Method::GET, "/api/v1/branches", None, StatusCode::OK)
        .await;
    assert_eq!(branches["data"][0]["code"], "MAIN");
    let main = branches["data"][0]["id"].as_i64().unwrap();
    let supplier = owner
        .expect(
            Method::POST,
            "/api/v1/suppliers",
            Some(json!({"name": "MedSupply", "email": "orders@medsupply.test"})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let invalid = owner
        .call(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": "PARA-500", "name": " ", "sale_price_cents": -1})),
        )
        .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(body["error"]["fields"]["name"].is_string(), "{body}");
    assert!(
        body["error"]["fields"]["sale_price_cents"].is_string(),
        "{body}"
    );
    let item = owner
        .expect(
            Method::POST,
            "/api/v1/items",
            Some(
                json!({"sku": "PARA-500", "name": "Paracetamol 500 mg", "sale_price_cents": 250,
                        "cost_price_cents": 90, "default_supplier_id": supplier}),
            ),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        owner
            .error(
                Method::POST,
                "/api/v1/items",
                Some(json!({"sku": "PARA-500", "name": "Again"}))
            )
            .await,
        (StatusCode::CONFLICT, "already_exists".to_owned())
    );
    let missing_supplier = owner
        .call(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": "X-1", "name": "X", "default_supplier_id": 999_999})),
        )
        .await;
    let body: Value = missing_supplier.json().await.unwrap();
    assert!(
        body["error"]["fields"]["default_supplier_id"].is_string(),
        "{body}"
    );

    // A purchase moves stock in; a sale moves it out; an oversold sale changes nothing.
    let purchase = owner
        .expect(
            Method::POST,
            "/api/v1/purchases",
            Some(
                json!({"branch_id": main, "supplier_id": supplier, "reference": "PO-1",
                        "lines": [{"item_id": item, "quantity": 10, "unit_cost_cents": 90}]}),
            ),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(purchase["total_cents"], 900);
    assert_eq!(stock(&owner, item, main).await, 10.0);
    let sale = owner
        .expect(
            Method::POST,
            "/api/v1/sales",
            Some(json!({"branch_id": main, "lines": [{"item_id": item, "quantity": 3}]})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(sale["total_cents"], 750, "the item's price by default");
    assert_eq!(stock(&owner, item, main).await, 7.0);
    let oversold = owner
        .call(
            Method::POST,
            "/api/v1/sales",
            Some(json!({"branch_id": main, "lines": [
                {"item_id": item, "quantity": 5}, {"item_id": item, "quantity": 3}]})),
        )
        .await;
    assert_eq!(oversold.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = oversold.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_stock");
    assert!(
        body["error"]["fields"]["lines[0].quantity"].is_string(),
        "{body}"
    );
    assert_eq!(stock(&owner, item, main).await, 7.0);
    let sales = owner
        .expect(Method::GET, "/api/v1/sales", None, StatusCode::OK)
        .await;
    assert_eq!(
        sales["data"].as_array().unwrap().len(),
        1,
        "nothing recorded"
    );

    // A stock take sets stock to what was counted.
    let take = owner
        .expect(
            Method::POST,
            "/api/v1/stock-takes",
            Some(json!({"branch_id": main})),
            StatusCode::CREATED,
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let counted = owner
        .expect(
            Method::PUT,
            &format!("/api/v1/stock-takes/{take}/counts"),
            Some(json!({"item_id": item, "counted_quantity": 5})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(counted["counts"][0]["expected_quantity"], 7.0);
    assert_eq!(counted["counts"][0]["difference"], -2.0);
    owner
        .expect(
            Method::POST,
            &format!("/api/v1/stock-takes/{take}/complete"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(stock(&owner, item, main).await, 5.0);
    assert_eq!(
        owner
            .error(
                Method::POST,
                &format!("/api/v1/stock-takes/{take}/complete"),
                None
            )
            .await,
        (StatusCode::CONFLICT, "wrong_status".to_owned())
    );

    let report = owner
        .expect(Method::GET, "/api/v1/reports/sales", None, StatusCode::OK)
        .await;
    assert_eq!(report["sales"], 1);
    assert_eq!(report["total_cents"], 750);
    assert_eq!(report["top_items"][0]["item_id"], item);

    // Pagination: pages of two, following the cursor, see every supplier once.
    for name in ["B Pharma", "C Wholesale", "D Direct"] {
        owner
            .expect(
                Method::POST,
                "/api/v1/suppliers",
                Some(json!({"name": name})),
                StatusCode::CREATED,
            )
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/suppliers?limit=2".to_owned();
    loop {
        let page = owner.expect(Method::GET, &path, None, StatusCode::OK).await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|s| s["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_i64() {
            Some(cursor) => path = format!("/api/v1/suppliers?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["MedSupply", "B Pharma", "C Wholesale", "D Direct"]);
    assert_eq!(
        owner
            .error(Method::GET, "/api/v1/suppliers?limit=0", None)
            .await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed".to_owned()
        )
    );
    assert_eq!(
        owner
            .error(Method::GET, "/api/v1/items/not-a-number", None)
            .await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_users_do_and_tokens_work_only_on_their_tenant() {
    let app = TestApp::spawn().await;
    app.active_tenant("alpha").await;
    app.active_tenant("beta").await;
    let owner = Session::sign_in(&app, "alpha", "owner@alpha.test", PASSWORD).await;

    // A token minted on alpha opens nothing on beta (sealed to alpha's id).
    assert_eq!(
        owner
            .on("beta")
            .error(Method::GET, "/api/v1/me", None)
            .await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );
    let beta_owner = Session::sign_in(&app, "beta", "owner@beta.test", PASSWORD).await;
    assert_eq!(
        beta_owner
            .on("alpha")
            .error(Method::GET, "/api/v1/items", None)
            .await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );

    let mut ids = Vec::new();
    for (email, role) in [
        ("staff@alpha.test", "staff"),
        ("viewer@alpha.test", "read_only"),
    ] {
        let user = owner
            .expect(
                Method::POST,
                "/api/v1/users",
                Some(json!({"email": email, "password": PASSWORD, "role": role})),
                StatusCode::CREATED,
            )
            .await;
        ids.push(user["id"].as_i64().unwrap());
    }
    let bad_user = owner
        .call(
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "x", "password": "short", "role": "god"})),
        )
        .await;
    let body: Value = bad_user.json().await.unwrap();
    for field in ["email", "password", "role"] {
        assert!(
            body["error"]["fields"][field].is_string(),
            "{field}: {body}"
        );
    }

    let staff = Session::sign_in(&app, "alpha", "staff@alpha.test", PASSWORD).await;
    let viewer = Session::sign_in(&app, "alpha", "viewer@alpha.test", PASSWORD).await;
    staff
        .expect(
            Method::POST,
            "/api/v1/items",
            Some(json!({"sku": "S-1", "name": "Staff item"})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        staff
            .error(
                Method::POST,
                "/api/v1/branches",
                Some(json!({"code": "B2", "name": "Second"}))
            )
            .await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );
    assert_eq!(
        staff.error(Method::GET, "/api/v1/users", None).await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );
    let items = viewer
        .expect(Method::GET, "/api/v1/items?q=staff", None, StatusCode::OK)
        .await;
    assert_eq!(items["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        viewer
            .error(
                Method::POST,
                "/api/v1/items",
                Some(json!({"sku": "V-1", "name": "Viewer item"}))
            )
            .await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );

    // Deactivating a user ends their sessions at once; the last owner cannot step down.
    owner
        .expect(
            Method::PATCH,
            &format!("/api/v1/users/{}", ids[0]),
            Some(json!({"is_active": false})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        staff.error(Method::GET, "/api/v1/me", None).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );
    let me = owner
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    assert_eq!(
        owner
            .error(
                Method::PATCH,
                &format!("/api/v1/users/{}", me["id"]),
                Some(json!({"role": "staff"}))
            )
            .await,
        (StatusCode::CONFLICT, "last_owner".to_owned())
    );
    let still = owner
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    assert_eq!(still["role"], "owner", "the refused change was rolled back");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_domain_serves_its_tenant_only_once_verified() {
    let app = TestApp::spawn().await;
    app.active_tenant("alpha").await;
    app.active_tenant("beta").await;
    let alpha = Session::sign_in(&app, "alpha", "owner@alpha.test", PASSWORD).await;
    let beta = Session::sign_in(&app, "beta", "owner@beta.test", PASSWORD).await;
    let port = app.address.port();
    let on_domain = |host: &str| {
        app.request(Method::GET, &format!("{host}:{port}"), "/api/v1/health")
            .send()
    };

    let added = alpha
        .expect(
            Method::POST,
            "/api/v1/domains",
            Some(json!({"domain": "Shop.Alpha.test."})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(added["domain"], "shop.alpha.test");
    assert_eq!(added["verified"], false);
    assert!(
        added["verification_token"]
            .as_str()
            .unwrap()
            .starts_with("silo-verify-")
    );
    // Unverified: the domain names no tenant yet.
    assert_eq!(
        error_code(on_domain("shop.alpha.test").await.unwrap()).await,
        (StatusCode::NOT_FOUND, "tenant_not_found".to_owned())
    );
    // Another tenant may claim it too (a claim is not ownership: DNS decides), but nobody can
    // claim a name under the service's own domain.
    beta.expect(
        Method::POST,
        "/api/v1/domains",
        Some(json!({"domain": "shop.alpha.test"})),
        StatusCode::CREATED,
    )
    .await;
    for bad in ["alpha.localhost", "not a domain", "10.0.0.1"] {
        assert_eq!(
            beta.error(
                Method::POST,
                "/api/v1/domains",
                Some(json!({"domain": bad}))
            )
            .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed".to_owned()
            ),
            "{bad}"
        );
    }

    // Alpha publishes its token; verification (through the admin API) reads it, gives alpha
    // the domain and drops beta's claim. It then serves alpha, and only alpha.
    crate::test_dns::dns().publish(
        "_silo-challenge.shop.alpha.test",
        &[added["verification_token"].as_str().unwrap()],
    );
    let admin_token = crate::admin::admin_token(&app).await;
    let verified = crate::admin::admin_call(
        &app,
        Method::POST,
        "/api/v1/admin/domains/shop.alpha.test/verify",
        &admin_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    assert_eq!(
        beta.error(
            Method::POST,
            "/api/v1/domains",
            Some(json!({"domain": "shop.alpha.test"}))
        )
        .await,
        (StatusCode::CONFLICT, "domain_taken".to_owned()),
        "a verified domain is nobody else's to claim"
    );
    assert_eq!(
        beta.error(Method::DELETE, "/api/v1/domains/shop.alpha.test", None)
            .await,
        (StatusCode::NOT_FOUND, "not_found".to_owned()),
        "beta cannot remove alpha's domain"
    );
    // The earlier miss is cached briefly; the verification's notification drops it, which the
    // router promises within a second (not before the admin call returns).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let health: Value = loop {
        let response = on_domain("SHOP.alpha.test.").await.unwrap();
        if response.status() == StatusCode::OK {
            break response.json().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the verified domain never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(health["tenant"], "alpha");
    let via_domain = app
        .request(
            Method::GET,
            &format!("shop.alpha.test:{port}"),
            "/api/v1/me",
        )
        .bearer_auth(&alpha.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        via_domain.status(),
        StatusCode::OK,
        "alpha's token works on its domain"
    );
    let beta_there = app
        .request(
            Method::GET,
            &format!("shop.alpha.test:{port}"),
            "/api/v1/me",
        )
        .bearer_auth(&beta.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(beta_there).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );

    // Removed: every router forgets it at once.
    alpha
        .expect(
            Method::DELETE,
            "/api/v1/domains/shop.alpha.test",
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while on_domain("shop.alpha.test").await.unwrap().status() != StatusCode::NOT_FOUND {
        assert!(
            std::time::Instant::now() < deadline,
            "the removed domain still serves alpha"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let audit = app
        .control_plane()
        .await
        .query(
            "SELECT action, actor FROM audit_log WHERE action LIKE 'domain.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let actions: Vec<String> = audit.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        actions,
        [
            "domain.add",
            "domain.add",
            "domain.claim_superseded",
            "domain.verify",
            "domain.remove"
        ]
    );
    assert!(audit[3].get::<_, String>(1).contains("ops@silo.test"));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_modules_are_enforced_through_the_router() {
    let app = TestApp::spawn().await;
    app.active_tenant("shop").await;
    let owner = Session::sign_in(&app, "shop", "owner@shop.test", PASSWORD).await;
    let token = crate::admin::admin_token(&app).await;
    let admin = |method: Method, path: &str, body: Value| {
        crate::admin::admin_call(&app, method, path, &token)
            .json(&body)
            .send()
    };

    // Starter: no reports module, one branch.
    let refused = owner.call(Method::GET, "/api/v1/reports/sales", None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "module_not_enabled");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`reports`")
            && message.contains("Professional")
            && message.contains("Enterprise"),
        "{message}"
    );
    let second_branch = json!({"code": "B2", "name": "Second"});
    let limited = owner
        .call(
            Method::POST,
            "/api/v1/branches",
            Some(second_branch.clone()),
        )
        .await;
    assert_eq!(limited.status(), StatusCode::FORBIDDEN);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "plan_limit_reached");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allows 1 branches")
    );
    let plan = owner
        .expect(Method::GET, "/api/v1/plan", None, StatusCode::OK)
        .await;
    assert_eq!(plan["plan"]["code"], "starter");
    assert_eq!(plan["usage"]["branches"], json!({"used": 1, "limit": 1}));

    // An add-on switches one module on for this tenant; routers hear of it at once.
    let enabled = admin(
        Method::PUT,
        "/api/v1/admin/tenants/shop/modules/reports",
        json!({"enabled": true}),
    )
    .await
    .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    owner
        .wait_until_answered("/api/v1/reports/sales", StatusCode::OK, "the add-on")
        .await;
    // An add-on that has already expired gives nothing.
    admin(
        Method::PUT,
        "/api/v1/admin/tenants/shop/modules/stock_take",
        json!({"enabled": true, "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        owner
            .error(
                Method::POST,
                "/api/v1/stock-takes",
                Some(json!({"branch_id": 1}))
            )
            .await,
        (StatusCode::FORBIDDEN, "module_not_enabled".to_owned())
    );

    // Bad changes are refused and change nothing; a plan change lifts the branch limit.
    for (path, body, code) in [
        (
            "/api/v1/admin/tenants/shop/plan",
            json!({"plan": "platinum"}),
            "unknown_plan",
        ),
        (
            "/api/v1/admin/tenants/shop/modules/teleport",
            json!({"enabled": true}),
            "unknown_module",
        ),
    ] {
        let method = if path.ends_with("/plan") {
            Method::POST
        } else {
            Method::PUT
        };
        let response = admin(method, path, body).await.unwrap();
        assert_eq!(
            error_code(response).await,
            (StatusCode::UNPROCESSABLE_ENTITY, code.to_owned())
        );
    }
    let changed = admin(
        Method::POST,
        "/api/v1/admin/tenants/shop/plan",
        json!({"plan": "professional"}),
    )
    .await
    .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let response = owner
            .call(
                Method::POST,
                "/api/v1/branches",
                Some(second_branch.clone()),
            )
            .await;
        if response.status() == StatusCode::CREATED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plan change never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let audit = app
        .control_plane()
        .await
        .query(
            "SELECT action, detail::text FROM audit_log \
             WHERE action IN ('tenant.change_plan', 'tenant.set_module') ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String)> = audit.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        rows.len(),
        3,
        "two add-ons and one plan change, not the refused ones: {rows:?}"
    );
    assert!(
        rows[2].1.contains("\"before\": \"starter\"")
            && rows[2].1.contains("\"after\": \"professional\""),
        "{rows:?}"
    );
    app.finish().await;
}
