//! Issue 14, item 8: per-plan count limits on custom domains, API keys, integration credentials
//! and pending invitations hold under parallel creates, free a place when one is removed, and
//! the four lists are paged like the others (`limit`, `cursor`, `next_cursor`).

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, error_code};
use crate::session::Session;

/// The four creates (an API key, a custom domain, a credential, an invitation) numbered `i`.
fn creates(slug: &str, i: usize) -> [(Method, String, Value); 4] {
    [
        (
            Method::POST,
            "/api/v1/api-keys".to_owned(),
            json!({"name": format!("key {i}")}),
        ),
        (
            Method::POST,
            "/api/v1/domains".to_owned(),
            json!({"domain": format!("d{i}.{slug}-example.test")}),
        ),
        (
            Method::PUT,
            format!("/api/v1/integrations/svc_{i}"),
            json!({"secret": format!("secret-value-{i}")}),
        ),
        (
            Method::POST,
            "/api/v1/users/invitations".to_owned(),
            json!({"email": format!("p{i}@{slug}.test"), "role": "staff"}),
        ),
    ]
}

/// Sends every request at once; returns each answer's status and error code ("" on success).
async fn all_at_once(
    owner: &Session<'_>,
    requests: Vec<(Method, String, Value)>,
) -> Vec<(StatusCode, String)> {
    join_all(requests.into_iter().map(|(method, path, body)| async move {
        let response = owner.call(method, &path, Some(body)).await;
        if response.status().is_success() {
            (response.status(), String::new())
        } else {
            error_code(response).await
        }
    }))
    .await
}

fn tally(answers: &[(StatusCode, String)]) -> (usize, usize) {
    let made = answers
        .iter()
        .filter(|(status, _)| status.is_success())
        .count();
    let refused = answers
        .iter()
        .filter(|answer| **answer == (StatusCode::FORBIDDEN, "plan_limit_reached".to_owned()))
        .count();
    (made, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_never_pass_the_plans_count_limits() {
    let app = TestApp::spawn().await;
    let shop = app.active_tenant("bounded").await.tenant_id;
    app.control_plane()
        .await
        .execute(
            "UPDATE plans SET max_api_keys = 5, max_custom_domains = 3, max_integrations = 4, \
             max_pending_invitations = 3 WHERE code = 'professional'",
            &[],
        )
        .await
        .unwrap();
    app.store
        .set_plan(shop, "professional", "test:setup")
        .await
        .unwrap();
    let owner = Session::owner(&app, "bounded").await;
    owner
        .wait_until_answered("/api/v1/api-keys", StatusCode::OK, "the plan change")
        .await;

    // Twelve at once of each kind: exactly the limit is made, the rest refused.
    for (kind, limit) in [(0, 5), (1, 3), (2, 4), (3, 3)] {
        let answers = all_at_once(
            &owner,
            (0..12)
                .map(|i| creates("bounded", i)[kind].clone())
                .collect(),
        )
        .await;
        assert_eq!(tally(&answers), (limit, 12 - limit), "{answers:?}");
    }
    let counts = app.store.stored_counts(shop).await.unwrap();
    assert_eq!(
        (
            counts.api_keys,
            counts.custom_domains,
            counts.integrations,
            counts.pending_invitations
        ),
        (5, 3, 4, 3)
    );

    // The refusal says what to do; the plan page shows each count against its limit.
    let (_, refusal) = owner
        .error(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "one more"})),
        )
        .await;
    assert_eq!(refusal, "plan_limit_reached");
    let plan = owner
        .expect(Method::GET, "/api/v1/plan", None, StatusCode::OK)
        .await;
    assert_eq!(plan["usage"]["api_keys"], json!({"used": 5, "limit": 5}));
    assert_eq!(
        plan["usage"]["pending_invitations"],
        json!({"used": 3, "limit": 3})
    );

    // At the limit a credential can still be replaced; a revoked key or invitation frees its place.
    let stored: Vec<String> = owner
        .expect(Method::GET, "/api/v1/integrations", None, StatusCode::OK)
        .await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_owned())
        .collect();
    owner
        .expect(
            Method::PUT,
            &format!("/api/v1/integrations/{}", stored[0]),
            Some(json!({"secret": "replaced-secret"})),
            StatusCode::OK,
        )
        .await;
    let key = owner
        .expect(Method::GET, "/api/v1/api-keys", None, StatusCode::OK)
        .await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner
        .expect(
            Method::DELETE,
            &format!("/api/v1/api-keys/{key}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    owner
        .expect(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "again"})),
            StatusCode::CREATED,
        )
        .await;
    let pending = owner
        .expect(
            Method::GET,
            "/api/v1/users/invitations",
            None,
            StatusCode::OK,
        )
        .await["data"][0]["id"]
        .as_i64()
        .unwrap();
    owner
        .expect(
            Method::DELETE,
            &format!("/api/v1/users/invitations/{pending}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    owner
        .expect(
            Method::POST,
            "/api/v1/users/invitations",
            Some(json!({"email": "late@bounded.test", "role": "read_only"})),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        owner
            .error(
                Method::DELETE,
                &format!("/api/v1/users/invitations/{pending}"),
                None
            )
            .await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    app.finish().await;
}

/// Every page of `path` at `limit=2`: each page's `field` values.
async fn pages_of(owner: &Session<'_>, path: &str, field: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path}?limit=2&cursor={cursor}"),
            None => format!("{path}?limit=2"),
        };
        let body = owner.expect(Method::GET, &url, None, StatusCode::OK).await;
        pages.push(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| match &entry[field] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect(),
        );
        match &body["next_cursor"] {
            Value::Null => return pages,
            Value::String(text) => cursor = Some(text.clone()),
            other => cursor = Some(other.to_string()),
        }
        assert!(pages.len() < 10, "{path} never ends");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_lists_page_with_cursors_and_refuse_bad_pages() {
    let app = TestApp::spawn().await;
    let (owner, _) = Session::owner_on_plan(&app, "paged", "enterprise").await;
    for i in 0..5 {
        for (method, path, body) in creates("paged", i) {
            let response = owner.call(method, &path, Some(body)).await;
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
        }
    }
    let expected = |make: &dyn Fn(usize) -> String| -> Vec<Vec<String>> {
        vec![
            vec![make(0), make(1)],
            vec![make(2), make(3)],
            vec![make(4)],
        ]
    };
    assert_eq!(
        pages_of(&owner, "/api/v1/api-keys", "name").await,
        expected(&|i| format!("key {i}"))
    );
    assert_eq!(
        pages_of(&owner, "/api/v1/domains", "domain").await,
        expected(&|i| format!("d{i}.paged-example.test"))
    );
    assert_eq!(
        pages_of(&owner, "/api/v1/integrations", "name").await,
        expected(&|i| format!("svc_{i}"))
    );
    assert_eq!(
        pages_of(&owner, "/api/v1/users/invitations", "email").await,
        expected(&|i| format!("p{i}@paged.test"))
    );

    // Pages that make no sense are refused, naming what is wrong.
    for (path, code) in [
        ("/api/v1/api-keys?limit=0", "validation_failed"),
        ("/api/v1/domains?limit=201", "validation_failed"),
        ("/api/v1/integrations?limit=-1", "validation_failed"),
        ("/api/v1/users/invitations?limit=0", "validation_failed"),
        ("/api/v1/api-keys?cursor=not-a-key", "validation_failed"),
        ("/api/v1/users/invitations?cursor=abc", "invalid_request"),
    ] {
        let (status, got) = owner.error(Method::GET, path, None).await;
        assert_eq!((status.as_u16(), got.as_str()), (422, code), "{path}");
    }
    app.finish().await;
}
