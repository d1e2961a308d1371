//! The tenant console at `/admin/tenants`: the fleet's tenants with search and filters (applied
//! in SQL, paged by slug), a page per tenant (status, subscription, plan and modules, usage,
//! custom domains, provisioning history, subscription transitions, audit trail), and the
//! operator's actions on it — suspend, reactivate, extend the trial, change the plan, switch
//! an add-on module, cancel now or at the period's end (or keep the subscription), offboard.
//!
//! Every action takes two requests: `GET /admin/tenants/{slug}/actions/{action}` shows what
//! would change (before → after) and changes nothing; `POST` to the same path performs it
//! through the store function the JSON API uses, which audits it with before and after. Like
//! the dashboard's forms, the POST relies on the `silo_admin` cookie being SameSite=Strict:
//! another site's form cannot carry it, so it is sent to a login redirect instead.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use control_plane::console::{AuditEntry, ProvisioningEvent, TenantFilter};
use control_plane::domains::CustomDomain;
use control_plane::model::TenantStatus;
use control_plane::plans::{Entitlements, MODULES, Plan};
use control_plane::store::StoreError;
use control_plane::subscriptions::{ALL_STATUSES, Subscription, SubscriptionStatus, Transition};
use control_plane::tenants::{TenantExport, TenantRecord};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use web::{ApiError, ErrorCode};

use crate::AdminState;
use crate::auth::Admin;
use crate::dashboard::{page, to_login};

mod actions;
pub use actions::{ActionForm, confirm_action, perform_action};

/// Rows per page of the tenant list unless `limit` says otherwise.
pub const DEFAULT_PAGE: i64 = 100;
/// Rows of the audit trail a tenant page shows.
const AUDIT_ROWS: i64 = 200;

const TENANT_STATUSES: [&str; 6] = [
    "provisioning",
    "active",
    "failed",
    "suspended",
    "cancelled",
    "deprovisioned",
];

/// The tenant list's query parameters, shared by the page and `GET /api/v1/admin/tenants`.
/// Empty values (as an HTML form sends them) mean "any".
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub subscription: Option<String>,
    pub plan: Option<String>,
    pub host: Option<String>,
    pub version: Option<String>,
    /// Part of the slug or display name.
    pub q: Option<String>,
    pub limit: Option<String>,
    /// The last slug of the previous page.
    pub after: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

impl ListQuery {
    /// The store's filter, or a 422 naming what is wrong.
    pub fn filter(&self) -> Result<TenantFilter, ApiError> {
        let status = given(&self.status)
            .map(|raw| {
                TenantStatus::parse(raw).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidStatus,
                        format!(
                            "`{raw}` is not a tenant status ({}).",
                            TENANT_STATUSES.join(", ")
                        ),
                    )
                })
            })
            .transpose()?;
        let subscription = given(&self.subscription)
            .map(|raw| {
                SubscriptionStatus::parse(raw).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidSubscription,
                        format!(
                            "`{raw}` is not a subscription status ({}).",
                            ALL_STATUSES.map(SubscriptionStatus::as_str).join(", ")
                        ),
                    )
                })
            })
            .transpose()?;
        let schema_version = given(&self.version)
            .map(|raw| {
                raw.parse::<i32>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidVersion,
                        format!("`{raw}` is not a schema version number."),
                    )
                })
            })
            .transpose()?;
        let limit = given(&self.limit)
            .map(|raw| {
                raw.parse::<i64>()
                    .ok()
                    .filter(|limit| (1..=control_plane::console::MAX_PAGE).contains(limit))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidLimit,
                            format!(
                                "`{raw}` is not a page size between 1 and {}.",
                                control_plane::console::MAX_PAGE
                            ),
                        )
                    })
            })
            .transpose()?
            .unwrap_or(DEFAULT_PAGE);
        Ok(TenantFilter {
            status,
            subscription,
            plan: given(&self.plan).map(str::to_owned),
            host: given(&self.host).map(str::to_owned),
            schema_version,
            search: given(&self.q).map(str::to_owned),
            after: given(&self.after).map(str::to_owned),
            limit,
        })
    }

    /// This query's parameters with `after` replaced, URL-encoded (for the next page's link).
    pub fn with_after(&self, after: &str) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("q", &self.q),
            ("status", &self.status),
            ("subscription", &self.subscription),
            ("plan", &self.plan),
            ("host", &self.host),
            ("version", &self.version),
            ("limit", &self.limit),
        ]
        .into_iter()
        .filter_map(|(name, value)| given(value).map(|value| (name, value)))
        .chain([("after", after)])
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "—".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn version_text(version: Option<i32>) -> String {
    version.map_or_else(|| "—".to_owned(), |version| version.to_string())
}

fn sampled(count: Option<i32>) -> String {
    count.map_or_else(|| "not sampled yet".to_owned(), |count| count.to_string())
}

fn limit_text(limit: Option<i32>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |limit| limit.to_string())
}

/// `GET /admin/tenants`: the filtered, paged tenant list.
pub async fn tenants_page(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Query(query): Query<ListQuery>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let result = async {
        let plans = state.store.plans().await?;
        let hosts = state.store.hosts().await?;
        let found = match query.filter() {
            Ok(filter) => Ok(state.store.search_tenants(&filter).await?),
            Err(error) => Err(error),
        };
        Ok::<_, ApiError>((plans, hosts, found))
    }
    .await;
    let (plans, hosts, found) = match result {
        Ok(loaded) => loaded,
        Err(error) => return crate::dashboard::error_page(&admin, &error),
    };
    let selected = |value: &Option<String>, option: &str| given(value) == Some(option);
    let body = html! {
        h1 { "Tenants" }
        form.filters id="filters" method="get" action="/admin/tenants" {
            div { label for="q" { "Search" }
                input id="q" name="q" placeholder="slug or name" value=(given(&query.q).unwrap_or("")); }
            div { label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" { "any" }
                    @for status in TENANT_STATUSES {
                        option value=(status) selected[selected(&query.status, status)] { (status) }
                    }
                } }
            div { label for="subscription" { "Subscription" }
                select id="subscription" name="subscription" {
                    option value="" { "any" }
                    @for status in ALL_STATUSES {
                        option value=(status.as_str()) selected[selected(&query.subscription, status.as_str())] { (status.as_str()) }
                    }
                } }
            div { label for="plan" { "Plan" }
                select id="plan" name="plan" {
                    option value="" { "any" }
                    @for plan in &plans {
                        option value=(plan.code) selected[selected(&query.plan, &plan.code)] { (plan.name) }
                    }
                } }
            div { label for="host" { "Host" }
                select id="host" name="host" {
                    option value="" { "any" }
                    @for host in &hosts {
                        option value=(host.name) selected[selected(&query.host, &host.name)] { (host.name) }
                    }
                } }
            div { label for="version" { "Schema version" }
                input id="version" name="version" type="number" min="0" style="width:6rem" value=(given(&query.version).unwrap_or("")); }
            div { button type="submit" id="apply" { "Filter" } " " a href="/admin/tenants" id="clear" { "Clear" } }
        }
        @match &found {
            Err(error) => { p.error id="error" { (error.message.as_str()) } }
            Ok(found) => {
                p id="shown" { (found.tenants.len()) " tenants shown"
                    @if found.next_after.is_some() { " (more match)" } "." }
                table id="tenants" {
                    tr { th { "slug" } th { "name" } th { "status" } th { "subscription" } th { "plan" }
                         th { "host" } th { "schema" } th { "created" } }
                    @for tenant in &found.tenants {
                        tr data-slug=(tenant.slug) {
                            td { a href=(format!("/admin/tenants/{}", tenant.slug)) { (tenant.slug) } }
                            td { (tenant.name) }
                            td class=(tenant.status.as_str()) { (tenant.status.as_str()) }
                            td { (tenant.subscription.map_or("—", SubscriptionStatus::as_str)) }
                            td { (tenant.plan) }
                            td { (tenant.host.as_deref().unwrap_or("—")) }
                            td { (version_text(tenant.schema_version)) }
                            td { (tenant.created_at.format("%Y-%m-%d %H:%M")) }
                        }
                    }
                }
                @if let Some(after) = &found.next_after {
                    p { a id="more" href=(format!("/admin/tenants?{}", query.with_after(after))) { "More →" } }
                }
            }
        }
    };
    page("Tenants", Some(&admin), body).into_response()
}

/// Everything the control plane knows about one tenant.
pub struct Overview {
    pub tenant: TenantRecord,
    pub host: Option<String>,
    /// `None` for a tenant from before billing.
    pub subscription: Option<Subscription>,
    pub transitions: Vec<Transition>,
    pub entitlements: Entitlements,
    pub domains: Vec<CustomDomain>,
    pub provisioning: Vec<ProvisioningEvent>,
    /// Newest first.
    pub audit: Vec<AuditEntry>,
    pub exports: Vec<TenantExport>,
    /// Requests per day (the last 30 days) and the newest sample of size and counts.
    pub usage: control_plane::usage::TenantUsage,
}

impl Overview {
    pub async fn load(state: &AdminState, slug: &str) -> Result<Self, ApiError> {
        let tenant = state.tenant(slug).await?;
        let store = &state.store;
        let host = match tenant.host_id {
            Some(id) => Some(store.host(id).await?.name),
            None => None,
        };
        let subscription = match store.subscription(tenant.id).await {
            Ok(subscription) => Some(subscription),
            Err(StoreError::NotFound) => None,
            Err(error) => return Err(error.into()),
        };
        Ok(Self {
            host,
            subscription,
            transitions: store.subscription_transitions(tenant.id).await?,
            entitlements: store.entitlements(tenant.id).await?,
            domains: store.domains_of(tenant.id).await?,
            provisioning: store.provisioning_history(tenant.id).await?,
            audit: store.audit_trail(tenant.id, AUDIT_ROWS).await?,
            exports: store.exports_of(tenant.id).await?,
            usage: store.tenant_usage(tenant.id, 30).await?,
            tenant,
        })
    }

    /// The JSON form `GET /api/v1/admin/tenants/{slug}` answers.
    pub fn to_json(&self) -> Value {
        let tenant = &self.tenant;
        let entitlements = &self.entitlements;
        json!({
            "id": tenant.id, "slug": tenant.slug, "name": tenant.display_name,
            "status": tenant.status, "host_id": tenant.host_id, "host": self.host,
            "schema_version": tenant.schema_version,
            "provisioning_step": tenant.provisioning_step,
            "failure_reason": tenant.failure_reason,
            "subscription": self.subscription,
            "plan": entitlements.plan,
            "add_ons": entitlements.add_ons,
            "modules": entitlements.modules,
            // The newest sample (the worker's usage sampler); live counts are on the support
            // endpoint.
            "usage": {
                "users": self.usage.sample.as_ref().and_then(|s| s.users),
                "items": self.usage.sample.as_ref().and_then(|s| s.items),
                "branches": self.usage.sample.as_ref().and_then(|s| s.branches),
                "database_bytes": self.usage.sample.as_ref().and_then(|s| s.database_bytes),
                "sampled_at": self.usage.sample.as_ref().map(|s| s.sampled_at),
                "requests_today": self.usage.requests_today,
                "requests": self.usage.requests,
            },
            "domains": self.domains,
            "provisioning": self.provisioning,
            "transitions": self.transitions,
            "exports": self.exports.iter().map(|export| json!({
                "id": export.id, "reason": export.reason, "file": export.path, "bytes": export.bytes,
            })).collect::<Vec<_>>(),
            "audit": self.audit,
        })
    }
}

fn notice_of(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "suspend" => "Suspended: the tenant is no longer served.",
        "reactivate" => "Reactivated: the tenant is served again.",
        "extend-trial" => "The trial was extended.",
        "plan" => "The plan was changed.",
        "module" => "The module was switched.",
        "cancel-now" => "Cancelled: the tenant is no longer served and will be offboarded.",
        "cancel-at-period-end" => "Cancellation scheduled for the end of the period.",
        "keep-subscription" => "The scheduled cancellation was withdrawn.",
        "offboard" => "Offboarding started.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct TenantPageQuery {
    done: Option<String>,
}

/// `GET /admin/tenants/{slug}`.
pub async fn tenant_page(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
    Query(query): Query<TenantPageQuery>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let loaded = async {
        Ok::<_, ApiError>((
            Overview::load(&state, &slug).await?,
            state.store.plans().await?,
        ))
    }
    .await;
    let (overview, plans) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return crate::dashboard::error_page(&admin, &error),
    };
    let body = tenant_body(&overview, &plans, notice_of(query.done.as_deref()));
    page(&overview.tenant.slug, Some(&admin), body).into_response()
}

fn tenant_body(overview: &Overview, plans: &[Plan], notice: Option<&str>) -> Markup {
    let tenant = &overview.tenant;
    let slug = &tenant.slug;
    let entitlements = &overview.entitlements;
    let plan = &entitlements.plan;
    let sample = overview.usage.sample.as_ref();
    let subscription = overview.subscription.as_ref();
    let action_url = |name: &str| format!("/admin/tenants/{slug}/actions/{name}");
    let now = Utc::now();
    html! {
        p { a href="/admin/tenants" { "← Tenants" } }
        h1 { (tenant.display_name) " (" (slug) ")" }
        @if let Some(notice) = notice { p.notice id="notice" { (notice) } }
        table id="summary" {
            tr { th { "status" } td id="tenant-status" class=(tenant.status.as_str()) { (tenant.status.as_str()) } }
            tr { th { "subscription" } td id="subscription-status" { (subscription.map_or("none", |s| s.status.as_str())) } }
            tr { th { "plan" } td id="plan-code" { (plan.name) " (" (plan.code) ")" } }
            tr { th { "database host" } td { (overview.host.as_deref().unwrap_or("—")) } }
            tr { th { "schema version" } td { (version_text(tenant.schema_version)) } }
            tr { th { "provisioning step" } td { (tenant.provisioning_step.as_deref().unwrap_or("—")) } }
            @if let Some(reason) = &tenant.failure_reason { tr { th { "failure" } td.failed { (reason) } } }
            tr { th { "admin email" } td { (tenant.admin_email) } }
        }

        h2 { "Subscription" }
        @match subscription {
            None => { p { "No subscription (a tenant from before billing)." } }
            Some(s) => {
                table id="subscription" {
                    tr { th { "state" } td { (s.status.as_str()) } }
                    tr { th { "billing interval" } td { (s.billing_interval) } }
                    tr { th { "trial ends" } td id="trial-ends" { (when(s.trial_ends_at)) } }
                    tr { th { "current period ends" } td { (when(s.current_period_end)) } }
                    tr { th { "past due since" } td { (when(s.past_due_since)) } }
                    tr { th { "grace ends" } td { (when(s.grace_ends_at)) } }
                    tr { th { "scheduled cancellation" } td id="cancel-at" { (when(s.cancel_at)) } }
                    tr { th { "cancelled at" } td { (when(s.cancelled_at)) } }
                    tr { th { "Stripe customer" } td { (s.stripe_customer_id.as_deref().unwrap_or("—")) } }
                    tr { th { "Stripe subscription" } td { (s.stripe_subscription_id.as_deref().unwrap_or("—")) } }
                }
            }
        }

        h2 { "Plan and modules" }
        p { (plan.name) ": " (limit_text(plan.max_branches)) " branches, " (limit_text(plan.max_users)) " users, "
            (limit_text(plan.max_items)) " items" }
        table id="modules" {
            tr { th { "module" } th { "in plan" } th { "add-on" } th { "in force" } }
            @for module in MODULES {
                @let add_on = entitlements.add_ons.iter().find(|add_on| add_on.module == module);
                tr data-module=(module) {
                    td { (module) }
                    td { (if plan.modules.iter().any(|m| m == module) { "yes" } else { "" }) }
                    td { @if let Some(add_on) = add_on {
                        "on" @if let Some(expires) = add_on.expires_at {
                            " until " (when(Some(expires))) @if expires <= now { " (expired)" }
                        }
                    } }
                    td.in-force { (if entitlements.has(module) { "yes" } else { "no" }) }
                }
            }
        }

        h2 { "Usage" }
        table id="usage" {
            tr { th { "" } th { "used" } th { "limit" } }
            tr { td { "users" } td.used { (sampled(sample.and_then(|s| s.users))) } td { (limit_text(plan.max_users)) } }
            tr { td { "items" } td.used { (sampled(sample.and_then(|s| s.items))) } td { (limit_text(plan.max_items)) } }
            tr { td { "branches" } td.used { (sampled(sample.and_then(|s| s.branches))) } td { (limit_text(plan.max_branches)) } }
            tr id="database-size" { td { "database size" } td colspan="2" {
                (sample.and_then(|s| s.database_bytes).map_or_else(|| "not sampled yet".to_owned(), |bytes| format!("{:.1} MB", bytes as f64 / 1_048_576.0)))
            } }
            tr id="requests-today" { td { "requests today" } td colspan="2" { (overview.usage.requests_today) } }
        }
        @if !overview.usage.requests.is_empty() {
            table id="requests-per-day" {
                tr { th { "day (UTC)" } th { "requests" } }
                @for daily in &overview.usage.requests {
                    tr { td { (daily.day) } td { (daily.requests) } }
                }
            }
        }
        p { "Counts are the worker's newest sample"
            @if let Some(sample) = sample { " (" (when(Some(sample.sampled_at))) ")" }
            "; the support view below counts them live (read-only, audited)." }

        h2 { "Actions" }
        p {
            form.inline method="get" action=(action_url("suspend")) { button type="submit" id="action-suspend" { "Suspend" } }
            form.inline method="get" action=(action_url("reactivate")) { button type="submit" id="action-reactivate" { "Reactivate" } }
        }
        form method="get" action=(action_url("extend-trial")) {
            "Extend the trial by "
            input id="days" name="days" type="number" min="1" max="365" value="7" style="width:5rem";
            " days " button type="submit" id="action-extend-trial" { "Extend trial" }
        }
        form method="get" action=(action_url("plan")) {
            "Change the plan to "
            select id="new-plan" name="plan" {
                @for other in plans { option value=(other.code) selected[other.code == plan.code] { (other.name) } }
            }
            " " button type="submit" id="action-plan" { "Change plan" }
        }
        form method="get" action=(action_url("module")) {
            "Switch add-on module "
            select id="module" name="module" { @for module in MODULES { option value=(module) { (module) } } }
            " "
            select id="enabled" name="enabled" { option value="on" { "on" } option value="off" { "off" } }
            " until (optional, UTC date) "
            input id="expires" name="expires" type="date";
            " " button type="submit" id="action-module" { "Switch module" }
        }
        p {
            form.inline method="get" action=(action_url("cancel-at-period-end")) { button type="submit" id="action-cancel-at-period-end" { "Cancel at period end" } }
            form.inline method="get" action=(action_url("keep-subscription")) { button type="submit" id="action-keep-subscription" { "Keep subscription" } }
            form.inline method="get" action=(action_url("cancel-now")) { button type="submit" id="action-cancel-now" { "Cancel now" } }
        }
        form method="get" action=(action_url("offboard")) {
            "Offboard (cancel now; keep the database for "
            input id="grace" name="grace" placeholder="30days" style="width:6rem";
            ") " button type="submit" id="action-offboard" { "Offboard" }
        }

        h2 { "Support access" }
        form method="get" action=(format!("/admin/tenants/{slug}/support")) {
            "Read the tenant's users and counts, read-only; recorded in the audit trail. Reason: "
            input id="reason" name="reason" placeholder="ticket or reason" style="width:16rem";
            " " button type="submit" id="support" { "Open support view" }
        }

        h2 { "Custom domains" }
        table id="domains" {
            tr { th { "domain" } th { "verified" } th { "added" } }
            @for domain in &overview.domains {
                tr { td { (domain.domain) } td { (if domain.verified { when(domain.verified_at) } else { "no".to_owned() }) }
                     td { (when(Some(domain.created_at))) } }
            }
        }

        h2 { "Provisioning history" }
        table id="provisioning" {
            tr { th { "at" } th { "step" } th { "attempt" } th { "outcome" } th { "ms" } th { "error" } }
            @for event in &overview.provisioning {
                tr { td { (when(Some(event.recorded_at))) } td { (event.step) } td { (event.attempt) }
                     td class=(event.outcome) { (event.outcome) } td { (event.duration_ms) }
                     td { (event.error.as_deref().unwrap_or("")) } }
            }
        }

        h2 { "Subscription transitions" }
        table id="transitions" {
            tr { th { "at" } th { "from" } th { "to" } th { "reason" } th { "by" } }
            @for transition in overview.transitions.iter().rev() {
                tr { td { (when(Some(transition.at))) } td { (transition.from_status.as_deref().unwrap_or("—")) }
                     td { (transition.to_status) } td { (transition.reason) } td { (transition.actor) } }
            }
        }

        h2 { "Audit trail" }
        table id="audit" {
            tr { th { "at" } th { "by" } th { "action" } th { "detail" } }
            @for entry in &overview.audit {
                tr { td { (when(Some(entry.at))) } td { (entry.actor) } td.audit-action { (entry.action) }
                     td { code { (entry.detail.to_string()) } } }
            }
        }

        @if !overview.exports.is_empty() {
            h2 { "Exports" }
            table id="exports" {
                tr { th { "reason" } th { "file" } th { "bytes" } }
                @for export in &overview.exports {
                    tr { td { (export.reason) } td { (export.path) } td { (export.bytes) } }
                }
            }
        }
    }
}
