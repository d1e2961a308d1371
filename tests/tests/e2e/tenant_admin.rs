//! The tenant-admin side over real HTTP: white-label branding (public read, owner-only and
//! module-gated write, validated, audited, published to the router, per tenant), user
//! invitations (sealed to their tenant, single use, within the plan's user limit), removing a
//! user. (The settings pages in a browser: `settings_pages`.)

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use control_plane::Purpose;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::harness::TestApp;
use crate::session::Session;

const PASSWORD: &str = "violet tram oyster gravel";
const NEW_PASSWORD: &str = "quartz lantern meadow pilot";
const DEFAULT_COLOR: &str = "#2f5d8a";

/// The tenant's public branding, read without a token.
async fn branding(caller: &Session<'_>) -> Value {
    Session::anonymous(caller.app, &caller.slug)
        .expect(Method::GET, "/api/v1/branding", None, StatusCode::OK)
        .await
}

/// The emails of the tenant's active users.
async fn active_emails(caller: &Session<'_>) -> Vec<String> {
    let users = caller
        .expect(Method::GET, "/api/v1/users", None, StatusCode::OK)
        .await;
    users["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|user| user["is_active"] == true)
        .map(|user| user["email"].as_str().unwrap().to_owned())
        .collect()
}

fn branding_updates(audit: &[(String, String, Value)]) -> Vec<Value> {
    audit
        .iter()
        .filter(|(_, action, _)| action == "branding.update")
        .map(|(_, _, detail)| detail.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branding_is_public_owner_only_module_gated_audited_and_per_tenant() {
    let app = TestApp::spawn().await;
    let paint = app.active_tenant("paint").await;
    app.active_tenant("plain").await;
    let owner = Session::sign_in(&app, "paint", "owner@paint.test", PASSWORD).await;

    // Public defaults: no token needed (the login page shows them).
    let defaults = branding(&owner).await;
    assert_eq!(
        defaults,
        json!({"display_name": "paint Pharmacy", "logo_url": null,
               "primary_color": DEFAULT_COLOR, "custom": false})
    );

    // Starter has no custom_branding: refused, nothing changed, nothing audited.
    let wanted = json!({"display_name": "Paint & Co", "logo_url": "https://cdn.paint.test/logo.png",
                        "primary_color": "#AA3300"});
    assert_eq!(
        owner
            .error(Method::PUT, "/api/v1/branding", Some(wanted.clone()))
            .await,
        (StatusCode::FORBIDDEN, "module_not_enabled".to_owned())
    );
    assert_eq!(branding(&owner).await, defaults);

    app.store
        .set_plan(paint.tenant_id, "professional", "test:setup")
        .await
        .unwrap();
    // A staff user may not change it.
    owner
        .expect(
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "staff@paint.test", "password": PASSWORD, "role": "staff"})),
            StatusCode::CREATED,
        )
        .await;
    let staff = Session::sign_in(&app, "paint", "staff@paint.test", PASSWORD).await;
    assert_eq!(
        staff
            .error(Method::PUT, "/api/v1/branding", Some(wanted.clone()))
            .await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );
    // Bad input: every wrong field named, nothing changed.
    let bad = owner
        .call(
            Method::PUT,
            "/api/v1/branding",
            Some(
                json!({"display_name": " ", "logo_url": "http://cdn.paint.test/logo.png",
                        "primary_color": "red"}),
            ),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    for field in ["display_name", "logo_url", "primary_color"] {
        assert!(
            body["error"]["fields"][field].is_string(),
            "{field}: {body}"
        );
    }
    let too_long = format!("https://cdn.paint.test/{}", "a".repeat(2048));
    assert_eq!(
        owner
            .error(
                Method::PUT,
                "/api/v1/branding",
                Some(json!({"logo_url": too_long}))
            )
            .await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed".to_owned()
        )
    );
    assert_eq!(branding(&owner).await, defaults);
    assert!(branding_updates(&app.store.audit_of(paint.tenant_id).await.unwrap()).is_empty());

    // The owner on Professional: applied at once, normalised, audited with before and after.
    let saved = owner
        .expect(
            Method::PUT,
            "/api/v1/branding",
            Some(wanted),
            StatusCode::OK,
        )
        .await;
    let expected = json!({"display_name": "Paint & Co", "logo_url": "https://cdn.paint.test/logo.png",
                          "primary_color": "#aa3300", "custom": true});
    assert_eq!(saved, expected);
    assert_eq!(branding(&owner).await, expected);
    owner
        .expect(
            Method::PUT,
            "/api/v1/branding",
            Some(json!({"primary_color": "#003366"})),
            StatusCode::OK,
        )
        .await;
    let updates = branding_updates(&app.store.audit_of(paint.tenant_id).await.unwrap());
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0]["before"], Value::Null);
    assert_eq!(updates[0]["after"]["primary_color"], "#aa3300");
    assert_eq!(updates[1]["before"]["display_name"], "Paint & Co");
    assert_eq!(updates[1]["after"]["primary_color"], "#003366");
    assert_eq!(updates[1]["after"]["display_name"], Value::Null);
    // Fields left out go back to their defaults.
    assert_eq!(
        branding(&owner).await,
        json!({"display_name": "paint Pharmacy", "logo_url": null,
               "primary_color": "#003366", "custom": true})
    );

    // A change made elsewhere (another router, an operator) reaches this router at once through
    // the table's change notification, not after the (hour-long, in tests) cache TTL.
    app.control_plane()
        .await
        .execute(
            "UPDATE tenant_branding SET primary_color = '#112233' WHERE tenant_id = $1",
            &[&paint.tenant_id],
        )
        .await
        .unwrap();
    let started = Instant::now();
    while branding(&owner).await["primary_color"] != "#112233" {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the router still serves the old branding"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Tenant B: its own defaults, never A's; A's owner token changes nothing there.
    let plain = Session::anonymous(&app, "plain");
    assert_eq!(
        branding(&plain).await,
        json!({"display_name": "plain Pharmacy", "logo_url": null,
               "primary_color": DEFAULT_COLOR, "custom": false})
    );
    assert_eq!(
        owner
            .on("plain")
            .error(
                Method::PUT,
                "/api/v1/branding",
                Some(json!({"primary_color": "#ffffff"}))
            )
            .await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );
    assert_eq!(branding(&plain).await["primary_color"], DEFAULT_COLOR);
    // The sign-in page carries each tenant's own branding only.
    let page_a = app.tenant_get("paint", "/").await.text().await.unwrap();
    let page_b = app.tenant_get("plain", "/").await.text().await.unwrap();
    assert!(page_a.contains("#112233") && page_a.contains("paint Pharmacy"));
    assert!(!page_b.contains("#112233") && !page_b.contains("paint Pharmacy"));
    assert!(page_b.contains(DEFAULT_COLOR) && page_b.contains("plain Pharmacy"));
    app.finish().await;
}

/// A token in the invitation format, sealed by the test itself (to make an expired one).
fn seal_invitation(app: &TestApp, tenant: uuid::Uuid, claims: &Value) -> String {
    let sealed = app.keyring.seal(
        Purpose::TenantInvitation,
        tenant,
        &SecretString::from(claims.to_string()),
    );
    format!(
        "inv1.{}.{}",
        URL_SAFE_NO_PAD.encode(sealed.key_id.as_bytes()),
        URL_SAFE_NO_PAD.encode(&sealed.blob)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invited_users_join_once_with_their_role_within_the_plan() {
    let app = TestApp::spawn().await;
    let inviter = app.active_tenant("inviter").await;
    app.active_tenant("other").await;
    let owner = Session::sign_in(&app, "inviter", "owner@inviter.test", PASSWORD).await;
    let other_owner = Session::sign_in(&app, "other", "owner@other.test", PASSWORD).await;
    let anonymous = Session::anonymous(&app, "inviter");

    let bad = owner
        .call(
            Method::POST,
            "/api/v1/users/invitations",
            Some(json!({"email": "nobody", "role": "god"})),
        )
        .await;
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(body["error"]["fields"]["email"].is_string(), "{body}");
    assert!(body["error"]["fields"]["role"].is_string(), "{body}");

    let invitation = owner
        .expect(
            Method::POST,
            "/api/v1/users/invitations",
            Some(json!({"email": "clerk@inviter.test", "role": "staff"})),
            StatusCode::CREATED,
        )
        .await;
    let token = invitation["token"].as_str().unwrap().to_owned();
    assert_eq!(
        invitation["invitation_url"],
        format!("http://{}/join?token={token}", app.tenant_host("inviter"))
    );
    let expires_at: chrono::DateTime<chrono::Utc> =
        invitation["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = expires_at - chrono::Utc::now();
    assert!(
        lifetime > chrono::Duration::days(7) - chrono::Duration::minutes(1)
            && lifetime <= chrono::Duration::days(7),
        "{lifetime}"
    );
    // The token is sealed: neither the email nor the role is readable in it.
    let sealed = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().unwrap())
        .expect("the sealed part is base64url");
    let readable = String::from_utf8_lossy(&sealed);
    assert!(
        !readable.contains("clerk@inviter.test") && !readable.contains("staff"),
        "{readable}"
    );
    let audit = app.store.audit_of(inviter.tenant_id).await.unwrap();
    let invited = audit
        .iter()
        .find(|(_, action, _)| action == "user.invite")
        .unwrap();
    assert_eq!(invited.2["email"], "clerk@inviter.test");
    assert!(!invited.2.to_string().contains(&token));

    let accept = |token: &str, password: &str| json!({"token": token, "password": password, "display_name": "Clerk Kent"});
    // Tampered, on another tenant's host, expired: refused, nothing created anywhere.
    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = seal_invitation(
        &app,
        inviter.tenant_id,
        &json!({"email": "late@inviter.test", "role": "staff",
                "expires_at": chrono::Utc::now() - chrono::Duration::minutes(1)}),
    );
    for (host, token) in [
        ("inviter", tampered.as_str()),
        ("inviter", "inv1.garbage"),
        ("other", token.as_str()),
        ("inviter", expired.as_str()),
    ] {
        assert_eq!(
            Session::anonymous(&app, host)
                .error(
                    Method::POST,
                    "/api/v1/invitations/accept",
                    Some(accept(token, NEW_PASSWORD))
                )
                .await,
            (StatusCode::BAD_REQUEST, "invalid_invitation".to_owned()),
            "{host}"
        );
    }
    // A guessable password is refused by the signup's strength check; nothing is created.
    let weak = anonymous
        .call(
            Method::POST,
            "/api/v1/invitations/accept",
            Some(accept(&token, "password1234")),
        )
        .await;
    let body: Value = weak.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert!(body["error"]["fields"]["password"].is_string(), "{body}");
    assert_eq!(active_emails(&owner).await, ["owner@inviter.test"]);
    assert_eq!(active_emails(&other_owner).await, ["owner@other.test"]);

    // Accepted: the user exists with the invited role and signs in.
    let joined = anonymous
        .expect(
            Method::POST,
            "/api/v1/invitations/accept",
            Some(accept(&token, NEW_PASSWORD)),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(joined["role"], "staff");
    assert_eq!(joined["display_name"], "Clerk Kent");
    assert!(joined.get("password_hash").is_none());
    let clerk = Session::sign_in(&app, "inviter", "clerk@inviter.test", NEW_PASSWORD).await;
    let me = clerk
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    assert_eq!(me["role"], "staff");
    // Once only.
    assert_eq!(
        anonymous
            .error(
                Method::POST,
                "/api/v1/invitations/accept",
                Some(accept(&token, NEW_PASSWORD))
            )
            .await,
        (StatusCode::CONFLICT, "already_exists".to_owned())
    );
    // Only owners invite and remove.
    assert_eq!(
        clerk
            .error(
                Method::POST,
                "/api/v1/users/invitations",
                Some(json!({"email": "x@inviter.test", "role": "owner"}))
            )
            .await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );
    let clerk_id = joined["id"].as_i64().unwrap();
    let owner_id = owner
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        clerk
            .error(Method::DELETE, &format!("/api/v1/users/{owner_id}"), None)
            .await,
        (StatusCode::FORBIDDEN, "insufficient_role".to_owned())
    );

    // The plan's user limit (Starter: 5) holds at acceptance, even for invitations made below it.
    for email in ["third@inviter.test", "fourth@inviter.test"] {
        owner
            .expect(
                Method::POST,
                "/api/v1/users",
                Some(json!({"email": email, "password": PASSWORD, "role": "read_only"})),
                StatusCode::CREATED,
            )
            .await;
    }
    let mut pending = Vec::new();
    for email in ["fifth@inviter.test", "sixth@inviter.test"] {
        let invitation = owner
            .expect(
                Method::POST,
                "/api/v1/users/invitations",
                Some(json!({"email": email, "role": "read_only"})),
                StatusCode::CREATED,
            )
            .await;
        pending.push(invitation["token"].as_str().unwrap().to_owned());
    }
    anonymous
        .expect(
            Method::POST,
            "/api/v1/invitations/accept",
            Some(accept(&pending[0], NEW_PASSWORD)),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        anonymous
            .error(
                Method::POST,
                "/api/v1/invitations/accept",
                Some(accept(&pending[1], NEW_PASSWORD))
            )
            .await,
        (StatusCode::FORBIDDEN, "plan_limit_reached".to_owned())
    );
    assert_eq!(
        owner
            .error(
                Method::POST,
                "/api/v1/users/invitations",
                Some(json!({"email": "seventh@inviter.test", "role": "staff"}))
            )
            .await,
        (StatusCode::FORBIDDEN, "plan_limit_reached".to_owned())
    );
    assert!(
        !active_emails(&owner)
            .await
            .contains(&"sixth@inviter.test".to_owned())
    );

    // Removing a user ends its sessions at once; the last owner cannot remove itself.
    owner
        .expect(
            Method::DELETE,
            &format!("/api/v1/users/{clerk_id}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    // Audited under the owner's name, with who was removed.
    let audit = app.store.audit_of(inviter.tenant_id).await.unwrap();
    let removal = audit
        .iter()
        .find(|(_, action, _)| action == "user.remove")
        .expect("the removal is audited");
    assert!(
        removal.0.starts_with("tenant:inviter:user:"),
        "{}",
        removal.0
    );
    assert_eq!(removal.2["email"], "clerk@inviter.test");
    assert_eq!(
        clerk.error(Method::GET, "/api/v1/me", None).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned())
    );
    assert!(
        !active_emails(&owner)
            .await
            .contains(&"clerk@inviter.test".to_owned())
    );
    assert_eq!(
        owner
            .error(Method::DELETE, &format!("/api/v1/users/{owner_id}"), None)
            .await,
        (StatusCode::CONFLICT, "last_owner".to_owned())
    );
    assert_eq!(
        owner
            .error(Method::DELETE, "/api/v1/users/999999", None)
            .await,
        (StatusCode::NOT_FOUND, "not_found".to_owned())
    );
    // With a place free again, the waiting invitation can be accepted.
    anonymous
        .expect(
            Method::POST,
            "/api/v1/invitations/accept",
            Some(accept(&pending[1], NEW_PASSWORD)),
            StatusCode::CREATED,
        )
        .await;
    app.finish().await;
}
