//! The custom-domain lifecycle: a claim is not ownership (several tenants may claim a domain
//! until one proves it in DNS, and unverified claims expire), verification really reads the TXT
//! record at `_silo-challenge.<domain>` (from the tests' own DNS server on loopback UDP), and a
//! deprovisioned tenant releases its domains.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::admin::{admin_call, admin_token};
use crate::harness::{TestApp, error_code};
use crate::session::Session;
use crate::test_dns::dns;

async fn claim(session: &Session<'_>, domain: &str) -> Value {
    session
        .expect(
            Method::POST,
            "/api/v1/domains",
            Some(json!({"domain": domain})),
            StatusCode::CREATED,
        )
        .await
}

async fn verify(app: &TestApp, token: &str, domain: &str) -> reqwest::Response {
    admin_call(
        app,
        Method::POST,
        &format!("/api/v1/admin/domains/{domain}/verify"),
        token,
    )
    .send()
    .await
    .unwrap()
}

/// The tenant `domain` routes to, waiting (up to 2 s: routers hear of changes within a second)
/// until the answer is `expected`.
async fn wait_routed(app: &TestApp, domain: &str, expected: Option<&str>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let response = app
            .request(
                Method::GET,
                &format!("{domain}:{}", app.address.port()),
                "/api/v1/health",
            )
            .send()
            .await
            .unwrap();
        let routed = if response.status() == StatusCode::OK {
            response.json::<Value>().await.unwrap()["tenant"]
                .as_str()
                .map(str::to_owned)
        } else {
            None
        };
        if routed.as_deref() == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{domain} routes to {routed:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The domains a tenant's owner lists (a bare list, or a page's `data`).
async fn listed(session: &Session<'_>) -> Vec<Value> {
    let body = session
        .expect(Method::GET, "/api/v1/domains", None, StatusCode::OK)
        .await;
    body.get("data")
        .unwrap_or(&body)
        .as_array()
        .unwrap()
        .clone()
}

async fn claimed(session: &Session<'_>) -> Vec<String> {
    listed(session)
        .await
        .iter()
        .map(|domain| domain["domain"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_claim_wins_over_unverified_ones_and_claims_expire() {
    let app = TestApp::spawn().await;
    for slug in ["squatter", "owner", "slow"] {
        app.active_tenant(slug).await;
    }
    let squatter = Session::owner(&app, "squatter").await;
    let owner = Session::owner(&app, "owner").await;
    let slow = Session::owner(&app, "slow").await;
    let token = admin_token(&app).await;

    // The first, unverified claim does not block the domain's real owner.
    let squatted = claim(&squatter, "shop.victim.test").await;
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(squatted["expires_at"].clone()).unwrap();
    let week = expires - chrono::Utc::now();
    assert!(
        week > chrono::Duration::days(7) - chrono::Duration::minutes(5)
            && week <= chrono::Duration::days(7),
        "an unverified claim lasts the default 7 days: {week}"
    );
    let real = claim(&owner, "shop.victim.test").await;
    assert_ne!(real["verification_token"], squatted["verification_token"]);

    // The owner publishes its token: verification gives it the domain and removes the other
    // claim, which the squatter's trail records.
    dns().publish(
        "_silo-challenge.shop.victim.test",
        &[real["verification_token"].as_str().unwrap()],
    );
    let verified = verify(&app, &token, "shop.victim.test").await;
    assert_eq!(verified.status(), StatusCode::OK);
    let verified: Value = verified.json().await.unwrap();
    assert_eq!(verified["verified"], true);
    assert!(verified["expires_at"].is_null());
    wait_routed(&app, "shop.victim.test", Some("owner")).await;
    assert!(claimed(&squatter).await.is_empty());
    let squatter_id = app
        .store
        .tenant_by_slug("squatter")
        .await
        .unwrap()
        .unwrap()
        .id;
    let trail = app.store.audit_of(squatter_id).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|(_, action, detail)| action == "domain.claim_superseded"
                && detail["domain"] == "shop.victim.test"),
        "{trail:?}"
    );
    // While it stands, nobody claims it again.
    assert_eq!(
        squatter
            .error(
                Method::POST,
                "/api/v1/domains",
                Some(json!({"domain": "shop.victim.test"}))
            )
            .await,
        (StatusCode::CONFLICT, "domain_taken".to_owned())
    );

    // A claim past its lifetime cannot be verified, even with its token published, and blocks
    // nobody: the next claim clears it.
    let stale = claim(&slow, "stale.victim.test").await;
    app.control_plane()
        .await
        .execute(
            "UPDATE tenant_domains SET expires_at = now() - interval '1 second' \
             WHERE domain = 'stale.victim.test'",
            &[],
        )
        .await
        .unwrap();
    dns().publish(
        "_silo-challenge.stale.victim.test",
        &[stale["verification_token"].as_str().unwrap()],
    );
    assert_eq!(
        error_code(verify(&app, &token, "stale.victim.test").await).await,
        (StatusCode::CONFLICT, "domain_claim_expired".to_owned())
    );
    wait_routed(&app, "stale.victim.test", None).await;
    let renewed = claim(&slow, "stale.victim.test").await;
    assert_ne!(renewed["verification_token"], stale["verification_token"]);
    assert_eq!(claimed(&slow).await, ["stale.victim.test"]);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reads_the_txt_record_and_a_missing_or_wrong_one_changes_nothing() {
    let app = TestApp::spawn().await;
    app.active_tenant("prover").await;
    let prover = Session::owner(&app, "prover").await;
    let token = admin_token(&app).await;
    let added = claim(&prover, "shop.proof.test").await;
    let record = "_silo-challenge.shop.proof.test";

    // No TXT record at all, then a wrong one: refused, still unverified and not routed.
    assert_eq!(
        error_code(verify(&app, &token, "shop.proof.test").await).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "domain_not_verified".to_owned()
        )
    );
    dns().publish(record, &["silo-verify-0000", "v=spf1 -all"]);
    let wrong = verify(&app, &token, "shop.proof.test").await;
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "domain_not_verified");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(record),
        "the message names the record to publish: {body}"
    );
    // A nameserver that fails is not a refusal of the claim: 502, nothing changed.
    dns().fail(record);
    assert_eq!(
        error_code(verify(&app, &token, "shop.proof.test").await).await,
        (StatusCode::BAD_GATEWAY, "dns_unavailable".to_owned())
    );
    assert_eq!(listed(&prover).await[0]["verified"], false);
    wait_routed(&app, "shop.proof.test", None).await;
    let verifications: i64 = app
        .control_plane()
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'domain.verify'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(verifications, 0);

    // The right token (among other TXT strings) verifies it; it routes to its tenant.
    dns().publish(
        record,
        &["v=spf1 -all", added["verification_token"].as_str().unwrap()],
    );
    assert_eq!(
        verify(&app, &token, "shop.proof.test").await.status(),
        StatusCode::OK
    );
    wait_routed(&app, "shop.proof.test", Some("prover")).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovisioned_tenant_releases_its_domains() {
    let app = TestApp::spawn().await;
    app.active_tenant("leaver").await;
    app.active_tenant("heir").await;
    let leaver = Session::owner(&app, "leaver").await;
    let heir = Session::owner(&app, "heir").await;
    let token = admin_token(&app).await;
    let added = claim(&leaver, "shop.legacy.test").await;
    dns().publish(
        "_silo-challenge.shop.legacy.test",
        &[added["verification_token"].as_str().unwrap()],
    );
    assert_eq!(
        verify(&app, &token, "shop.legacy.test").await.status(),
        StatusCode::OK
    );
    wait_routed(&app, "shop.legacy.test", Some("leaver")).await;

    let leaving = app.store.tenant_by_slug("leaver").await.unwrap().unwrap();
    app.store
        .cancel_tenant(leaving.id, Duration::ZERO, "test:operator")
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.store.tenant(leaving.id).await.unwrap().status.as_str() != "deprovisioned" {
        assert!(std::time::Instant::now() < deadline, "never deprovisioned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Released: the domain names no tenant (404, not the gone tenant's 410; routers hear of
    // it within a second) and another tenant may claim it.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let answer = app
            .request(
                Method::GET,
                &format!("shop.legacy.test:{}", app.address.port()),
                "/api/v1/health",
            )
            .send()
            .await
            .unwrap();
        let answer = error_code(answer).await;
        if answer == (StatusCode::NOT_FOUND, "tenant_not_found".to_owned()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the released domain still answers {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    claim(&heir, "shop.legacy.test").await;
    let trail = app.store.audit_of(leaving.id).await.unwrap();
    let deprovision = trail
        .iter()
        .find(|(_, action, _)| action == "tenant.deprovision")
        .unwrap();
    assert_eq!(
        deprovision.2["released_domains"],
        json!(["shop.legacy.test"])
    );
    app.finish().await;
}
