//! API keys and sealed integration credentials over real HTTP: a key is shown once and stored
//! only as a hash, works as its own role on its own tenant only, stops at once when revoked or
//! when the plan loses `api_access`; the apex validates keys for other services; integration
//! credentials are sealed to their tenant and name, shown as four characters, and re-sealed by
//! key rotation.

use std::time::{Duration, Instant};

use control_plane::Keyring;
use control_plane::sealing::SealingError;
use control_plane::store::StoreError;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, TestOptions, error_code};

const PASSWORD: &str = "violet tram oyster gravel";

/// Signs in the tenant's seeded owner: the session token.
async fn owner_token(app: &TestApp, slug: &str) -> String {
    let response = app
        .request(Method::POST, &app.tenant_host(slug), "/api/v1/sessions")
        .json(&json!({"email": format!("owner@{slug}.test"), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A request on `slug`'s host with `Authorization: Bearer <bearer>`.
async fn call(
    app: &TestApp,
    slug: &str,
    bearer: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .request(method, &app.tenant_host(slug), path)
        .bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// A call that must answer `status`: its body as text (to search) and as JSON (null if none).
async fn expect(
    app: &TestApp,
    slug: &str,
    bearer: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: StatusCode,
) -> (String, Value) {
    let response = call(app, slug, bearer, method.clone(), path, body).await;
    let got = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{method} {path} on {slug}: {text}");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (text, json)
}

async fn error(
    app: &TestApp,
    slug: &str,
    bearer: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    error_code(call(app, slug, bearer, method, path, body).await).await
}

/// Creates a key as the owner: (the whole key, its record).
async fn create_key(
    app: &TestApp,
    slug: &str,
    owner: &str,
    name: &str,
    role: &str,
) -> (String, Value) {
    let (text, created) = expect(
        app,
        slug,
        owner,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": name, "role": role})),
        StatusCode::CREATED,
    )
    .await;
    let key = created["secret"].as_str().unwrap().to_owned();
    assert!(!text.contains("secret_hash"), "{text}");
    (key, created)
}

/// The secret part of a key (after `silo_<prefix>_`).
fn secret_part(key: &str) -> &str {
    key.rsplit('_').next().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Polls `GET path` with `bearer` until it answers `status` (and error `code`, if given), for
/// at most two seconds (routers hear of changes within one).
async fn wait_for_answer(
    app: &TestApp,
    slug: &str,
    bearer: &str,
    path: &str,
    status: StatusCode,
    code: Option<&str>,
) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let response = call(app, slug, bearer, Method::GET, path, None).await;
        let got = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if got == status && code.is_none_or(|code| body["error"]["code"] == code) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} on {slug} still answers {got} {body}, not {status} {code:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn professional(app: &TestApp, slug: &str) -> Uuid {
    let tenant = app.active_tenant(slug).await;
    app.store
        .set_plan(tenant.tenant_id, "professional", "test:setup")
        .await
        .unwrap();
    tenant.tenant_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_shown_once_works_as_its_role_and_stops_at_once_when_revoked() {
    let app = TestApp::spawn().await;
    professional(&app, "keyed").await;
    let owner = owner_token(&app, "keyed").await;

    let (staff_key, staff) = create_key(&app, "keyed", &owner, "Inventory sync", "staff").await;
    let prefix = staff["prefix"].as_str().unwrap();
    assert!(
        staff_key.starts_with(&format!("silo_{prefix}_")) && secret_part(&staff_key).len() >= 32,
        "silo_<prefix>_<secret>"
    );
    assert_eq!(staff["role"], "staff");
    assert_eq!(staff["name"], "Inventory sync");
    assert!(staff["last_used_at"].is_null() && staff["revoked_at"].is_null());
    let staff_id = staff["id"].as_str().unwrap().to_owned();
    // The role defaults to read-only.
    let (_, reader) = expect(
        &app,
        "keyed",
        &owner,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "Dashboard"})),
        StatusCode::CREATED,
    )
    .await;
    let reader_key = reader["secret"].as_str().unwrap().to_owned();
    assert_eq!(reader["role"], "read_only");
    let reader_id = reader["id"].as_str().unwrap().to_owned();

    // The list never shows a secret, nor its hash.
    let (list_text, list) = expect(
        &app,
        "keyed",
        &owner,
        Method::GET,
        "/api/v1/api-keys",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    for secret in [secret_part(&staff_key), secret_part(&reader_key)] {
        assert!(!list_text.contains(secret), "the list shows a secret");
    }
    assert!(!list_text.contains("secret"), "{list_text}");

    // A staff key does staff work, but nothing an owner does.
    expect(
        &app,
        "keyed",
        &staff_key,
        Method::POST,
        "/api/v1/suppliers",
        Some(json!({"name": "Keyed Supplies"})),
        StatusCode::CREATED,
    )
    .await;
    expect(
        &app,
        "keyed",
        &staff_key,
        Method::GET,
        "/api/v1/items",
        None,
        StatusCode::OK,
    )
    .await;
    for (method, path) in [
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/api-keys"),
        (Method::GET, "/api/v1/integrations"),
        (Method::GET, "/api/v1/plan"),
    ] {
        assert_eq!(
            error(&app, "keyed", &staff_key, method, path, None).await,
            (StatusCode::FORBIDDEN, "insufficient_role".to_owned()),
            "{path}"
        );
    }
    let (_, me) = expect(
        &app,
        "keyed",
        &staff_key,
        Method::GET,
        "/api/v1/me",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["api_key_id"], staff_id.as_str());
    assert_eq!(me["role"], "staff");
    // A read-only key reads, and changes nothing.
    expect(
        &app,
        "keyed",
        &reader_key,
        Method::GET,
        "/api/v1/suppliers",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        error(
            &app,
            "keyed",
            &reader_key,
            Method::POST,
            "/api/v1/suppliers",
            Some(json!({"name": "Nope"}))
        )
        .await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );
    // A wrong secret under a real prefix is refused.
    let mut forged = staff_key.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        error(&app, "keyed", &forged, Method::GET, "/api/v1/items", None).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );

    // Use is recorded (in the background, at most once a minute).
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (_, list) = expect(
            &app,
            "keyed",
            &owner,
            Method::GET,
            "/api/v1/api-keys",
            None,
            StatusCode::OK,
        )
        .await;
        if list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|key| key["id"] == staff_id.as_str() && !key["last_used_at"].is_null())
        {
            break;
        }
        assert!(Instant::now() < deadline, "last_used_at was never set");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A second router on the same control plane has the key cached too.
    let mut second = TestApp::spawn_with(TestOptions {
        database: Some(app.database.clone()),
        keys: Some(app.keys.clone()),
        run_workers: false,
        ..Default::default()
    })
    .await;
    expect(
        &second,
        "keyed",
        &staff_key,
        Method::GET,
        "/api/v1/items",
        None,
        StatusCode::OK,
    )
    .await;

    // Revoked: refused at once by the router that revoked it, and within a second by the other.
    expect(
        &app,
        "keyed",
        &owner,
        Method::DELETE,
        &format!("/api/v1/api-keys/{staff_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        error(
            &app,
            "keyed",
            &staff_key,
            Method::GET,
            "/api/v1/items",
            None
        )
        .await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );
    wait_for_answer(
        &second,
        "keyed",
        &staff_key,
        "/api/v1/items",
        StatusCode::UNAUTHORIZED,
        Some("unauthenticated"),
    )
    .await;
    second.stop().await;
    // Revoking twice changes nothing; unknown ids are not found.
    expect(
        &app,
        "keyed",
        &owner,
        Method::DELETE,
        &format!("/api/v1/api-keys/{staff_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    for path in [
        format!("/api/v1/api-keys/{}", Uuid::new_v4()),
        "/api/v1/api-keys/not-a-key".to_owned(),
    ] {
        assert_eq!(
            error(&app, "keyed", &owner, Method::DELETE, &path, None).await,
            (StatusCode::NOT_FOUND, "not_found".to_owned())
        );
    }
    // A revoked key cannot be regenerated.
    assert_eq!(
        error(
            &app,
            "keyed",
            &owner,
            Method::POST,
            &format!("/api/v1/api-keys/{staff_id}/regenerate"),
            None
        )
        .await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );

    // Regenerated: the old key stops, the new one (same name and role) works.
    let (_, regenerated) = expect(
        &app,
        "keyed",
        &owner,
        Method::POST,
        &format!("/api/v1/api-keys/{reader_id}/regenerate"),
        None,
        StatusCode::CREATED,
    )
    .await;
    let new_reader_key = regenerated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_reader_key, reader_key);
    assert_eq!(regenerated["name"], "Dashboard");
    assert_eq!(regenerated["role"], "read_only");
    assert_eq!(
        error(
            &app,
            "keyed",
            &reader_key,
            Method::GET,
            "/api/v1/items",
            None
        )
        .await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );
    expect(
        &app,
        "keyed",
        &new_reader_key,
        Method::GET,
        "/api/v1/items",
        None,
        StatusCode::OK,
    )
    .await;
    let (_, list) = expect(
        &app,
        "keyed",
        &owner,
        Method::GET,
        "/api/v1/api-keys",
        None,
        StatusCode::OK,
    )
    .await;
    let revoked: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| !key["revoked_at"].is_null())
        .collect();
    assert_eq!(
        (list["data"].as_array().unwrap().len(), revoked.len()),
        (3, 2)
    );

    // The control plane holds hashes only: no row of any table contains a secret, and each
    // key's stored hash is the SHA-256 of its secret.
    let dump = crate::sealing::dump_control_plane(&app).await;
    let control = app.control_plane().await;
    for key in [&staff_key, &reader_key, &new_reader_key] {
        let secret = secret_part(key);
        assert!(!dump.contains(secret), "a key's secret is stored in clear");
        assert!(
            !dump.contains(&hex(secret.as_bytes())),
            "a key's secret is stored as bytes"
        );
        let prefix = key.split('_').nth(1).unwrap();
        let hashed: bool = control
            .query_one(
                "SELECT secret_hash = sha256(convert_to($2, 'UTF8')) FROM api_keys WHERE prefix = $1",
                &[&prefix, &secret],
            )
            .await
            .unwrap()
            .get(0);
        assert!(hashed, "the stored hash is the secret's SHA-256");
    }
    // Every change is audited, without secrets.
    let actions: Vec<String> = control
        .query(
            "SELECT action FROM audit_log WHERE action LIKE 'api_key.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "api_key.create",
            "api_key.create",
            "api_key.revoke",
            "api_key.regenerate"
        ]
    );
    drop(control);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_works_only_on_its_own_tenant() {
    let app = TestApp::spawn().await;
    professional(&app, "alpha").await;
    professional(&app, "beta").await;
    let alpha_owner = owner_token(&app, "alpha").await;
    let beta_owner = owner_token(&app, "beta").await;
    let (alpha_key, _) = create_key(&app, "alpha", &alpha_owner, "Sync", "staff").await;
    expect(
        &app,
        "alpha",
        &alpha_key,
        Method::GET,
        "/api/v1/suppliers",
        None,
        StatusCode::OK,
    )
    .await;
    let (_, before) = expect(
        &app,
        "beta",
        &beta_owner,
        Method::GET,
        "/api/v1/suppliers",
        None,
        StatusCode::OK,
    )
    .await;

    for (method, path, body) in [
        (Method::GET, "/api/v1/suppliers", None),
        (Method::GET, "/api/v1/me", None),
        (
            Method::POST,
            "/api/v1/suppliers",
            Some(json!({"name": "Planted by alpha"})),
        ),
    ] {
        assert_eq!(
            error(&app, "beta", &alpha_key, method, path, body).await,
            (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned()),
            "{path}"
        );
    }
    let (_, after) = expect(
        &app,
        "beta",
        &beta_owner,
        Method::GET,
        "/api/v1/suppliers",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(before, after, "beta's data is unchanged");
    // Beta cannot see or revoke alpha's key either.
    let (_, beta_keys) = expect(
        &app,
        "beta",
        &beta_owner,
        Method::GET,
        "/api/v1/api-keys",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(beta_keys, json!({"data": [], "next_cursor": null}));
    let (_, alpha_keys) = expect(
        &app,
        "alpha",
        &alpha_owner,
        Method::GET,
        "/api/v1/api-keys",
        None,
        StatusCode::OK,
    )
    .await;
    let alpha_key_id = alpha_keys["data"][0]["id"].as_str().unwrap();
    for (method, path) in [
        (Method::DELETE, format!("/api/v1/api-keys/{alpha_key_id}")),
        (
            Method::POST,
            format!("/api/v1/api-keys/{alpha_key_id}/regenerate"),
        ),
    ] {
        assert_eq!(
            error(&app, "beta", &beta_owner, method, &path, None).await,
            (StatusCode::NOT_FOUND, "not_found".to_owned())
        );
    }
    expect(
        &app,
        "alpha",
        &alpha_key,
        Method::GET,
        "/api/v1/suppliers",
        None,
        StatusCode::OK,
    )
    .await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_need_the_api_access_module_at_every_request() {
    let app = TestApp::spawn().await;
    app.active_tenant("basic").await;
    professional(&app, "pro").await;
    let admin = crate::admin::admin_token(&app).await;

    // Starter has no API access: keys can be neither listed nor made.
    let basic_owner = owner_token(&app, "basic").await;
    for (method, body) in [
        (Method::GET, None),
        (Method::POST, Some(json!({"name": "Sync"}))),
    ] {
        let response = call(
            &app,
            "basic",
            &basic_owner,
            method,
            "/api/v1/api-keys",
            body,
        )
        .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "module_not_enabled");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Professional"),
            "{body}"
        );
    }
    let keys: i64 = app
        .control_plane()
        .await
        .query_one("SELECT count(*) FROM api_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 0);

    // A Professional tenant's key stops when the tenant moves to Starter, and works again
    // when it moves back (it was never revoked).
    let pro_owner = owner_token(&app, "pro").await;
    let (key, _) = create_key(&app, "pro", &pro_owner, "Sync", "read_only").await;
    expect(
        &app,
        "pro",
        &key,
        Method::GET,
        "/api/v1/items",
        None,
        StatusCode::OK,
    )
    .await;
    let change_plan = |plan: &'static str| {
        crate::admin::admin_call(&app, Method::POST, "/api/v1/admin/tenants/pro/plan", &admin)
            .json(&json!({"plan": plan}))
            .send()
    };
    assert_eq!(
        change_plan("starter").await.unwrap().status(),
        StatusCode::OK
    );
    wait_for_answer(
        &app,
        "pro",
        &key,
        "/api/v1/items",
        StatusCode::FORBIDDEN,
        Some("module_not_enabled"),
    )
    .await;
    // Other services are told the same.
    let validate = app
        .request(Method::POST, &app.apex_host(), "/api/v1/api-keys/validate")
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(validate).await,
        (StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned())
    );
    // The owner still works with a session; only keys are off.
    expect(
        &app,
        "pro",
        &pro_owner,
        Method::GET,
        "/api/v1/items",
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        change_plan("professional").await.unwrap().status(),
        StatusCode::OK
    );
    wait_for_answer(&app, "pro", &key, "/api/v1/items", StatusCode::OK, None).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_services_validate_keys_on_the_apex() {
    let app = TestApp::spawn().await;
    let tenant_id = professional(&app, "checked").await;
    let owner = owner_token(&app, "checked").await;
    let (key, created) = create_key(&app, "checked", &owner, "Warehouse robot", "staff").await;
    let validate = |key: Value| {
        app.request(Method::POST, &app.apex_host(), "/api/v1/api-keys/validate")
            .json(&json!({"key": key}))
            .send()
    };

    let response = validate(json!(key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(secret_part(&key)),
        "the answer repeats the secret"
    );
    let valid: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        valid,
        json!({
            "valid": true,
            "tenant_id": tenant_id,
            "subdomain": "checked",
            "key_id": created["id"],
            "name": "Warehouse robot",
            "role": "staff",
        })
    );

    // Garbage, a made-up key, a wrong secret: all the same answer.
    let prefix = created["prefix"].as_str().unwrap();
    let wrong_secret = format!("silo_{prefix}_{}", "a".repeat(40));
    let made_up = format!("silo_aaaaaaaa_{}", "b".repeat(40));
    for bad in [
        json!("nonsense"),
        json!(""),
        json!(made_up),
        json!(wrong_secret),
    ] {
        assert_eq!(
            error_code(validate(bad.clone()).await.unwrap()).await,
            (StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned()),
            "{bad}"
        );
    }
    let missing = app
        .request(Method::POST, &app.apex_host(), "/api/v1/api-keys/validate")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(missing).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request".to_owned()
        )
    );
    // It is an apex endpoint; a tenant's host does not answer it.
    let on_tenant = app
        .request(
            Method::POST,
            &app.tenant_host("checked"),
            "/api/v1/api-keys/validate",
        )
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_ne!(on_tenant.status(), StatusCode::OK);

    // Revoked: no longer valid.
    let key_id = created["id"].as_str().unwrap();
    expect(
        &app,
        "checked",
        &owner,
        Method::DELETE,
        &format!("/api/v1/api-keys/{key_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        error_code(validate(json!(key)).await.unwrap()).await,
        (StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned())
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_credentials_are_sealed_to_their_tenant_and_name_and_rotate() {
    let old_key = Keyring::generate_entry("old");
    let app = TestApp::spawn_with(TestOptions {
        keys: Some(old_key.clone()),
        ..Default::default()
    })
    .await;
    let wares = professional(&app, "wares").await;
    let other = app.active_tenant("other").await.tenant_id;
    let owner = owner_token(&app, "wares").await;
    let other_owner = owner_token(&app, "other").await;
    let first_secret = "shpat_0123456789abcdefABCD";
    let secret = "shpat_fedcba9876543210WXYZ";

    let (text, created) = expect(
        &app,
        "wares",
        &owner,
        Method::PUT,
        "/api/v1/integrations/shopify",
        Some(json!({"secret": first_secret})),
        StatusCode::CREATED,
    )
    .await;
    assert!(
        !text.contains(first_secret) && !text.contains("0123456789"),
        "{text}"
    );
    assert_eq!(created["last4"], "ABCD");
    // Replacing answers 200 with the new last four.
    let (text, replaced) = expect(
        &app,
        "wares",
        &owner,
        Method::PUT,
        "/api/v1/integrations/shopify",
        Some(json!({"secret": secret})),
        StatusCode::OK,
    )
    .await;
    assert!(!text.contains(secret), "{text}");
    assert_eq!(replaced["last4"], "WXYZ");
    expect(
        &app,
        "wares",
        &owner,
        Method::PUT,
        "/api/v1/integrations/dhl_express",
        Some(json!({"secret": "dhl-0000-1111-2222"})),
        StatusCode::CREATED,
    )
    .await;
    let (text, list) = expect(
        &app,
        "wares",
        &owner,
        Method::GET,
        "/api/v1/integrations",
        None,
        StatusCode::OK,
    )
    .await;
    assert!(
        !text.contains(secret) && !text.contains("dhl-0000"),
        "{text}"
    );
    let names: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            assert_eq!(
                entry.as_object().unwrap().len(),
                3,
                "name, last4 and updated_at only: {entry}"
            );
            (
                entry["name"].as_str().unwrap(),
                entry["last4"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("dhl_express", "2222"), ("shopify", "WXYZ")]);
    // Owners only: a staff key may not see them.
    let (staff_key, _) = create_key(&app, "wares", &owner, "Robot", "staff").await;
    assert_eq!(
        error(
            &app,
            "wares",
            &staff_key,
            Method::GET,
            "/api/v1/integrations",
            None
        )
        .await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );

    // Nothing in the control plane holds it in clear; the audit has the changes, not the secret.
    let dump = crate::sealing::dump_control_plane(&app).await;
    for needle in [first_secret, secret, "fedcba9876543210", "dhl-0000-1111"] {
        assert!(!dump.contains(needle), "a credential is stored in clear");
        assert!(
            !dump.contains(&hex(needle.as_bytes())),
            "a credential is stored as bytes"
        );
    }
    let control = app.control_plane().await;
    let audit: Vec<(String, String)> = control
        .query(
            "SELECT action, detail::text FROM audit_log WHERE action LIKE 'integration.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let actions: Vec<&str> = audit.iter().map(|(action, _)| action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "integration.create",
            "integration.replace",
            "integration.create"
        ]
    );
    assert!(audit[1].1.contains("shopify"), "{audit:?}");
    // It opens for its own tenant and name.
    let keyring = app.keyring.clone();
    assert_eq!(
        app.store
            .integration_secret(&keyring, wares, "shopify")
            .await
            .unwrap()
            .expose_secret(),
        secret
    );

    // A sealed value copied onto another tenant's row, or another name, fails to open.
    expect(
        &app,
        "other",
        &other_owner,
        Method::PUT,
        "/api/v1/integrations/shopify",
        Some(json!({"secret": "the-other-tenants-token"})),
        StatusCode::CREATED,
    )
    .await;
    let copy = "UPDATE tenant_integrations AS target \
                SET sealed_secret = source.sealed_secret, key_id = source.key_id \
                FROM tenant_integrations AS source \
                WHERE source.tenant_id = $1 AND source.name = 'shopify' \
                  AND target.tenant_id = $2 AND target.name = $3";
    for (target, name) in [(other, "shopify"), (wares, "dhl_express")] {
        let copied = control
            .execute(copy, &[&wares, &target, &name])
            .await
            .unwrap();
        assert_eq!(copied, 1);
        assert!(
            matches!(
                app.store.integration_secret(&keyring, target, name).await,
                Err(StoreError::Sealing(SealingError::Tampered))
            ),
            "a copied credential opened for {name}"
        );
    }
    // Removing them (the tampered rows would stop a rotation, as any tampered secret does).
    expect(
        &app,
        "other",
        &other_owner,
        Method::DELETE,
        "/api/v1/integrations/shopify",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    expect(
        &app,
        "wares",
        &owner,
        Method::DELETE,
        "/api/v1/integrations/dhl_express",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_eq!(
        error(
            &app,
            "wares",
            &owner,
            Method::DELETE,
            "/api/v1/integrations/dhl_express",
            None
        )
        .await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );

    // `silo keys rotate` re-seals them under the new key; they open with it alone.
    let new_key = Keyring::generate_entry("new");
    let both = Keyring::parse(&SecretString::from(format!(
        "{},{}",
        new_key.expose_secret(),
        old_key.expose_secret()
    )))
    .unwrap();
    let report = app.store.reseal_all(&both).await.unwrap();
    assert_eq!(report.integrations, 1);
    assert_eq!(app.store.reseal_all(&both).await.unwrap().integrations, 0);
    let key_ids: Vec<String> = control
        .query("SELECT key_id FROM tenant_integrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(key_ids, ["new"]);
    let only_new = Keyring::parse(&new_key).unwrap();
    assert_eq!(
        app.store
            .integration_secret(&only_new, wares, "shopify")
            .await
            .unwrap()
            .expose_secret(),
        secret
    );
    drop(control);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_and_credential_input_gets_422_with_fields_and_changes_nothing() {
    let app = TestApp::spawn().await;
    professional(&app, "careful").await;
    let owner = owner_token(&app, "careful").await;

    let long_name = "n".repeat(101);
    for (body, fields) in [
        (json!({"name": "  ", "role": "owner"}), vec!["name", "role"]),
        (json!({"name": long_name}), vec!["name"]),
        (json!({"name": "Sync", "role": "admin"}), vec!["role"]),
    ] {
        let response = call(
            &app,
            "careful",
            &owner,
            Method::POST,
            "/api/v1/api-keys",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "validation_failed");
        let named: Vec<&str> = answer["error"]["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(named, fields, "{body}");
    }
    assert_eq!(
        error(
            &app,
            "careful",
            &owner,
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"role": "staff"}))
        )
        .await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request".to_owned()
        )
    );

    let too_long = "x".repeat(4097);
    for (name, body, fields) in [
        (
            "Bad-Name",
            json!({"secret": "short"}),
            vec!["name", "secret"],
        ),
        ("shopify", json!({"secret": "short"}), vec!["secret"]),
        (
            "shopify",
            json!({"secret": " padded-token-value "}),
            vec!["secret"],
        ),
        ("shopify", json!({"secret": too_long}), vec!["secret"]),
        ("x", json!({"secret": "long-enough-token"}), vec!["name"]),
    ] {
        let path = format!("/api/v1/integrations/{name}");
        let response = call(&app, "careful", &owner, Method::PUT, &path, Some(body)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}"
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "validation_failed");
        let named: Vec<&str> = answer["error"]["fields"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(named, fields, "{path}");
        assert!(
            !answer.to_string().contains("padded-token"),
            "the secret is echoed"
        );
    }
    // Not JSON at all.
    let not_json = app
        .request(
            Method::PUT,
            &app.tenant_host("careful"),
            "/api/v1/integrations/shopify",
        )
        .bearer_auth(&owner)
        .body("secret=abcdefghijkl")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(not_json).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".to_owned()
        )
    );
    // Malformed bearer keys are refused like any bad token.
    for bad in ["silo_", "silo_short_key", "silo_aaaaaaaa_tooshort"] {
        assert_eq!(
            error(&app, "careful", bad, Method::GET, "/api/v1/items", None).await,
            (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
        );
    }

    let control = app.control_plane().await;
    let counts: (i64, i64, i64) = {
        let row = control
            .query_one(
                "SELECT (SELECT count(*) FROM api_keys), (SELECT count(*) FROM tenant_integrations), \
                 (SELECT count(*) FROM audit_log WHERE action LIKE 'api_key.%' OR action LIKE 'integration.%')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(counts, (0, 0, 0), "bad input changed nothing");
    drop(control);
    app.finish().await;
}
