//! `/api/openapi.json`: the public, admin and tenant APIs as an OpenAPI 3.1 document, built with
//! utoipa from one table of operations ([`OPERATIONS`]) and the error codes of `web::ErrorCode`
//! (the same table the handlers answer with).
//! Each operation lists the error codes it may answer; the responses (status → codes) are derived
//! from them, with the ones every operation of its kind can give (tenant resolution, sessions,
//! JSON bodies) added. `tests/tests/e2e/openapi.rs` calls every documented operation and checks
//! that it is routed and answers a documented status, so the table cannot drift silently.

use std::collections::BTreeMap;

use axum::Json;
use axum::routing::get;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, Required};
use web::ErrorCode;
use web::ErrorCode as E;

/// Which host serves an operation and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The apex, no session.
    Public,
    /// The apex, a super-admin session (`Authorization: Bearer` or the `silo_admin` cookie).
    Admin,
    /// A tenant host, no token (the tenant is still resolved).
    TenantPublic,
    /// A tenant host with a session token or an API key.
    Tenant,
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub side: Side,
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Takes a JSON body.
    pub body: bool,
    /// The success status.
    pub ok: u16,
    /// Error codes this operation itself may answer (besides those of its side and body).
    pub errors: &'static [ErrorCode],
}

const fn op(
    side: Side,
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    body: bool,
    ok: u16,
    errors: &'static [ErrorCode],
) -> Op {
    Op {
        side,
        method,
        path,
        summary,
        body,
        ok,
        errors,
    }
}

use Side::{Admin, Public, Tenant, TenantPublic};

/// Every JSON operation Silo serves (HTML pages and `/metrics` are described in the README).
#[rustfmt::skip]
pub const OPERATIONS: &[Op] = &[
    // ---- apex, public ----
    op(Public, "GET", "/healthz", "Liveness: the control-plane database answers.", false, 200, &[E::Unavailable]),
    op(Public, "GET", "/livez", "Liveness probe, on every host: the process answers.", false, 200, &[]),
    op(Public, "GET", "/readyz", "Readiness probe, on every host: not draining, control plane answering with every migration applied.", false, 200, &[E::NotReady]),
    op(Public, "POST", "/api/v1/signups", "Sign up: a new workspace is provisioned in the background.", true, 202, &[E::InvalidSubdomain, E::ReservedSubdomain, E::InvalidCompanyName, E::InvalidEmail, E::WeakPassword, E::SubdomainTaken, E::RateLimited, E::NoCapacity, E::Unavailable, E::Busy]),
    op(Public, "GET", "/api/v1/signups/{tenant_id}", "Where a signup's provisioning stands.", false, 200, &[E::SignupNotFound, E::Unavailable]),
    op(Public, "POST", "/api/v1/webhooks/stripe", "Stripe events (signature verified; each event once; order-safe).", false, 200, &[E::InvalidSignature, E::InvalidEvent, E::StripeNotConfigured, E::Unavailable]),
    op(Public, "POST", "/api/v1/api-keys/validate", "Validate a tenant API key for another service.", true, 200, &[E::InvalidApiKey, E::RateLimited, E::Unavailable]),
    op(Public, "GET", "/api/openapi.json", "This document.", false, 200, &[]),
    // ---- apex, super-admin ----
    op(Public, "POST", "/api/v1/admin/sessions", "Log in with password and TOTP code.", true, 201, &[E::InvalidCredentials, E::RateLimited, E::Busy]),
    op(Admin, "DELETE", "/api/v1/admin/sessions/current", "Log out.", false, 204, &[]),
    op(Admin, "GET", "/api/v1/admin/hosts", "Database hosts with their load.", false, 200, &[]),
    op(Admin, "POST", "/api/v1/admin/hosts", "Register a database host (its admin URL is sealed, never echoed).", true, 201, &[E::InvalidUrl, E::InvalidCapacity, E::InvalidHostName, E::Conflict, E::HostUnreachable, E::HostPrivileges]),
    op(Admin, "DELETE", "/api/v1/admin/hosts/{name}", "Remove an empty host, dropping its warm-pool and template databases; `?forget=true` when its server is gone for good removes the record alone and answers 200 with the databases and roles left on it.", false, 204, &[E::NotFound, E::Conflict, E::HostUnreachable]),
    op(Admin, "POST", "/api/v1/admin/hosts/{name}/drain", "Stop placing tenants on a host.", false, 200, &[E::NotFound]),
    op(Admin, "POST", "/api/v1/admin/hosts/{name}/activate", "Place tenants on a host again.", false, 200, &[E::NotFound]),
    op(Admin, "GET", "/api/v1/admin/tenants", "Tenants, searched and filtered (q, status, subscription, plan, host, version, limit, after; next page in the Link header).", false, 200, &[E::InvalidStatus, E::InvalidSubscription, E::InvalidVersion, E::InvalidLimit]),
    op(Admin, "GET", "/api/v1/admin/tenants/{slug}", "One tenant with its exports and audit trail.", false, 200, &[E::NotFound]),
    op(Admin, "POST", "/api/v1/admin/tenants/{slug}/cancel", "Cancel now (offboarding), or at the period end (`at_period_end`).", false, 200, &[E::NotFound, E::InvalidGrace, E::WrongStatus, E::InvalidTransition]),
    op(Admin, "POST", "/api/v1/admin/tenants/{slug}/retry", "Provision a failed tenant again.", false, 202, &[E::NotFound, E::WrongStatus]),
    op(Admin, "GET", "/api/v1/admin/tenants/{slug}/subscription", "The subscription and its recorded transitions.", false, 200, &[E::NotFound]),
    op(Admin, "POST", "/api/v1/admin/tenants/{slug}/suspend", "Suspend (not served until reactivated).", false, 200, &[E::NotFound, E::InvalidTransition]),
    op(Admin, "POST", "/api/v1/admin/tenants/{slug}/reactivate", "A suspended subscription back to the state it was suspended from (a trial stays a trial while its end is ahead, else past_due).", false, 200, &[E::NotFound, E::InvalidTransition]),
    op(Admin, "POST", "/api/v1/admin/tenants/{slug}/extend-trial", "Extend or restart a trial.", true, 200, &[E::NotFound, E::InvalidTransition, E::ValidationFailed]),
    op(Admin, "GET", "/api/v1/admin/tenants/{slug}/usage", "Requests per day and the newest usage sample.", false, 200, &[E::NotFound, E::ValidationFailed]),
    op(Admin, "GET", "/api/v1/admin/tenants/{slug}/support", "Read-only, audited support view of a tenant's data (users without hashes, counts).", false, 200, &[E::NotFound, E::NoDatabase, E::TenantUnavailable]),
    op(Admin, "GET", "/api/v1/admin/plans", "Every plan with prices, limits and modules.", false, 200, &[]),
    op(Admin, "POST", "/api/v1/admin/tenants/{slug}/plan", "Move a tenant to another plan.", true, 200, &[E::NotFound, E::UnknownPlan]),
    op(Admin, "PUT", "/api/v1/admin/tenants/{slug}/modules/{module}", "An add-on module on (optionally until a date) or off.", true, 200, &[E::NotFound, E::UnknownModule]),
    op(Admin, "POST", "/api/v1/admin/tenants/{slug}/rotate-credentials", "A new database password for the tenant's role.", false, 200, &[E::NotFound, E::WrongStatus]),
    op(Admin, "POST", "/api/v1/admin/domains/{domain}/verify", "Verify a custom domain by its TXT record at _silo-challenge.<domain>: the claim whose token is published wins, the others are removed.", false, 200, &[E::NotFound, E::DomainNotVerified, E::DomainClaimExpired, E::DnsUnavailable]),
    // ---- tenant host ----
    op(TenantPublic, "GET", "/api/v1/health", "The tenant's schema version, read from its own database.", false, 200, &[]),
    op(TenantPublic, "POST", "/api/v1/sessions", "Sign in with email and password.", true, 201, &[E::InvalidCredentials, E::RateLimited, E::Busy]),
    op(TenantPublic, "POST", "/api/v1/auth/login", "Sign in (same as /api/v1/sessions).", true, 201, &[E::InvalidCredentials, E::RateLimited, E::Busy]),
    op(Tenant, "DELETE", "/api/v1/sessions/current", "Sign out: this session's token stops working on every router.", false, 204, &[E::ValidationFailed]),
    op(Tenant, "GET", "/api/v1/me", "The signed-in user (or API key).", false, 200, &[]),
    op(Tenant, "GET", "/api/v1/plan", "Plan, add-ons, modules and usage against limits.", false, 200, &[E::InsufficientRole]),
    op(Tenant, "GET", "/api/v1/usage", "Usage against limits, requests per day, database size.", false, 200, &[E::InsufficientRole]),
    op(Tenant, "GET", "/api/v1/billing", "Where the subscription stands.", false, 200, &[E::InsufficientRole]),
    op(Tenant, "POST", "/api/v1/billing/checkout", "A Stripe Checkout session for a plan.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::AlreadySubscribed, E::StripeNotConfigured, E::StripeUnavailable]),
    op(Tenant, "POST", "/api/v1/billing/portal", "A Stripe customer-portal session (payment methods, invoices).", false, 201, &[E::InsufficientRole, E::NoBillingAccount, E::StripeNotConfigured, E::StripeUnavailable]),
    op(Tenant, "GET", "/api/v1/users", "Users.", false, 200, &[E::InsufficientRole]),
    op(Tenant, "POST", "/api/v1/users", "Add a user with a role.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::AlreadyExists, E::PlanLimitReached, E::Busy]),
    op(Tenant, "PATCH", "/api/v1/users/{id}", "Change a user's name, role or activity.", true, 200, &[E::InsufficientRole, E::ValidationFailed, E::NotFound, E::LastOwner, E::PlanLimitReached]),
    op(Tenant, "DELETE", "/api/v1/users/{id}", "Remove (deactivate) a user; their sessions end at once.", false, 204, &[E::InsufficientRole, E::NotFound, E::LastOwner]),
    op(Tenant, "POST", "/api/v1/users/invitations", "Invite a user: a sealed, single-use link valid for 7 days.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::AlreadyExists, E::PlanLimitReached]),
    op(Tenant, "GET", "/api/v1/users/invitations", "Pending invitations (paged).", false, 200, &[E::InsufficientRole, E::ValidationFailed]),
    op(Tenant, "DELETE", "/api/v1/users/invitations/{id}", "Revoke a pending invitation; its link stops working.", false, 204, &[E::InsufficientRole, E::NotFound]),
    op(TenantPublic, "POST", "/api/v1/invitations/accept", "Accept an invitation: the user is created with its role.", true, 201, &[E::InvalidInvitation, E::ValidationFailed, E::AlreadyExists, E::PlanLimitReached, E::RateLimited, E::Busy]),
    op(TenantPublic, "GET", "/api/v1/branding", "White-label settings (public, for the app's sign-in page).", false, 200, &[E::RateLimited]),
    op(Tenant, "PUT", "/api/v1/branding", "Set the white-label settings.", true, 200, &[E::InsufficientRole, E::ValidationFailed, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/branches", "Branches.", false, 200, &[]),
    op(Tenant, "POST", "/api/v1/branches", "Add a branch.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::AlreadyExists, E::PlanLimitReached, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/branches/{id}", "One branch.", false, 200, &[E::NotFound]),
    op(Tenant, "PATCH", "/api/v1/branches/{id}", "Change a branch.", true, 200, &[E::InsufficientRole, E::ValidationFailed, E::NotFound, E::AlreadyExists]),
    op(Tenant, "GET", "/api/v1/suppliers", "Suppliers.", false, 200, &[E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/suppliers", "Add a supplier.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/suppliers/{id}", "One supplier.", false, 200, &[E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "PATCH", "/api/v1/suppliers/{id}", "Change a supplier.", true, 200, &[E::InsufficientRole, E::ValidationFailed, E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/items", "Items (search with `q`).", false, 200, &[E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/items", "Add an item.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::AlreadyExists, E::PlanLimitReached, E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/items/imports", "Import items from a CSV file (the body, `text/csv`, up to 32 MiB): queued as a job, all rows or none; `202` with the import.", false, 202, &[E::InsufficientRole, E::ValidationFailed, E::ImportRunning, E::ModuleNotEnabled, E::Busy]),
    op(Tenant, "GET", "/api/v1/items/imports/{id}", "Where an import stands: state, rows written, problems by line and column.", false, 200, &[E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/items/{id}", "One item.", false, 200, &[E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "PATCH", "/api/v1/items/{id}", "Change an item.", true, 200, &[E::InsufficientRole, E::ValidationFailed, E::NotFound, E::AlreadyExists, E::ModuleNotEnabled]),
    op(Tenant, "DELETE", "/api/v1/items/{id}", "Deactivate an item.", false, 204, &[E::InsufficientRole, E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/stock", "Stock levels.", false, 200, &[E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/purchases", "Receive stock.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/purchases/{id}", "One purchase with its lines.", false, 200, &[E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/sales", "Sales.", false, 200, &[E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/sales", "Record a sale (stock checked under lock).", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::InsufficientStock, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/sales/{id}", "One sale with its lines.", false, 200, &[E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/stock-takes", "Start a stock take.", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/stock-takes/{id}", "One stock take with its counts.", false, 200, &[E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "PUT", "/api/v1/stock-takes/{id}/counts", "Record a count.", true, 200, &[E::InsufficientRole, E::ValidationFailed, E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/stock-takes/{id}/complete", "Set stock to the counts.", false, 200, &[E::InsufficientRole, E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/reports/sales", "Sales per day and best sellers.", false, 200, &[E::ValidationFailed, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/domains", "Custom domains and claims (paged by name).", false, 200, &[E::InsufficientRole, E::ValidationFailed]),
    op(Tenant, "POST", "/api/v1/domains", "Claim a custom domain (answers its verification token and when the unverified claim expires).", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::DomainTaken, E::PlanLimitReached]),
    op(Tenant, "DELETE", "/api/v1/domains/{domain}", "Remove a custom domain.", false, 204, &[E::InsufficientRole, E::NotFound]),
    op(Tenant, "GET", "/api/v1/api-keys", "API keys (never their secrets; paged).", false, 200, &[E::InsufficientRole, E::ModuleNotEnabled, E::ValidationFailed]),
    op(Tenant, "POST", "/api/v1/api-keys", "Create an API key (shown once).", true, 201, &[E::InsufficientRole, E::ValidationFailed, E::ModuleNotEnabled, E::PlanLimitReached]),
    op(Tenant, "DELETE", "/api/v1/api-keys/{id}", "Revoke an API key.", false, 204, &[E::InsufficientRole, E::ModuleNotEnabled]),
    op(Tenant, "POST", "/api/v1/api-keys/{id}/regenerate", "Replace an API key (shown once; the old one stops).", false, 201, &[E::InsufficientRole, E::NotFound, E::ModuleNotEnabled]),
    op(Tenant, "GET", "/api/v1/integrations", "Integration credentials (last 4 characters only; paged by name).", false, 200, &[E::InsufficientRole, E::ValidationFailed]),
    op(Tenant, "PUT", "/api/v1/integrations/{name}", "Set an integration credential (sealed).", true, 200, &[E::InsufficientRole, E::ValidationFailed, E::PlanLimitReached]),
    op(Tenant, "DELETE", "/api/v1/integrations/{name}", "Remove an integration credential.", false, 204, &[E::InsufficientRole, E::NotFound]),
];

/// Codes every operation of a side may answer.
fn side_errors(side: Side) -> &'static [ErrorCode] {
    match side {
        Public => &[E::Internal],
        // The console's session is a cookie: a state-changing request carrying it must come
        // from a page of this site.
        Admin => &[
            E::Unauthenticated,
            E::CrossSiteRequest,
            E::Unavailable,
            E::Internal,
        ],
        TenantPublic | Tenant => &[
            E::TenantNotFound,
            E::RouteNotFound,
            E::TenantProvisioning,
            E::TenantSuspended,
            E::TenantCancelled,
            E::TenantUnavailable,
            E::Capacity,
            E::Unavailable,
            E::Internal,
        ],
    }
}

/// What a tenant operation that needs a token adds.
const TENANT_AUTH_ERRORS: &[ErrorCode] = &[E::Unauthenticated, E::RateLimited];

const BODY_ERRORS: &[ErrorCode] = &[E::MalformedJson, E::UnsupportedMediaType, E::InvalidRequest];

/// What the HTTP edge may answer to any request, before or around its operation: a body too
/// large or too slow, a NUL character in the path, query or body (`validation_failed` naming
/// the field), a request past the request timeout.
const EDGE_ERRORS: &[ErrorCode] = &[
    E::PayloadTooLarge,
    E::RequestTimeout,
    E::ValidationFailed,
    E::TimedOut,
];

/// Every code `op` may answer, grouped by status.
pub fn responses_of(op: &Op) -> BTreeMap<u16, Vec<&'static str>> {
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    let body = if op.body { BODY_ERRORS } else { &[] };
    let auth = if op.side == Tenant {
        TENANT_AUTH_ERRORS
    } else {
        &[]
    };
    for code in op
        .errors
        .iter()
        .chain(side_errors(op.side))
        .chain(auth)
        .chain(body)
        .chain(EDGE_ERRORS)
    {
        let codes = by_status.entry(code.status().as_u16()).or_default();
        if !codes.contains(&code.as_str()) {
            codes.push(code.as_str());
        }
    }
    by_status
}

fn method(name: &str) -> HttpMethod {
    match name {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Delete,
    }
}

fn tag(side: Side, path: &str) -> &'static str {
    match side {
        Public if path.contains("/admin/") => "admin",
        Public if path.contains("webhooks") => "webhooks",
        Public => "public",
        Admin => "admin",
        TenantPublic | Tenant => "tenant",
    }
}

fn error_schema() -> ObjectBuilder {
    let detail = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("code", Ref::from_schema_name("ErrorCode"))
        .required("code")
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .required("message")
        .property(
            "fields",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("validation_failed: field name → what is wrong")),
        );
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("error", detail)
        .required("error")
}

/// The whole document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for op in OPERATIONS {
        let mut operation = OperationBuilder::new()
            .summary(Some(op.summary))
            .tag(tag(op.side, op.path))
            .operation_id(Some(format!(
                "{}_{}",
                op.method.to_lowercase(),
                op.path
                    .trim_start_matches("/api/")
                    .replace(['/', '-', '{', '}', '.'], "_")
            )));
        for segment in op.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
        }
        if op.body {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                            .build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        match op.side {
            Admin => {
                operation = operation.security(SecurityRequirement::new(
                    "admin_session",
                    Vec::<String>::new(),
                ));
            }
            Tenant => {
                operation = operation.security(SecurityRequirement::new(
                    "tenant_token",
                    Vec::<String>::new(),
                ));
            }
            Public | TenantPublic => {}
        }
        if matches!(op.side, Tenant | TenantPublic) {
            operation = operation.servers(Some([ServerBuilder::new()
                .url("https://{tenant}.{base}")
                .description(Some("a tenant host (or a verified custom domain)"))
                .build()]));
        }
        operation = operation.response(
            op.ok.to_string(),
            ResponseBuilder::new().description("Success").build(),
        );
        for (status, codes) in responses_of(op) {
            operation = operation.response(
                status.to_string(),
                ResponseBuilder::new()
                    .description(format!("Error: {}", codes.join(", ")))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Error")))
                            .build(),
                    )
                    .build(),
            );
        }
        paths.add_path_operation(op.path, vec![method(op.method)], operation.build());
    }
    let codes = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
        .description(Some(
            ErrorCode::ALL
                .iter()
                .map(|code| format!("`{code}` ({}): {}", code.status().as_u16(), code.when()))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    let components = ComponentsBuilder::new()
        .schema("Error", error_schema())
        .schema("ErrorCode", codes)
        .security_scheme(
            "admin_session",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .security_scheme(
            "tenant_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Silo")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Database-per-tenant control plane: signup and provisioning (apex), the \
                     super-admin API (apex, `/api/v1/admin`), and each tenant's API on its own \
                     host. Every error is `{\"error\": {\"code\", \"message\"}}`.",
                )),
        )
        .servers(Some([ServerBuilder::new()
            .url("/")
            .description(Some("the apex (the base domain)"))
            .build()]))
        .tags(Some(
            ["public", "admin", "webhooks", "tenant"]
                .map(|name| TagBuilder::new().name(name).build()),
        ))
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The apex route serving the document.
pub fn router() -> axum::Router {
    let json = document().to_json().unwrap_or_else(|_| "{}".to_owned());
    let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    axum::Router::new().route(
        "/api/openapi.json",
        get(move || {
            let value = value.clone();
            async move { Json(value) }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for op in OPERATIONS {
            assert!(
                seen.insert((op.method, op.path)),
                "{} {} twice",
                op.method,
                op.path
            );
        }
    }
}
