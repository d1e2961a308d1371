//! The console's actions on one tenant: each shown first as before → after (`GET`, changes
//! nothing), then performed (`POST`) through the same store function the JSON API uses, which
//! audits it.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use control_plane::plans::{MODULES, Plan};
use control_plane::store::StoreError;
use control_plane::subscriptions::{Action, Subscription, SubscriptionStatus, TrialExtension};
use control_plane::tenants::TenantRecord;
use maud::html;
use serde::Deserialize;
use web::{ApiError, ErrorCode};

use crate::AdminState;
use crate::auth::Admin;
use crate::dashboard::{page, to_login};

use super::{Overview, given, limit_text, when};

/// An action's form fields (the confirmation page carries them to the POST as hidden inputs).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionForm {
    days: Option<String>,
    plan: Option<String>,
    module: Option<String>,
    enabled: Option<String>,
    /// `YYYY-MM-DD` (UTC): the add-on ends at the start of that day.
    expires: Option<String>,
    /// How long to keep the database after offboarding, e.g. `30days`.
    grace: Option<String>,
}

/// What the operator asked for, checked.
#[derive(Debug, Clone)]
enum ConsoleAction {
    Suspend,
    Reactivate,
    ExtendTrial {
        days: u32,
    },
    ChangePlan {
        plan: String,
    },
    SetModule {
        module: String,
        enabled: bool,
        expires_at: Option<DateTime<Utc>>,
    },
    CancelNow,
    CancelAtPeriodEnd,
    KeepSubscription,
    Offboard {
        grace: Duration,
    },
}

fn field_error(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation([(field.to_owned(), message.into())].into_iter().collect())
}

impl ConsoleAction {
    fn parse(
        name: &str,
        form: &ActionForm,
        plans: &[Plan],
        lifecycle: &control_plane::subscriptions::Lifecycle,
    ) -> Result<Self, ApiError> {
        Ok(match name {
            "suspend" => Self::Suspend,
            "reactivate" => Self::Reactivate,
            "extend-trial" => {
                let raw = given(&form.days).unwrap_or("");
                let days = raw
                    .parse::<u32>()
                    .ok()
                    .filter(|days| (1..=365).contains(days))
                    .ok_or_else(|| {
                        field_error(
                            "days",
                            format!("`{raw}` is not a number of days from 1 to 365."),
                        )
                    })?;
                Self::ExtendTrial { days }
            }
            "plan" => {
                let raw = given(&form.plan).unwrap_or("");
                if !plans.iter().any(|plan| plan.code == raw) {
                    return Err(StoreError::UnknownPlan.into());
                }
                Self::ChangePlan {
                    plan: raw.to_owned(),
                }
            }
            "module" => {
                let module = given(&form.module).unwrap_or("");
                if !MODULES.contains(&module) {
                    return Err(StoreError::UnknownModule.into());
                }
                let enabled = match given(&form.enabled) {
                    Some("on" | "true") => true,
                    Some("off" | "false") => false,
                    _ => return Err(field_error("enabled", "Choose on or off.")),
                };
                let expires_at = match given(&form.expires) {
                    None => None,
                    Some(_) if !enabled => {
                        return Err(field_error(
                            "expires",
                            "An expiry only applies when switching a module on.",
                        ));
                    }
                    Some(raw) => {
                        let at = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                            .ok()
                            .and_then(|date| date.and_hms_opt(0, 0, 0))
                            .map(|at| at.and_utc())
                            .ok_or_else(|| {
                                field_error(
                                    "expires",
                                    format!("`{raw}` is not a date like 2030-01-31."),
                                )
                            })?;
                        if !control_plane::subscriptions::within_reach(at, Utc::now()) {
                            return Err(field_error(
                                "expires",
                                "The expiry must be in the future and at most 5 years ahead.",
                            ));
                        }
                        Some(at)
                    }
                };
                Self::SetModule {
                    module: module.to_owned(),
                    enabled,
                    expires_at,
                }
            }
            "cancel-now" => Self::CancelNow,
            "cancel-at-period-end" => Self::CancelAtPeriodEnd,
            "keep-subscription" => Self::KeepSubscription,
            "offboard" => {
                let grace = match given(&form.grace) {
                    None => lifecycle.offboarding_grace,
                    Some(raw) => control_plane::subscriptions::parse_grace(raw)
                        .ok_or_else(|| {
                            field_error(
                                "grace",
                                format!(
                                    "`{raw}` is not a duration of at most 5 years like 30days, 12h or 0s."
                                ),
                            )
                        })?,
                };
                Self::Offboard { grace }
            }
            _ => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("There is no tenant action `{name}`."),
                ));
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Reactivate => "reactivate",
            Self::ExtendTrial { .. } => "extend-trial",
            Self::ChangePlan { .. } => "plan",
            Self::SetModule { .. } => "module",
            Self::CancelNow => "cancel-now",
            Self::CancelAtPeriodEnd => "cancel-at-period-end",
            Self::KeepSubscription => "keep-subscription",
            Self::Offboard { .. } => "offboard",
        }
    }

    /// The form fields that carry this action to the POST.
    fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::ExtendTrial { days } => vec![("days", days.to_string())],
            Self::ChangePlan { plan } => vec![("plan", plan.clone())],
            Self::SetModule {
                module,
                enabled,
                expires_at,
            } => {
                let mut fields = vec![
                    ("module", module.clone()),
                    ("enabled", if *enabled { "on" } else { "off" }.to_owned()),
                ];
                if let Some(at) = expires_at {
                    fields.push(("expires", at.format("%Y-%m-%d").to_string()));
                }
                fields
            }
            Self::Offboard { grace } => {
                vec![("grace", humantime::format_duration(*grace).to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// Where an extended trial would end: days from the current end, or from now if it lapsed.
    fn trial_end(subscription: Option<&Subscription>, days: u32) -> DateTime<Utc> {
        let now = Utc::now();
        let by = chrono::Duration::days(i64::from(days));
        subscription.map_or(now + by, |subscription| {
            subscription.trial_extended_by(by, now)
        })
    }

    /// The subscription action this is, if it is one.
    fn subscription_action(&self) -> Option<Action> {
        match self {
            Self::Suspend => Some(Action::Suspend),
            Self::Reactivate => Some(Action::Reactivate),
            Self::CancelNow | Self::Offboard { .. } => Some(Action::CancelNow),
            Self::CancelAtPeriodEnd => Some(Action::CancelAtPeriodEnd),
            Self::KeepSubscription => Some(Action::KeepSubscription),
            Self::ExtendTrial { .. } | Self::ChangePlan { .. } | Self::SetModule { .. } => None,
        }
    }

    /// Why the subscription's machine would refuse this action now, if it would: the
    /// confirmation then says so instead of promising a move that would be refused.
    fn refusal(&self, overview: &Overview) -> Option<ApiError> {
        let subscription = overview.subscription.as_ref()?;
        let refused = match (self, self.subscription_action()) {
            (Self::ExtendTrial { .. }, _) if !subscription.may_extend_trial() => {
                StoreError::InvalidTransition {
                    from: subscription.status.as_str(),
                    to: SubscriptionStatus::Trial.as_str(),
                }
            }
            // Offboarding cancels whatever the subscription says (the store does it alike).
            (Self::Offboard { .. }, _) => return None,
            (_, Some(action)) => subscription.after(action, Utc::now()).err()?,
            _ => return None,
        };
        Some(refused.into())
    }

    /// The subscription's state after this action, as the machine decides it.
    fn status_after(&self, subscription: Option<&Subscription>) -> String {
        let after = match (self.subscription_action(), subscription) {
            (Some(action), Some(subscription)) => subscription.after(action, Utc::now()).ok(),
            _ => None,
        };
        after.map_or_else(|| "—".to_owned(), |status| status.as_str().to_owned())
    }

    /// A sentence saying what will happen, and the (what, before, after) rows.
    fn describe(&self, overview: &Overview, plans: &[Plan]) -> (String, Vec<[String; 3]>) {
        let tenant_status = overview.tenant.status.as_str().to_owned();
        let subscription = overview.subscription.as_ref();
        let sub_status = subscription
            .map_or("none", |s| s.status.as_str())
            .to_owned();
        let row = |what: &str, before: String, after: String| [what.to_owned(), before, after];
        match self {
            Self::Suspend => (
                "suspend the tenant: it answers 403 tenant_suspended until reactivated; its data is kept".to_owned(),
                vec![
                    row("subscription", sub_status, "suspended".to_owned()),
                    row("tenant", tenant_status, "suspended".to_owned()),
                ],
            ),
            Self::Reactivate => (
                "reactivate the tenant: it is served again, and its subscription returns to the state it was suspended from".to_owned(),
                vec![
                    row("subscription", sub_status, self.status_after(subscription)),
                    row("tenant", tenant_status, "active".to_owned()),
                ],
            ),
            Self::ExtendTrial { days } => (
                format!("extend the trial by {days} days"),
                vec![
                    row("subscription", sub_status, "trial".to_owned()),
                    row(
                        "trial ends",
                        when(subscription.and_then(|s| s.trial_ends_at)),
                        when(Some(Self::trial_end(subscription, *days))),
                    ),
                ],
            ),
            Self::ChangePlan { plan } => {
                let current = &overview.entitlements.plan;
                let next = plans.iter().find(|candidate| &candidate.code == plan);
                let mut rows = vec![row("plan", current.code.clone(), plan.clone())];
                if let Some(next) = next {
                    rows.push(row("max users", limit_text(current.max_users), limit_text(next.max_users)));
                    rows.push(row("max items", limit_text(current.max_items), limit_text(next.max_items)));
                    rows.push(row("max branches", limit_text(current.max_branches), limit_text(next.max_branches)));
                    rows.push(row("plan modules", current.modules.join(", "), next.modules.join(", ")));
                }
                (format!("move the tenant to the {plan} plan; limits and modules change at once"), rows)
            }
            Self::SetModule {
                module,
                enabled,
                expires_at,
            } => {
                let before = overview
                    .entitlements
                    .add_ons
                    .iter()
                    .find(|add_on| &add_on.module == module)
                    .map_or_else(
                        || "off".to_owned(),
                        |add_on| match add_on.expires_at {
                            Some(at) => format!("on until {}", when(Some(at))),
                            None => "on".to_owned(),
                        },
                    );
                let after = match (enabled, expires_at) {
                    (false, _) => "off".to_owned(),
                    (true, Some(at)) => format!("on until {}", when(Some(*at))),
                    (true, None) => "on".to_owned(),
                };
                let mut sentence = format!(
                    "switch the add-on module {module} {}",
                    if *enabled { "on" } else { "off" }
                );
                if overview.entitlements.plan.modules.contains(module) {
                    sentence.push_str(" (the tenant's plan includes it anyway)");
                }
                (sentence, vec![row(&format!("add-on {module}"), before, after)])
            }
            Self::CancelNow => (
                "cancel the subscription now: the tenant stops being served, is exported and its database dropped after the offboarding grace period".to_owned(),
                vec![
                    row("subscription", sub_status, "cancelled".to_owned()),
                    row("tenant", tenant_status, "cancelled".to_owned()),
                ],
            ),
            Self::CancelAtPeriodEnd => {
                let at = subscription.and_then(|s| match s.status {
                    SubscriptionStatus::Trial => s.trial_ends_at,
                    _ => s.current_period_end,
                });
                (
                    "cancel at the end of the paid period (or trial); the tenant is served until then".to_owned(),
                    vec![row(
                        "scheduled cancellation",
                        when(subscription.and_then(|s| s.cancel_at)),
                        at.map_or_else(|| "now".to_owned(), |at| when(Some(at))),
                    )],
                )
            }
            Self::KeepSubscription => (
                "withdraw the scheduled cancellation".to_owned(),
                vec![row(
                    "scheduled cancellation",
                    when(subscription.and_then(|s| s.cancel_at)),
                    "none".to_owned(),
                )],
            ),
            Self::Offboard { grace } => (
                format!(
                    "offboard the tenant: cancel now, export it, and drop its database after {}",
                    humantime::format_duration(*grace)
                ),
                vec![
                    row("subscription", sub_status, "cancelled".to_owned()),
                    row("tenant", tenant_status, "cancelled".to_owned()),
                ],
            ),
        }
    }

    /// Performs the action through the same store functions as the JSON API (each audits it).
    async fn perform(
        &self,
        state: &AdminState,
        admin: &Admin,
        tenant: &TenantRecord,
    ) -> Result<(), ApiError> {
        let store = &state.store;
        let actor = admin.actor();
        let subscription_action = match self {
            Self::Offboard { .. } => None,
            _ => self.subscription_action(),
        };
        if let Some(action) = subscription_action {
            store
                .change_subscription(tenant.id, action, &actor, &state.lifecycle)
                .await?;
            return Ok(());
        }
        match self {
            Self::Suspend
            | Self::Reactivate
            | Self::CancelNow
            | Self::CancelAtPeriodEnd
            | Self::KeepSubscription => {}
            Self::ExtendTrial { days } => {
                let by = chrono::Duration::days(i64::from(*days));
                store
                    .extend_trial(tenant.id, TrialExtension::By(by), &actor, &state.lifecycle)
                    .await?;
            }
            Self::ChangePlan { plan } => store.set_plan(tenant.id, plan, &actor).await?,
            Self::SetModule {
                module,
                enabled,
                expires_at,
            } => {
                store
                    .set_add_on(tenant.id, module, *enabled, *expires_at, &actor)
                    .await?;
            }
            Self::Offboard { grace } => {
                store.cancel_tenant(tenant.id, *grace, &actor).await?;
            }
        }
        Ok(())
    }
}

/// An error on a tenant's page, with the way back to it.
fn action_error(admin: &Admin, slug: &str, error: &ApiError) -> Response {
    let body = html! {
        h1 { "Not done" }
        p.error id="error" { (error.message.as_str()) }
        @if let Some(fields) = &error.fields {
            ul { @for (field, message) in fields { li { (field) ": " (message) } } }
        }
        p { a id="back" href=(format!("/admin/tenants/{slug}")) { "Back to " (slug) } }
    };
    (error.status(), page("Not done", Some(admin), body)).into_response()
}

/// `GET /admin/tenants/{slug}/actions/{action}`: what the action would change; changes nothing.
pub async fn confirm_action(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Path((slug, name)): Path<(String, String)>,
    Query(form): Query<ActionForm>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let prepared = async {
        let overview = Overview::load(&state, &slug).await?;
        let plans = state.store.plans().await?;
        let action = ConsoleAction::parse(&name, &form, &plans, &state.lifecycle)?;
        Ok::<_, ApiError>((overview, plans, action))
    }
    .await;
    let (overview, plans, action) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return action_error(&admin, &slug, &error),
    };
    if let Some(refusal) = action.refusal(&overview) {
        return action_error(&admin, &slug, &refusal);
    }
    let (sentence, rows) = action.describe(&overview, &plans);
    let body = html! {
        h1 { "Confirm: " (action.name()) " " (slug) }
        p id="about" { "You are about to " (sentence) " for tenant " strong { (slug) } "." }
        table id="before-after" {
            tr { th { "" } th { "before" } th { "after" } }
            @for [what, before, after] in &rows {
                tr { td { (what) } td.before { (before) } td.after { (after) } }
            }
        }
        form method="post" action=(format!("/admin/tenants/{slug}/actions/{}", action.name())) {
            @for (field, value) in action.fields() {
                input type="hidden" name=(field) value=(value);
            }
            button type="submit" id="confirm" { "Yes, " (action.name()) }
            " " a id="cancel" href=(format!("/admin/tenants/{slug}")) { "No, go back" }
        }
        p { "The change is recorded in the audit trail under your name." }
    };
    page("Confirm", Some(&admin), body).into_response()
}

/// `POST /admin/tenants/{slug}/actions/{action}`: performs the confirmed action, then back to
/// the tenant's page; a refused action (e.g. `invalid_transition`) is shown as a message.
pub async fn perform_action(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Path((slug, name)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let result = async {
        let tenant = state.tenant(&slug).await?;
        let plans = state.store.plans().await?;
        let action = ConsoleAction::parse(&name, &form, &plans, &state.lifecycle)?;
        action.perform(&state, &admin, &tenant).await?;
        Ok::<_, ApiError>(action.name())
    }
    .await;
    match result {
        Ok(done) => Redirect::to(&format!("/admin/tenants/{slug}?done={done}")).into_response(),
        Err(error) => action_error(&admin, &slug, &error),
    }
}
