//! Subscriptions: the lifecycle's transitions (by the clock, by operators and by Stripe), each
//! recorded and reaching the router at once; the signed Stripe webhook (signature cases,
//! redelivery, events out of order); the outbound Stripe calls against a local server.

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac as _};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use crate::harness::{TestApp, TestOptions, error_code};
use crate::stripe_stand_in::{StripeCall, StripeStandIn};

const WEBHOOK_SECRET: &str = "whsec_silo_test_secret";

fn with_stripe(settings: &mut control_plane::Settings) {
    settings.billing.stripe_webhook_secret = Some(WEBHOOK_SECRET.to_owned().into());
}

async fn subscription_status(app: &TestApp, tenant: Uuid) -> String {
    app.store
        .subscription(tenant)
        .await
        .unwrap()
        .status
        .as_str()
        .to_owned()
}

async fn transitions(app: &TestApp, tenant: Uuid) -> Vec<(Option<String>, String, String)> {
    app.store
        .subscription_transitions(tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.from_status, t.to_status, t.reason))
        .collect()
}

/// Waits (≤ 2 s) until the tenant is served again, returning the billing warning header.
async fn wait_served(app: &TestApp, slug: &str) -> Option<String> {
    let started = std::time::Instant::now();
    loop {
        let response = app.tenant_get(slug, "/api/v1/health").await;
        if response.status() == StatusCode::OK {
            return response
                .headers()
                .get("silo-billing-warning")
                .map(|value| value.to_str().unwrap().to_owned());
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{slug} is still not served: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (≤ 2 s) until the served tenant's warning header satisfies `check`.
async fn wait_warning(app: &TestApp, slug: &str, check: impl Fn(Option<&str>) -> bool) {
    let started = std::time::Instant::now();
    loop {
        let warning = wait_served(app, slug).await;
        if check(warning.as_deref()) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{slug} answers with warning {warning:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_moves_by_clock_and_operator_and_refuses_what_it_does_not_allow() {
    let app = TestApp::spawn().await;
    let shop = app.active_tenant("lifecycle").await;
    let tenant = shop.tenant_id;
    let token = crate::admin::admin_token(&app).await;
    let admin = |method: Method, path: &str, body: Value| {
        crate::admin::admin_call(&app, method, path, &token)
            .json(&body)
            .send()
    };
    let lifecycle = control_plane::Settings::default().lifecycle();

    // A new tenant is on a 14-day trial and served without a warning.
    let subscription = app.store.subscription(tenant).await.unwrap();
    assert_eq!(subscription.status.as_str(), "trial");
    let trial_left = subscription.trial_ends_at.unwrap() - Utc::now();
    assert!(
        trial_left > chrono::Duration::days(13) && trial_left <= chrono::Duration::days(14),
        "{trial_left}"
    );
    assert_eq!(wait_served(&app, "lifecycle").await, None);

    // The clock: nothing is due today; after the trial, past_due (still served, with a warning).
    let now = Utc::now();
    let nothing = app
        .store
        .apply_due_transitions(now, &lifecycle)
        .await
        .unwrap();
    assert_eq!(
        nothing.trials_ended + nothing.suspended + nothing.cancelled,
        0
    );
    let after_trial = now + chrono::Duration::days(15);
    let done = app
        .store
        .apply_due_transitions(after_trial, &lifecycle)
        .await
        .unwrap();
    assert_eq!(done.trials_ended, 1);
    assert_eq!(subscription_status(&app, tenant).await, "past_due");
    wait_warning(&app, "lifecycle", |warning| {
        warning.is_some_and(|w| w.starts_with("past_due; suspends-at="))
    })
    .await;
    // A second pass at the same moment finds nothing more to do.
    let again = app
        .store
        .apply_due_transitions(after_trial, &lifecycle)
        .await
        .unwrap();
    assert_eq!(again.trials_ended + again.suspended, 0);

    // After the grace period (real time is still within it): suspended, not served.
    let done = app
        .store
        .apply_due_transitions(now + chrono::Duration::days(30), &lifecycle)
        .await
        .unwrap();
    assert_eq!(done.suspended, 1);
    app.wait_for_error("lifecycle", StatusCode::FORBIDDEN, "tenant_suspended")
        .await;
    assert_eq!(
        app.store.tenant(tenant).await.unwrap().status.as_str(),
        "suspended"
    );

    // An operator extends the trial: served again.
    let extended = admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/extend-trial",
        json!({"by": "7days"}),
    )
    .await
    .unwrap();
    assert_eq!(extended.status(), StatusCode::OK);
    let body: Value = extended.json().await.unwrap();
    assert_eq!(body["subscription"]["status"], "trial");
    assert_eq!(body["tenant"]["status"], "active");
    assert_eq!(wait_served(&app, "lifecycle").await, None);

    // Suspend and reactivate.
    let suspended = admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/suspend",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(suspended.status(), StatusCode::OK);
    app.wait_for_error("lifecycle", StatusCode::FORBIDDEN, "tenant_suspended")
        .await;
    let recorded_before = transitions(&app, tenant).await.len();
    // Refused, changing nothing: suspending twice.
    let twice = admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/suspend",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(twice).await,
        (StatusCode::CONFLICT, "invalid_transition".to_owned())
    );
    let reactivated = admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/reactivate",
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(reactivated.status(), StatusCode::OK);
    assert_eq!(wait_served(&app, "lifecycle").await, None);
    // Back to the trial it was suspended from: reactivation is never a free upgrade.
    assert_eq!(subscription_status(&app, tenant).await, "trial");
    // Refused: reactivating a subscription that is not suspended.
    for (path, body) in [("reactivate", json!({}))] {
        let refused = admin(
            Method::POST,
            &format!("/api/v1/admin/tenants/lifecycle/{path}"),
            body,
        )
        .await
        .unwrap();
        assert_eq!(
            error_code(refused).await,
            (StatusCode::CONFLICT, "invalid_transition".to_owned()),
            "{path}"
        );
    }
    assert_eq!(transitions(&app, tenant).await.len(), recorded_before + 1);
    // Bad input changes nothing either.
    let bad = admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/extend-trial",
        json!({"by": "soon"}),
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(bad).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed".to_owned()
        )
    );

    // Cancelling at the end of the paid period keeps access until then, with a warning.
    app.control_plane()
        .await
        .execute(
            "UPDATE subscriptions SET current_period_end = now() + interval '30 days' \
             WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap();
    let scheduled = admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/cancel",
        json!({"at_period_end": true}),
    )
    .await
    .unwrap();
    assert_eq!(scheduled.status(), StatusCode::OK);
    wait_warning(&app, "lifecycle", |warning| {
        warning.is_some_and(|w| w.starts_with("cancelling; access-ends="))
    })
    .await;
    // Changing one's mind removes the warning; scheduling again and letting the period end
    // cancels: not served (410), offboarding started.
    admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/cancel",
        json!({"at_period_end": false}),
    )
    .await
    .unwrap();
    wait_warning(&app, "lifecycle", |warning| warning.is_none()).await;
    admin(
        Method::POST,
        "/api/v1/admin/tenants/lifecycle/cancel",
        json!({"at_period_end": true}),
    )
    .await
    .unwrap();
    let done = app
        .store
        .apply_due_transitions(Utc::now() + chrono::Duration::days(31), &lifecycle)
        .await
        .unwrap();
    assert_eq!(done.cancelled, 1);
    app.wait_for_error("lifecycle", StatusCode::GONE, "tenant_cancelled")
        .await;
    assert_eq!(
        app.store.tenant(tenant).await.unwrap().status.as_str(),
        "cancelled"
    );
    // Nothing leaves cancelled.
    for path in ["reactivate", "suspend"] {
        let refused = admin(
            Method::POST,
            &format!("/api/v1/admin/tenants/lifecycle/{path}"),
            json!({}),
        )
        .await
        .unwrap();
        assert_eq!(
            error_code(refused).await,
            (StatusCode::CONFLICT, "invalid_transition".to_owned())
        );
    }

    // Every transition was recorded, in order, with why.
    let recorded = transitions(&app, tenant).await;
    let steps: Vec<(Option<&str>, &str, &str)> = recorded
        .iter()
        .map(|(from, to, reason)| (from.as_deref(), to.as_str(), reason.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (None, "trial", "signup"),
            (Some("trial"), "past_due", "trial_ended"),
            (Some("past_due"), "suspended", "grace_expired"),
            (Some("suspended"), "trial", "trial_extended"),
            (Some("trial"), "suspended", "operator_suspended"),
            (Some("suspended"), "trial", "operator_reactivated"),
            (Some("trial"), "cancelled", "period_ended"),
        ]
    );
    // The operator's actions are audited under their name with before and after.
    let audit = app.store.audit_of(tenant).await.unwrap();
    let suspension = audit
        .iter()
        .find(|(_, action, detail)| {
            action == "subscription.suspended" && detail["reason"] == "operator_suspended"
        })
        .unwrap();
    assert!(suspension.0.starts_with("admin:"), "{}", suspension.0);
    assert_eq!(suspension.2["before"], "trial");
    assert_eq!(suspension.2["after"], "suspended");
    assert!(
        audit
            .iter()
            .any(|(_, action, detail)| action == "subscription.cancel_at"
                && detail["after"].is_null())
    );
}

/// A Stripe event as Stripe sends it.
fn event(id: &str, kind: &str, created: i64, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": kind, "created": created,
        "data": {"object": object}
    }))
    .unwrap()
}

/// `t=…,v1=…` for `payload`, computed here from the specification (not with Silo's code).
fn signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

async fn deliver(app: &TestApp, payload: &[u8], header: Option<String>) -> reqwest::Response {
    let mut request = app
        .request(Method::POST, &app.apex_host(), "/api/v1/webhooks/stripe")
        .header("content-type", "application/json")
        .body(payload.to_vec());
    if let Some(header) = header {
        request = request.header("stripe-signature", header);
    }
    request.send().await.unwrap()
}

/// Delivers a correctly signed event; returns its outcome.
async fn send(app: &TestApp, payload: &[u8]) -> String {
    let now = Utc::now().timestamp();
    let header = format!("t={now},v1={}", signature(WEBHOOK_SECRET, now, payload));
    let response = deliver(app, payload, Some(header)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["received"], true);
    body["outcome"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_webhooks_are_verified_applied_once_and_safe_out_of_order() {
    let app = TestApp::spawn_with(TestOptions {
        configure: Some(with_stripe),
        ..TestOptions::default()
    })
    .await;
    let shop = app.active_tenant("paying").await;
    let tenant = shop.tenant_id;
    let base = Utc::now().timestamp() - 3600;
    let checkout = event(
        "evt_checkout",
        "checkout.session.completed",
        base,
        json!({"id": "cs_1", "object": "checkout.session", "client_reference_id": tenant,
               "customer": "cus_paying", "subscription": "sub_paying",
               "metadata": {"tenant_id": tenant, "plan": "professional", "interval": "year"}}),
    );

    // Refused with 400, changing nothing: no header, wrong secret, stale timestamp, tampered body.
    let now = Utc::now().timestamp();
    let stale = now - 301;
    let mut tampered = checkout.clone();
    let position = tampered.len() - 3;
    tampered[position] = b' ';
    let refusals = [
        (checkout.clone(), None),
        (
            checkout.clone(),
            Some(format!(
                "t={now},v1={}",
                signature("whsec_wrong", now, &checkout)
            )),
        ),
        (
            checkout.clone(),
            Some(format!(
                "t={stale},v1={}",
                signature(WEBHOOK_SECRET, stale, &checkout)
            )),
        ),
        (
            tampered.clone(),
            Some(format!(
                "t={now},v1={}",
                signature(WEBHOOK_SECRET, now, &checkout)
            )),
        ),
        (checkout.clone(), Some("garbage".to_owned())),
    ];
    for (payload, header) in refusals {
        let response = deliver(&app, &payload, header.clone()).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, "invalid_signature".to_owned()),
            "{header:?}"
        );
    }
    assert_eq!(
        app.store
            .stripe_event_outcome("evt_checkout")
            .await
            .unwrap(),
        None
    );
    assert_eq!(subscription_status(&app, tenant).await, "trial");

    // Several v1 signatures (as during a secret roll): one matching is enough.
    let header = format!(
        "t={now},v1={},v1={}",
        signature("whsec_old", now, &checkout),
        signature(WEBHOOK_SECRET, now, &checkout)
    );
    let response = deliver(&app, &checkout, Some(header)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let subscription = app.store.subscription(tenant).await.unwrap();
    assert_eq!(subscription.status.as_str(), "active");
    assert_eq!(
        subscription.stripe_customer_id.as_deref(),
        Some("cus_paying")
    );
    assert_eq!(subscription.billing_interval, "year");
    let entitlements = app.store.entitlements(tenant).await.unwrap();
    assert_eq!(entitlements.plan.code, "professional");

    // Redelivery: acknowledged, nothing done twice.
    let recorded = transitions(&app, tenant).await.len();
    assert_eq!(send(&app, &checkout).await, "duplicate");
    assert_eq!(transitions(&app, tenant).await.len(), recorded);

    // Out of order: a payment success newer than a failure wins whichever arrives first.
    let succeeded = event(
        "evt_paid_2",
        "invoice.payment_succeeded",
        base + 20,
        json!({"id": "in_2", "customer": "cus_paying", "subscription": "sub_paying"}),
    );
    let failed_earlier = event(
        "evt_failed_1",
        "invoice.payment_failed",
        base + 10,
        json!({"id": "in_1", "customer": "cus_paying", "subscription": "sub_paying"}),
    );
    assert_eq!(send(&app, &succeeded).await, "applied");
    assert_eq!(send(&app, &failed_earlier).await, "stale");
    assert_eq!(subscription_status(&app, tenant).await, "active");
    // A newer failure: past_due, served with a warning.
    let failed = event(
        "evt_failed_3",
        "invoice.payment_failed",
        base + 30,
        json!({"id": "in_3", "customer": "cus_paying", "subscription": "sub_paying"}),
    );
    assert_eq!(send(&app, &failed).await, "applied");
    assert_eq!(subscription_status(&app, tenant).await, "past_due");
    wait_warning(&app, "paying", |warning| {
        warning.is_some_and(|w| w.starts_with("past_due"))
    })
    .await;
    // An older "active" subscription update arriving late does not undo it; a newer one does,
    // with its period end.
    let period_end = Utc::now().timestamp() + 30 * 86400;
    let subscription_object = |status: &str| {
        json!({"id": "sub_paying", "object": "subscription", "customer": "cus_paying",
               "status": status, "cancel_at_period_end": false,
               "current_period_end": period_end,
               "metadata": {"tenant_id": tenant, "plan": "professional"}})
    };
    let late = event(
        "evt_sub_25",
        "customer.subscription.updated",
        base + 25,
        subscription_object("active"),
    );
    assert_eq!(send(&app, &late).await, "stale");
    assert_eq!(subscription_status(&app, tenant).await, "past_due");
    let recovered = event(
        "evt_sub_40",
        "customer.subscription.updated",
        base + 40,
        subscription_object("active"),
    );
    assert_eq!(send(&app, &recovered).await, "applied");
    let subscription = app.store.subscription(tenant).await.unwrap();
    assert_eq!(subscription.status.as_str(), "active");
    assert_eq!(
        subscription.current_period_end.map(|at| at.timestamp()),
        Some(period_end)
    );
    wait_warning(&app, "paying", |warning| warning.is_none()).await;

    // Events of another (replaced) subscription do not touch this one.
    let replaced = event(
        "evt_old_sub",
        "customer.subscription.deleted",
        base + 45,
        json!({"id": "sub_replaced", "object": "subscription", "customer": "cus_paying",
               "status": "canceled", "metadata": {"tenant_id": tenant}}),
    );
    assert_eq!(send(&app, &replaced).await, "ignored");
    assert_eq!(subscription_status(&app, tenant).await, "active");

    // Deleted arrives before an older update: cancelled stays cancelled, the tenant is gone.
    let deleted = event(
        "evt_sub_60",
        "customer.subscription.deleted",
        base + 60,
        subscription_object("canceled"),
    );
    let older_update = event(
        "evt_sub_50",
        "customer.subscription.updated",
        base + 50,
        subscription_object("active"),
    );
    assert_eq!(send(&app, &deleted).await, "applied");
    assert_eq!(send(&app, &older_update).await, "stale");
    // A newer event asking for what the machine forbids (cancelled → active) is refused.
    let too_late = event(
        "evt_paid_70",
        "invoice.payment_succeeded",
        base + 70,
        json!({"id": "in_70", "customer": "cus_paying", "subscription": "sub_paying"}),
    );
    assert_eq!(send(&app, &too_late).await, "refused");
    assert_eq!(subscription_status(&app, tenant).await, "cancelled");
    app.wait_for_error("paying", StatusCode::GONE, "tenant_cancelled")
        .await;

    // Events for nobody, and types Silo does not act on, are acknowledged and recorded.
    let stranger = event(
        "evt_stranger",
        "invoice.payment_failed",
        base,
        json!({"id": "in_x", "customer": "cus_nobody"}),
    );
    assert_eq!(send(&app, &stranger).await, "unmatched");
    let other = event(
        "evt_other",
        "customer.created",
        base,
        json!({"id": "cus_x"}),
    );
    assert_eq!(send(&app, &other).await, "ignored");

    // A suspension made by an operator is not lifted by a payment.
    let held = app.active_tenant("held").await;
    app.store
        .set_stripe_customer(held.tenant_id, "cus_held")
        .await
        .unwrap();
    app.store
        .change_subscription(
            held.tenant_id,
            control_plane::subscriptions::Action::Suspend,
            "admin:ops@example.com",
            &control_plane::Settings::default().lifecycle(),
        )
        .await
        .unwrap();
    let paid = event(
        "evt_held_paid",
        "invoice.payment_succeeded",
        base + 80,
        json!({"id": "in_held", "customer": "cus_held"}),
    );
    assert_eq!(send(&app, &paid).await, "refused");
    assert_eq!(subscription_status(&app, held.tenant_id).await, "suspended");

    // The transitions name the events that caused them.
    let recorded = app.store.subscription_transitions(tenant).await.unwrap();
    let by_stripe: Vec<(&str, &str)> = recorded
        .iter()
        .filter(|t| t.actor == "stripe")
        .map(|t| {
            (
                t.to_status.as_str(),
                t.detail["stripe_event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_stripe,
        vec![
            ("active", "evt_checkout"),
            ("past_due", "evt_failed_3"),
            ("active", "evt_sub_40"),
            ("cancelled", "evt_sub_60"),
        ]
    );
}

/// One request the fake Stripe received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_checks_out_through_stripe_and_a_refusal_changes_nothing() {
    let StripeStandIn { base, calls, .. } = StripeStandIn::start().await;
    let app = TestApp::spawn_with(TestOptions {
        stripe: Some((base, "sk_test_silo_secret".to_owned().into())),
        ..TestOptions::default()
    })
    .await;
    let shop = app.active_tenant("upgrading").await;
    let host = app.tenant_host("upgrading");
    let token = crate::session::Session::owner(&app, "upgrading")
        .await
        .token;
    let checkout = |body: Value| {
        app.request(Method::POST, &host, "/api/v1/billing/checkout")
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    // Bad input: 422 naming the fields, and Stripe is not called.
    let bad = checkout(json!({"plan": "platinum", "interval": "week"}))
        .await
        .unwrap();
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(
        body["error"]["fields"]["plan"].is_string()
            && body["error"]["fields"]["interval"].is_string()
    );
    assert!(calls.lock().unwrap().is_empty());

    // A checkout: the customer is made once, then the session, with the tenant in the metadata.
    let started = checkout(json!({"plan": "professional", "interval": "year"}))
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
    let session: Value = started.json().await.unwrap();
    assert!(
        session["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.test/")
    );
    let again = checkout(json!({"plan": "professional"})).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let recorded = calls.lock().unwrap().clone();
    let paths: Vec<&str> = recorded.iter().map(|call| call.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/customers",
            "/v1/checkout/sessions",
            "/v1/checkout/sessions"
        ]
    );
    for call in &recorded {
        assert_eq!(
            call.authorization.as_deref(),
            Some("Bearer sk_test_silo_secret")
        );
        assert!(call.idempotency_key.is_some());
    }
    assert_ne!(recorded[1].idempotency_key, recorded[2].idempotency_key);
    let field = |call: &StripeCall, name: &str| call.field(name);
    assert_eq!(
        field(&recorded[0], "email").as_deref(),
        Some("owner@upgrading.test")
    );
    let first = &recorded[1];
    let tenant_id = shop.tenant_id.to_string();
    assert_eq!(field(first, "customer").as_deref(), Some("cus_local_1"));
    assert_eq!(field(first, "mode").as_deref(), Some("subscription"));
    assert_eq!(field(first, "client_reference_id"), Some(tenant_id.clone()));
    assert_eq!(
        field(first, "subscription_data[metadata][tenant_id]"),
        Some(tenant_id)
    );
    assert_eq!(
        field(first, "metadata[plan]").as_deref(),
        Some("professional")
    );
    assert_eq!(
        field(first, "line_items[0][price_data][unit_amount]").as_deref(),
        Some("99000")
    );
    assert_eq!(
        field(
            &recorded[2],
            "line_items[0][price_data][recurring][interval]"
        )
        .as_deref(),
        Some("month")
    );
    let subscription = app.store.subscription(shop.tenant_id).await.unwrap();
    assert_eq!(
        subscription.stripe_customer_id.as_deref(),
        Some("cus_local_1")
    );
    // Until Stripe says it was paid (the webhook), nothing about the plan changes.
    assert_eq!(subscription.status.as_str(), "trial");
    assert_eq!(
        app.store
            .entitlements(shop.tenant_id)
            .await
            .unwrap()
            .plan
            .code,
        "starter"
    );

    // Stripe declines: 502 with its reason, nothing recorded.
    let declined = checkout(json!({"plan": "enterprise"})).await.unwrap();
    let (status, code) = error_code(declined).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_GATEWAY, "stripe_unavailable")
    );
    assert_eq!(
        app.store
            .entitlements(shop.tenant_id)
            .await
            .unwrap()
            .plan
            .code,
        "starter"
    );

    // The owner sees where billing stands; other roles and tenants cannot start a checkout.
    let billing: Value = app
        .request(Method::GET, &host, "/api/v1/billing")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(billing["status"], "trial");
    assert_eq!(billing["checkout_available"], true);
    assert!(billing.get("stripe_customer_id").is_none());
    app.active_tenant("bystander").await;
    let elsewhere = app
        .request(
            Method::POST,
            &app.tenant_host("bystander"),
            "/api/v1/billing/checkout",
        )
        .bearer_auth(&token)
        .json(&json!({"plan": "professional"}))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);

    // Once a Stripe subscription runs, a second checkout is refused (it would bill twice).
    app.control_plane()
        .await
        .execute(
            "UPDATE subscriptions SET stripe_subscription_id = 'sub_running' WHERE tenant_id = $1",
            &[&shop.tenant_id],
        )
        .await
        .unwrap();
    let calls_before = calls.lock().unwrap().len();
    let second = checkout(json!({"plan": "professional"})).await.unwrap();
    assert_eq!(
        error_code(second).await,
        (StatusCode::CONFLICT, "already_subscribed".to_owned())
    );
    assert_eq!(calls.lock().unwrap().len(), calls_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_cli_suspends_reactivates_and_extends_trials() {
    let app = TestApp::spawn().await;
    let shop = app.active_tenant("clishop").await;
    let run = |args: &'static str| app.silo_tenants(args);
    run("suspend clishop --yes --json").await.unwrap();
    app.wait_for_error("clishop", StatusCode::FORBIDDEN, "tenant_suspended")
        .await;
    // Refused, changing nothing: suspending twice.
    let again = run("suspend clishop --yes").await.unwrap_err();
    assert!(format!("{again:#}").contains("cannot become"), "{again:#}");
    run("reactivate clishop").await.unwrap();
    assert_eq!(wait_served(&app, "clishop").await, None);
    // The trial it was suspended from, not a paid subscription.
    assert_eq!(subscription_status(&app, shop.tenant_id).await, "trial");
    // Only a suspended subscription is reactivated.
    assert!(run("reactivate clishop").await.is_err());
    run("extend-trial clishop --by 7days").await.unwrap();
    run("subscription clishop --json").await.unwrap();
    let audit = app.store.audit_of(shop.tenant_id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|(actor, action, _)| actor.starts_with("cli:")
                && action == "subscription.suspended")
    );
}
