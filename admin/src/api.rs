//! The JSON admin API under `/api/v1/admin`: database hosts and tenants. Every handler takes an
//! [`Admin`], so none runs without a session; every change is written to the audit log with the
//! admin's name and the state before and after.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use control_plane::host_privileges::{HostPrivilegesError, close_shared_databases};
use control_plane::hosts::DatabaseHost;
use control_plane::model::TenantStatus;
use control_plane::store::StoreError;
use control_plane::subscriptions::{self, Action, TrialExtension};
use control_plane::tenants::TenantRecord;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use web::{ApiError, ErrorCode};

use crate::AdminState;
use crate::auth::Admin;

fn host_json(host: &DatabaseHost) -> Value {
    json!({"id": host.id, "name": host.name, "status": host.status,
           "capacity": host.capacity, "tenants": host.tenant_count})
}

fn tenant_json(tenant: &TenantRecord) -> Value {
    json!({"id": tenant.id, "slug": tenant.slug, "name": tenant.display_name,
           "status": tenant.status, "host_id": tenant.host_id,
           "schema_version": tenant.schema_version, "provisioning_step": tenant.provisioning_step,
           "failure_reason": tenant.failure_reason})
}

fn body<T>(body: Result<Json<T>, JsonRejection>, shape: &str) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(|rejection| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("Send JSON {shape}: {}", rejection.body_text()),
        )
    })
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("There is no {what} `{name}`."))
}

pub async fn list_hosts(
    _admin: Admin,
    State(state): State<AdminState>,
) -> Result<Json<Value>, ApiError> {
    let hosts = state.store.hosts().await?;
    Ok(Json(Value::Array(hosts.iter().map(host_json).collect())))
}

#[derive(Debug, Deserialize)]
pub struct NewHost {
    name: String,
    admin_url: SecretString,
    capacity: u32,
}

pub async fn add_host(
    admin: Admin,
    State(state): State<AdminState>,
    request: Result<Json<NewHost>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request, "{\"name\", \"admin_url\", \"capacity\"}")?;
    let capacity = i32::try_from(request.capacity)
        .ok()
        .filter(|capacity| *capacity > 0)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidCapacity,
                "The capacity must be a positive number of tenants.",
            )
        })?;
    // Tenant roles are kept out of the host's shared databases before it takes any tenant.
    let control_plane = state.store.control_plane_identity().await?;
    close_shared_databases(&request.admin_url, &control_plane)
        .await
        .map_err(|error| match error {
            HostPrivilegesError::Refused { .. } => {
                ApiError::new(ErrorCode::HostPrivileges, error.to_string())
            }
            HostPrivilegesError::Connect(error) if error.is_configuration() => ApiError::new(
                ErrorCode::InvalidUrl,
                format!("The admin URL's TLS settings are not usable: {error}."),
            ),
            other => {
                tracing::warn!(host = %request.name, error = %other, "a new host was not reachable");
                ApiError::new(
                    ErrorCode::HostUnreachable,
                    "The host could not be reached with its admin URL; check it and try again.",
                )
            }
        })?;
    let id = state
        .store
        .add_host(
            &state.keyring,
            &request.name,
            &request.admin_url,
            capacity,
            &admin.actor(),
        )
        .await
        .map_err(|error| match error {
            StoreError::InvalidUrl => ApiError::new(
                ErrorCode::InvalidUrl,
                "The admin URL is not a PostgreSQL URL like postgres://user:password@host:5432/postgres.",
            ),
            StoreError::Connect(error) if error.is_configuration() => ApiError::new(
                ErrorCode::InvalidUrl,
                format!("The admin URL's TLS settings are not usable: {error}."),
            ),
            StoreError::Database(_) => ApiError::new(
                ErrorCode::InvalidHostName,
                "The host name must be 1–63 lowercase letters, digits, `-` or `_`.",
            ),
            other => other.into(),
        })?;
    let host = state.store.host(id).await?;
    Ok((StatusCode::CREATED, Json(host_json(&host))).into_response())
}

async fn set_host_status(
    admin: &Admin,
    state: &AdminState,
    name: &str,
    status: &str,
) -> Result<Json<Value>, ApiError> {
    let before = state
        .store
        .host_by_name(name)
        .await?
        .ok_or_else(|| not_found("host", name))?;
    state
        .store
        .set_host_status(name, status, &admin.actor())
        .await?;
    let host = state.store.host(before.id).await?;
    Ok(Json(host_json(&host)))
}

pub async fn drain_host(
    admin: Admin,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_host_status(&admin, &state, &name, "draining").await
}

pub async fn activate_host(
    admin: Admin,
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_host_status(&admin, &state, &name, "active").await
}

pub async fn remove_host(
    admin: Admin,
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(removal): Query<Removal>,
) -> Result<Response, ApiError> {
    let host = state
        .store
        .host_by_name(&name)
        .await?
        .ok_or_else(|| not_found("host", &name))?;
    if removal.forget {
        let left_behind = provisioner::forget_host(&state.store, &host, &admin.actor())
            .await
            .map_err(|error| match error {
                provisioner::ProvisionError::Store(store) => ApiError::from(store),
                other => {
                    tracing::error!(host = %name, error = %other, "forgetting a host failed");
                    ApiError::internal()
                }
            })?;
        return Ok(Json(json!({ "left_behind": left_behind })).into_response());
    }
    provisioner::remove_host(&state.store, &state.keyring, &host, &admin.actor())
        .await
        .map_err(|error| match error {
            provisioner::ProvisionError::Store(store) => ApiError::from(store),
            other => {
                tracing::warn!(host = %name, error = %other, "removing a host failed");
                ApiError::new(
                    ErrorCode::HostUnreachable,
                    "The host's server could not be cleaned up; check that it is reachable and \
                     try again, or, if it is gone for good, remove the record alone with \
                     `?forget=true`.",
                )
            }
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?forget=true` on a host's removal: the server is gone for good.
#[derive(Debug, Default, Deserialize)]
pub struct Removal {
    #[serde(default)]
    forget: bool,
}

/// `GET /api/v1/admin/tenants?status=&subscription=&plan=&host=&version=&q=&limit=&after=`:
/// one page of tenants (filtered in SQL, ordered by slug, 100 unless `limit` says otherwise);
/// when more match, a `Link: <…&after=slug>; rel="next"` header points at the next page.
pub async fn list_tenants(
    _admin: Admin,
    State(state): State<AdminState>,
    Query(query): Query<crate::console::ListQuery>,
) -> Result<Response, ApiError> {
    let found = state.store.search_tenants(&query.filter()?).await?;
    let body = Json(json!(found.tenants));
    Ok(match found.next_after {
        Some(after) => {
            let link = format!(
                "</api/v1/admin/tenants?{}>; rel=\"next\"",
                query.with_after(&after)
            );
            ([(axum::http::header::LINK, link)], body).into_response()
        }
        None => body.into_response(),
    })
}

/// `GET /api/v1/admin/tenants/{slug}`: what the tenant page shows — status, subscription,
/// plan and modules, domains, provisioning history, transitions, exports, audit (newest first).
pub async fn show_tenant(
    _admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        crate::console::Overview::load(&state, &slug)
            .await?
            .to_json(),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct CancelRequest {
    /// How long to keep the database, e.g. `30days`; default: the `offboarding.grace` setting.
    grace: Option<String>,
    /// Keep access until the end of the paid period (or trial), then cancel; `false` undoes a
    /// scheduled cancellation. Absent: cancel now.
    at_period_end: Option<bool>,
}

pub async fn cancel_tenant(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
    request: Option<Json<CancelRequest>>,
) -> Result<Json<Value>, ApiError> {
    let request = request.map(|Json(request)| request).unwrap_or_default();
    let tenant = state.tenant(&slug).await?;
    if let Some(at_period_end) = request.at_period_end {
        let action = if at_period_end {
            Action::CancelAtPeriodEnd
        } else {
            Action::KeepSubscription
        };
        let subscription = state
            .store
            .change_subscription(tenant.id, action, &admin.actor(), &state.lifecycle)
            .await?;
        return Ok(Json(
            json!({"tenant": tenant_json(&tenant), "subscription": subscription}),
        ));
    }
    let grace = match request.grace.as_deref() {
        None => state.lifecycle.offboarding_grace,
        Some(text) => subscriptions::parse_grace(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidGrace,
                format!("`{text}` is not a duration of at most 5 years like 30days, 12h or 0s."),
            )
        })?,
    };
    let cancelled = state
        .store
        .cancel_tenant(tenant.id, grace, &admin.actor())
        .await?;
    Ok(Json(tenant_json(&cancelled)))
}

/// `GET /api/v1/admin/tenants/{slug}/subscription`: the state and every recorded transition.
pub async fn show_subscription(
    _admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = state.tenant(&slug).await?;
    let subscription = state.store.subscription(tenant.id).await?;
    let transitions = state.store.subscription_transitions(tenant.id).await?;
    Ok(Json(
        json!({"subscription": subscription, "transitions": transitions}),
    ))
}

async fn act_on_subscription(
    admin: &Admin,
    state: &AdminState,
    slug: &str,
    action: Action,
) -> Result<Json<Value>, ApiError> {
    let tenant = state.tenant(slug).await?;
    let subscription = state
        .store
        .change_subscription(tenant.id, action, &admin.actor(), &state.lifecycle)
        .await?;
    tenant_and_subscription(state, tenant.id, &subscription).await
}

/// The answer to a subscription action: the tenant as it is now and its subscription.
async fn tenant_and_subscription(
    state: &AdminState,
    tenant_id: uuid::Uuid,
    subscription: &control_plane::subscriptions::Subscription,
) -> Result<Json<Value>, ApiError> {
    let tenant = state.store.tenant(tenant_id).await?;
    Ok(Json(
        json!({"tenant": tenant_json(&tenant), "subscription": subscription}),
    ))
}

/// `POST /api/v1/admin/tenants/{slug}/suspend`: not served (403 `tenant_suspended`) until reactivated.
pub async fn suspend_tenant(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act_on_subscription(&admin, &state, &slug, Action::Suspend).await
}

/// `POST /api/v1/admin/tenants/{slug}/reactivate`: a suspended subscription → the state it was
/// suspended from (`Subscription::after`).
pub async fn reactivate_tenant(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act_on_subscription(&admin, &state, &slug, Action::Reactivate).await
}

#[derive(Debug, Deserialize)]
pub struct ExtendTrialRequest {
    /// Extend by this long, e.g. `7days` (from the current end, or from now if it lapsed).
    by: Option<String>,
    /// Or until this moment (RFC 3339).
    until: Option<chrono::DateTime<chrono::Utc>>,
}

/// `POST /api/v1/admin/tenants/{slug}/extend-trial {"by": "7days"} | {"until": "…"}`.
pub async fn extend_trial(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
    request: Result<Json<ExtendTrialRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let request = body(
        request,
        r#"{"by": "7days"} or {"until": "2030-01-01T00:00:00Z"}"#,
    )?;
    let invalid = |field: &str, message: String| {
        ApiError::validation([(field.to_owned(), message)].into_iter().collect())
    };
    let tenant = state.tenant(&slug).await?;
    let now = chrono::Utc::now();
    let extension = match (request.by.as_deref(), request.until) {
        (Some(text), None) => {
            let by = subscriptions::parse_span(text).ok_or_else(|| {
                invalid(
                    "by",
                    format!("`{text}` is not a duration of at most 5 years like 7days or 36h."),
                )
            })?;
            TrialExtension::By(by)
        }
        (None, Some(until)) if subscriptions::within_reach(until, now) => {
            TrialExtension::Until(until)
        }
        (None, Some(_)) => {
            return Err(invalid(
                "until",
                "`until` must be in the future and at most 5 years ahead.".to_owned(),
            ));
        }
        _ => {
            return Err(invalid(
                "by",
                "Send exactly one of `by` and `until`.".to_owned(),
            ));
        }
    };
    let subscription = state
        .store
        .extend_trial(tenant.id, extension, &admin.actor(), &state.lifecycle)
        .await?;
    tenant_and_subscription(&state, tenant.id, &subscription).await
}

/// `GET /api/v1/admin/tenants/{slug}/usage?days=30`: requests per day (as flushed by the
/// routers) and the newest sample of database size, users, items and branches.
pub async fn tenant_usage(
    _admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<control_plane::usage::TenantUsage>, ApiError> {
    let days = query.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::validation(
            [("days".to_owned(), "must be 1 to 366".to_owned())]
                .into_iter()
                .collect(),
        ));
    }
    let tenant = state.tenant(&slug).await?;
    Ok(Json(state.store.tenant_usage(tenant.id, days).await?))
}

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    days: Option<i32>,
}

pub async fn retry_tenant(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&slug).await?;
    if tenant.status != TenantStatus::Failed {
        return Err(StoreError::WrongStatus(tenant.status.as_str()).into());
    }
    state
        .store
        .retry_provisioning(tenant.id, &admin.actor())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"slug": slug, "status": "provisioning"})),
    )
        .into_response())
}

/// `POST /api/v1/admin/domains/{domain}/verify`: looks up the TXT record
/// `_silo-challenge.<domain>`; the tenant whose live claim's token is published there gets the
/// domain (routed from now on) and every other claim on it is removed. Without a matching
/// record: 422 `domain_not_verified`, nothing changed, the domain not routed.
pub async fn verify_domain(
    admin: Admin,
    State(state): State<AdminState>,
    Path(domain): Path<String>,
) -> Result<Json<control_plane::domains::CustomDomain>, ApiError> {
    let domain = control_plane::domains::normalise_domain(&domain)
        .ok_or_else(|| not_found("domain", &domain))?;
    let resolver = state.domain_resolver.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::DnsUnavailable,
            "No DNS resolver is set up here; set [domains] resolver (SILO_DNS_RESOLVER).",
        )
    })?;
    let record = format!("{}.{domain}", control_plane::domains::CHALLENGE_LABEL);
    let published = resolver.txt(&record).await?;
    match state
        .store
        .verify_domain(&domain, &published, &admin.actor())
        .await
    {
        Ok(verified) => Ok(Json(verified)),
        Err(StoreError::NotFound) => Err(not_found("domain", &domain)),
        Err(other) => Err(other.into()),
    }
}

/// `POST /api/v1/admin/tenants/{slug}/rotate-credentials`: a new password for the tenant's
/// database role (audited); routers switch to it at once.
pub async fn rotate_credentials(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = state.tenant(&slug).await?;
    match provisioner::credentials::rotate_credentials(
        &state.store,
        &state.keyring,
        tenant.id,
        &admin.actor(),
    )
    .await
    {
        Ok(()) => Ok(Json(json!({"slug": slug, "rotated": true}))),
        Err(provisioner::ProvisionError::Store(error)) => Err(error.into()),
        Err(error) => {
            tracing::error!(tenant = %slug, %error, "credential rotation failed");
            Err(ApiError::internal())
        }
    }
}

/// `GET /api/v1/admin/plans`: every plan with prices, limits and modules.
pub async fn list_plans(
    _admin: Admin,
    State(state): State<AdminState>,
) -> Result<Json<Vec<control_plane::plans::Plan>>, ApiError> {
    Ok(Json(state.store.plans().await?))
}

#[derive(Debug, serde::Deserialize)]
pub struct PlanChange {
    plan: String,
}

/// `POST /api/v1/admin/tenants/{slug}/plan` `{plan}`: move a tenant to another plan (audited
/// with before and after; routers apply it at once).
pub async fn change_plan(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
    body: Result<Json<PlanChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<control_plane::plans::Entitlements>, ApiError> {
    let Json(change) = body.map_err(web::json_rejection)?;
    let tenant = state.tenant(&slug).await?;
    state
        .store
        .set_plan(tenant.id, &change.plan, &admin.actor())
        .await?;
    Ok(Json(state.store.entitlements(tenant.id).await?))
}

#[derive(Debug, serde::Deserialize)]
pub struct ModuleChange {
    enabled: bool,
    /// For a trial: when the add-on ends.
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `PUT /api/v1/admin/tenants/{slug}/modules/{module}` `{enabled, expires_at?}`: switch an
/// add-on module on (optionally until a time) or off, audited.
pub async fn set_module(
    admin: Admin,
    State(state): State<AdminState>,
    Path((slug, module)): Path<(String, String)>,
    body: Result<Json<ModuleChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<control_plane::plans::Entitlements>, ApiError> {
    let Json(change) = body.map_err(web::json_rejection)?;
    // A past expiry is allowed (the add-on is then simply not in force); a far one is a mistake.
    if let Some(at) = change.expires_at
        && at - chrono::Utc::now() > subscriptions::max_ahead()
    {
        return Err(ApiError::validation(
            [(
                "expires_at".to_owned(),
                "must be at most 5 years ahead".to_owned(),
            )]
            .into_iter()
            .collect(),
        ));
    }
    let tenant = state.tenant(&slug).await?;
    state
        .store
        .set_add_on(
            tenant.id,
            &module,
            change.enabled,
            change.expires_at,
            &admin.actor(),
        )
        .await?;
    Ok(Json(state.store.entitlements(tenant.id).await?))
}
