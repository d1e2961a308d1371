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
    billing_state(&app, &authed).await.map(Json)
}

/// Where the subscription stands, as `GET /api/v1/billing` answers it (owner).
pub async fn billing_state(app: &crate::AppState, authed: &Authed) -> Result<Value, ApiError> {
    authed.require(Role::Owner)?;
    let subscription = app
        .router
        .store()
        .subscription(authed.connection.tenant.id)
        .await?;
    Ok(json!({
        "status": subscription.status,
        "plan": authed.connection.tenant.entitlements.plan.code,
        "billing_interval": subscription.billing_interval,
        "trial_ends_at": subscription.trial_ends_at,
        "current_period_end": subscription.current_period_end,
        "grace_ends_at": subscription.grace_ends_at,
        "cancel_at": subscription.cancel_at,
        "checkout_available": app.stripe.is_some(),
        "billing_account": subscription.stripe_customer_id.is_some(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct CheckoutRequest {
    pub plan: String,
    #[serde(default = "monthly")]
    pub interval: String,
}

fn configured(app: &crate::AppState) -> Result<&control_plane::stripe::StripeClient, ApiError> {
    app.stripe.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::StripeNotConfigured,
            "Online payment is not set up for this service; contact support to change plans.",
        )
    })
}

/// `POST /api/v1/billing/portal` (owner) → `201 {url}`: a Stripe customer-portal session, where
/// the owner manages payment methods and sees invoices. Needs the Stripe customer a first
/// checkout makes (`409 no_billing_account` before); nothing is stored, whatever Stripe says.
pub async fn portal(
    State(app): State<crate::AppState>,
    authed: Authed,
) -> Result<(StatusCode, Json<control_plane::stripe::PortalSession>), ApiError> {
    authed.require(Role::Owner)?;
    let stripe = configured(&app)?;
    let store = app.router.store();
    let tenant = &authed.connection.tenant;
    let subscription = store.subscription(tenant.id).await?;
    let Some(customer) = subscription.stripe_customer_id else {
        return Err(ApiError::new(
            ErrorCode::NoBillingAccount,
            "There is no billing account yet: it is made with the first upgrade through checkout.",
        ));
    };
    let return_url = format!("{}/billing", tenant_url(&app.router, &tenant.slug));
    let session = stripe
        .create_portal_session(&customer, &return_url, uuid::Uuid::new_v4())
        .await
        .map_err(stripe_error)?;
    Ok((StatusCode::CREATED, Json(session)))
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
    let stripe = configured(&app)?;
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
    let base = format!("{}/billing", tenant_url(router, &tenant.slug));
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
