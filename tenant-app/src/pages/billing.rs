//! The plan and billing in a browser (owner): the plan and its modules, usage against every
//! limit, the trial's end and days left, where billing stands; "Upgrade" through Stripe
//! Checkout and "Manage payment method and invoices" through Stripe's customer portal — each a
//! form whose handler calls the API's own and answers `303` to Stripe's page. A refusal shows
//! this page again with the reason and the refusal's status (Stripe's: `502`), recording nothing.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse as _, Redirect, Response};
use chrono::{DateTime, Utc};
use control_plane::plans::Plan;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::form::Problems;
use super::{Signed, money};
use crate::AppState;
use crate::billing::{self, CheckoutRequest};
use crate::common::Body;
use crate::users;

const TITLE: &str = "Plan and billing";
const CURRENT: &str = "/billing";

/// What the page shows, read before any action (the action consumes the session).
struct Standing {
    plan: Value,
    billing: Value,
    plans: Vec<Plan>,
}

async fn read(state: &AppState, signed: &Signed) -> Result<Standing, Response> {
    let frame = signed.frame();
    let refused = |error| frame.refusal(TITLE, CURRENT, error);
    let plan = users::plan_of(&state.router, &signed.0)
        .await
        .map_err(refused)?;
    let billing = billing::billing_state(state, &signed.0)
        .await
        .map_err(|error| frame.refusal(TITLE, CURRENT, error))?;
    let plans = state
        .router
        .store()
        .plans()
        .await
        .map_err(|error| frame.refusal(TITLE, CURRENT, error.into()))?;
    Ok(Standing {
        plan,
        billing,
        plans,
    })
}

fn limit_text(limit: &Value) -> String {
    limit
        .as_i64()
        .map_or_else(|| "no limit".to_owned(), |limit| limit.to_string())
}

fn date(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|text| text.parse().ok())
}

/// "Trial: 12 days left (ends 3 May 2027)", "Active", … from the billing state.
fn standing_text(billing: &Value) -> String {
    let on = |at: DateTime<Utc>| at.format("%-d %B %Y").to_string();
    match billing["status"].as_str().unwrap_or_default() {
        "trial" => match date(&billing["trial_ends_at"]) {
            Some(ends) => {
                let days = (ends - Utc::now()).num_days().max(0);
                format!(
                    "Trial: {days} day{} left (ends {})",
                    if days == 1 { "" } else { "s" },
                    on(ends)
                )
            }
            None => "Trial".to_owned(),
        },
        "active" => match date(&billing["cancel_at"]) {
            Some(at) => format!("Active; cancels on {}", on(at)),
            None => "Active".to_owned(),
        },
        "past_due" => match date(&billing["grace_ends_at"]) {
            Some(at) => format!(
                "Payment failed: update your payment method before {}",
                on(at)
            ),
            None => "Payment failed: update your payment method".to_owned(),
        },
        "suspended" => "Suspended".to_owned(),
        other => other.to_owned(),
    }
}

const USAGE_ROWS: [(&str, &str); 7] = [
    ("branches", "Branches"),
    ("users", "Active users"),
    ("items", "Items"),
    ("custom_domains", "Custom domains"),
    ("api_keys", "API keys"),
    ("integrations", "Integration credentials"),
    ("pending_invitations", "Pending invitations"),
];

fn content(standing: &Standing, problems: &Problems, returned: Option<&str>) -> Markup {
    let plan = &standing.plan["plan"];
    let billing = &standing.billing;
    let current = plan["code"].as_str().unwrap_or_default();
    let others: Vec<&Plan> = standing
        .plans
        .iter()
        .filter(|other| other.code != current)
        .collect();
    html! {
        @if returned == Some("success") {
            p class="notice info" role="status" { "Thank you: the plan changes as soon as the payment is confirmed." }
        }
        @if let Some(general) = &problems.general {
            p class="notice error" role="alert" id="billing-problem" { (general) }
        }
        div class="cards" {
            section class="card" id="plan" {
                h2 { "Plan" }
                p class="figure" id="plan-name" { (plan["name"].as_str().unwrap_or_default()) }
                p id="billing-state" { (standing_text(billing)) }
                p class="muted" { "Modules: "
                    (standing.plan["modules"].as_array().map(|modules| modules.iter()
                        .filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
            }
            section class="card" id="payment" {
                h2 { "Payment" }
                @if billing["billing_account"].as_bool() == Some(true) {
                    form method="post" action="/billing/portal" {
                        button class="primary" type="submit" id="manage-billing" { "Manage payment method and invoices" }
                    }
                } @else {
                    p class="muted" id="no-billing-account" {
                        "No payment method yet: your first upgrade sets one up, and from then on you can manage it and see invoices here."
                    }
                }
            }
        }
        section class="card" style="margin-top:1rem" {
            h2 { "Usage" }
            table class="stack" id="usage" {
                thead { tr { th { "What" } th class="number" { "Used" } th class="number" { "Limit" } } }
                tbody {
                    @for (key, label) in USAGE_ROWS {
                        @let usage = &standing.plan["usage"][key];
                        tr data-usage=(key) {
                            td data-label="What" { (label) }
                            td class="number" data-label="Used" { (usage["used"].as_i64().unwrap_or(0)) }
                            td class="number" data-label="Limit" { (limit_text(&usage["limit"])) }
                        }
                    }
                }
            }
        }
        @if billing["checkout_available"].as_bool() == Some(true) && !others.is_empty() {
            section class="card" style="margin-top:1rem" id="upgrade" {
                h2 { "Change plan" }
                form class="stacked" method="post" action="/billing/checkout" {
                    label for="plan-choice" { "Plan" }
                    select id="plan-choice" name="plan" {
                        @for other in &others {
                            option value=(other.code) { (other.name) " — " (money(other.monthly_price_cents)) " a month or "
                                (money(other.yearly_price_cents)) " a year" }
                        }
                    }
                    label for="interval" { "Billed" }
                    select id="interval" name="interval" {
                        option value="month" { "Monthly" }
                        option value="year" { "Yearly" }
                    }
                    button class="primary" type="submit" id="checkout" { "Upgrade" }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Returned {
    checkout: Option<String>,
}

/// `GET /billing?checkout=success|cancelled` (Stripe sends the owner back here).
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Query(returned): Query<Returned>,
) -> Response {
    match read(&state, &signed).await {
        Ok(standing) => signed.frame().render(
            TITLE,
            CURRENT,
            content(
                &standing,
                &Problems::default(),
                returned.checkout.as_deref(),
            ),
        ),
        Err(refused) => refused,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    plan: String,
    #[serde(default)]
    interval: String,
}

/// `POST /billing/checkout` (`plan`, `interval`): `303` to Stripe Checkout.
pub async fn checkout(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<CheckoutForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let standing = match read(&state, &signed).await {
        Ok(standing) => standing,
        Err(refused) => return refused,
    };
    let request = CheckoutRequest {
        plan: form.plan,
        interval: Some(form.interval)
            .filter(|interval| !interval.is_empty())
            .unwrap_or_else(|| "month".to_owned()),
    };
    match billing::checkout(State(state.clone()), signed.0, Body(request)).await {
        Ok((_, axum::Json(session))) => Redirect::to(&session.url).into_response(),
        Err(error) => frame.form_refused((TITLE, CURRENT), error, |problems| {
            content(&standing, problems, None)
        }),
    }
}

/// `POST /billing/portal`: `303` to Stripe's customer portal.
pub async fn portal(State(state): State<AppState>, signed: Signed) -> Response {
    let frame = signed.frame();
    let standing = match read(&state, &signed).await {
        Ok(standing) => standing,
        Err(refused) => return refused,
    };
    match billing::portal(State(state.clone()), signed.0).await {
        Ok((_, axum::Json(session))) => Redirect::to(&session.url).into_response(),
        Err(error) => frame.form_refused((TITLE, CURRENT), error, |problems| {
            content(&standing, problems, None)
        }),
    }
}
