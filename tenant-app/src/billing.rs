//! The tenant owner's side of billing: where the subscription stands, and a Stripe checkout
//! to subscribe to (or change) a plan. The webhook (on the apex) then moves the subscription.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use web::{ApiError, ErrorCode};

use crate::auth::{Authed, Role};
use crate::common::{Body, Fields};

/// `GET /api/v1/billing` (owner): the subscription (state, dates; never Stripe secrets).
pub async fn show(
    State(app): State<crate::AppState>,
    authed: Authed,
) -> Result<Json<Value>, ApiError> {
    authed.require(Role::Owner)?;
    let subscription = app
        .router
        .store()
        .subscription(authed.connection.tenant.id)
        .await?;
    Ok(Json(json!({
        "status": subscription.status,
        "plan": authed.connection.tenant.entitlements.plan.code,
        "billing_interval": subscription.billing_interval,
        "trial_ends_at": subscription.trial_ends_at,
        "current_period_end": subscription.current_period_end,
        "grace_ends_at": subscription.grace_ends_at,
        "cancel_at": subscription.cancel_at,
        "checkout_available": app.stripe.is_some(),
    })))
}

#[derive(Debug, Deserialize)]
pub struct CheckoutRequest {
    plan: String,
    #[serde(default = "monthly")]
    interval: String,
}

fn monthly() -> String {
    "month".to_owned()
}

/// `POST /api/v1/billing/checkout {plan, interval: month|year}` (owner) → `201 {id, url}`: a
/// Stripe Checkout session for the plan. The tenant's Stripe customer is made on first use and
/// remembered; nothing is stored when Stripe refuses.
pub async fn checkout(
    State(app): State<crate::AppState>,
    authed: Authed,
    Body(request): Body<CheckoutRequest>,
) -> Result<(StatusCode, Json<control_plane::stripe::CheckoutSession>), ApiError> {
    authed.require(Role::Owner)?;
    let router = &app.router;
    let Some(stripe) = app.stripe.as_ref() else {
        return Err(ApiError::new(
            ErrorCode::StripeNotConfigured,
            "Online payment is not set up for this service; contact support to change plans.",
        ));
    };
    let store = router.store();
    let plans = store.plans().await?;
    let plan = plans.iter().find(|plan| plan.code == request.plan);
    let mut fields = Fields::default();
    fields.check(
        plan.is_some(),
        "plan",
        "must be one of the plans (GET /api/v1/plan shows yours)",
    );
    fields.check(
        matches!(request.interval.as_str(), "month" | "year"),
        "interval",
        "must be `month` or `year`",
    );
    fields.finish()?;
    let Some(plan) = plan else {
        return Err(ApiError::internal());
    };
    let tenant_id = authed.connection.tenant.id;
    let tenant = store.tenant(tenant_id).await?;
    let subscription = store.subscription(tenant_id).await?;
    // A second checkout would start a second subscription, billed beside the first.
    if subscription.stripe_subscription_id.is_some()
        && subscription.status != control_plane::subscriptions::SubscriptionStatus::Cancelled
    {
        return Err(ApiError::new(
            ErrorCode::AlreadySubscribed,
            "This workspace already has a paid subscription; to change plans, contact support.",
        ));
    }
    let customer = match subscription.stripe_customer_id {
        Some(customer) => customer,
        None => {
            let customer = stripe
                .create_customer(
                    tenant_id,
                    &tenant.slug,
                    &tenant.admin_email,
                    &tenant.display_name,
                )
                .await
                .map_err(stripe_error)?;
            store.set_stripe_customer(tenant_id, &customer).await?;
            customer
        }
    };
    let base = format!("{}/settings", tenant_url(router, &tenant.slug));
    let session = stripe
        .create_checkout_session(
            tenant_id,
            &customer,
            plan,
            &request.interval,
            &format!("{base}?checkout=success"),
            &format!("{base}?checkout=cancelled"),
            uuid::Uuid::new_v4(),
        )
        .await
        .map_err(stripe_error)?;
    Ok((StatusCode::CREATED, Json(session)))
}

fn tenant_url(router: &tenant_router::RouterState, slug: &str) -> String {
    let base = router.base_domain();
    let scheme = if base == "localhost" || base.ends_with(".localhost") {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{slug}.{base}")
}

/// Stripe's own message stays in the log: it may name the key's mode and last characters.
fn stripe_error(error: control_plane::stripe::StripeError) -> ApiError {
    tracing::warn!(%error, "Stripe call failed");
    ApiError::new(
        ErrorCode::StripeUnavailable,
        "The payment provider did not accept the request. Nothing was charged; try again in a moment or contact support.",
    )
}
