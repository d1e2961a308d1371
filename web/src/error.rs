//! `ApiError`: the one type that turns a failure into an HTTP answer. Every error response is
//! `{"error": {"code": "snake_case", "message": "…"}}` with a code from [`ErrorCode`]; nothing
//! internal (SQL, host names of tenant databases, connection strings) reaches the client.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Declares [`ErrorCode`] from one table: variant = (code, status, when it is answered).
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = ($code:literal, $status:ident, $when:literal),)*) => {
        /// Every machine-readable error code Silo answers, with its HTTP status. The OpenAPI
        /// document lists exactly these (a boundary test checks it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in status order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable snake_case name clients match on.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status this code is always answered with.
            pub const fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// When it is answered, for the API documentation.
            pub const fn when(self) -> &'static str {
                match self { $(ErrorCode::$variant => $when,)* }
            }
        }
    };
}

error_codes! {
    /// A Stripe webhook body that is not an event.
    InvalidEvent = ("invalid_event", BAD_REQUEST, "a Stripe webhook body that is not an event"),
    /// The invitation is altered, expired or for another workspace.
    InvalidInvitation = ("invalid_invitation", BAD_REQUEST, "the invitation is altered, expired or for another workspace"),
    /// A Stripe webhook whose signature is missing, wrong, stale or for another body.
    InvalidSignature = ("invalid_signature", BAD_REQUEST, "a Stripe webhook whose signature is missing, wrong, stale or for another body"),
    /// A one-time sign-in link that is expired, used, altered or for another workspace.
    InvalidSignInLink = ("invalid_sign_in_link", BAD_REQUEST, "a one-time sign-in link that is expired, used, altered or for another workspace"),
    /// A password reset link that is expired, used, altered or for another workspace.
    InvalidResetLink = ("invalid_reset_link", BAD_REQUEST, "a password reset link that is expired, used, altered or for another workspace"),
    /// The body is not JSON.
    MalformedJson = ("malformed_json", BAD_REQUEST, "the body is not JSON"),
    /// The key is not valid (unknown, revoked, or its tenant may not use it).
    InvalidApiKey = ("invalid_api_key", UNAUTHORIZED, "the key is not valid (unknown, revoked, or its tenant may not use it)"),
    /// A failed sign-in.
    InvalidCredentials = ("invalid_credentials", UNAUTHORIZED, "a failed sign-in"),
    /// No valid session token or API key.
    Unauthenticated = ("unauthenticated", UNAUTHORIZED, "no valid session token or API key"),
    /// A state-changing request carrying a cookie that did not come from a page of this site.
    CrossSiteRequest = ("cross_site_request", FORBIDDEN, "a state-changing request carrying a cookie that did not come from a page of this site"),
    /// The caller's role does not allow this.
    InsufficientRole = ("insufficient_role", FORBIDDEN, "the caller's role does not allow this"),
    /// The plan and add-ons do not include the module.
    ModuleNotEnabled = ("module_not_enabled", FORBIDDEN, "the plan and add-ons do not include the module"),
    /// One more would pass the plan's limit.
    PlanLimitReached = ("plan_limit_reached", FORBIDDEN, "one more would pass the plan's limit"),
    /// The tenant is suspended.
    TenantSuspended = ("tenant_suspended", FORBIDDEN, "the tenant is suspended"),
    /// No such record.
    NotFound = ("not_found", NOT_FOUND, "no such record"),
    /// No endpoint at this path.
    RouteNotFound = ("route_not_found", NOT_FOUND, "no endpoint at this path"),
    /// Unknown status URL.
    SignupNotFound = ("signup_not_found", NOT_FOUND, "unknown status URL"),
    /// The Host names no tenant.
    TenantNotFound = ("tenant_not_found", NOT_FOUND, "the Host names no tenant"),
    /// The request's body did not arrive within the body-read timeout.
    RequestTimeout = ("request_timeout", REQUEST_TIMEOUT, "the request's body did not arrive within the body-read timeout"),
    /// A record with the same unique value exists.
    AlreadyExists = ("already_exists", CONFLICT, "a record with the same unique value exists"),
    /// The workspace already has a paid subscription.
    AlreadySubscribed = ("already_subscribed", CONFLICT, "the workspace already has a paid subscription"),
    /// A host name in use, or a host still holding tenants.
    Conflict = ("conflict", CONFLICT, "a host name in use, or a host still holding tenants"),
    /// The custom domain belongs to a workspace.
    DomainTaken = ("domain_taken", CONFLICT, "the custom domain is verified by a workspace, or this workspace already claims it"),
    /// Every claim on the domain expired unverified.
    DomainClaimExpired = ("domain_claim_expired", CONFLICT, "every claim on the domain expired before it was verified; add the domain again for a new token"),
    /// The subscription's state does not allow this.
    InvalidTransition = ("invalid_transition", CONFLICT, "the subscription's state does not allow this"),
    /// An import is already queued or running for the workspace.
    ImportRunning = ("import_running", CONFLICT, "an import is already queued or running for the workspace"),
    /// The change would leave no active owner.
    LastOwner = ("last_owner", CONFLICT, "the change would leave no active owner"),
    /// The workspace has no billing account with the payment provider yet.
    NoBillingAccount = ("no_billing_account", CONFLICT, "the workspace has no billing account with the payment provider yet"),
    /// The tenant has no database to read.
    NoDatabase = ("no_database", CONFLICT, "the tenant has no database to read"),
    /// The subdomain is taken.
    SubdomainTaken = ("subdomain_taken", CONFLICT, "the subdomain is taken"),
    /// The tenant's state does not allow this.
    WrongStatus = ("wrong_status", CONFLICT, "the tenant's (or rollout's) state does not allow this"),
    /// The tenant was cancelled.
    TenantCancelled = ("tenant_cancelled", GONE, "the tenant was cancelled"),
    /// The body is larger than the server accepts.
    PayloadTooLarge = ("payload_too_large", PAYLOAD_TOO_LARGE, "the body is larger than the server accepts"),
    /// The body is not sent as application/json.
    UnsupportedMediaType = ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "the body is not sent as application/json"),
    /// A sale asks for more than the branch holds.
    InsufficientStock = ("insufficient_stock", UNPROCESSABLE_ENTITY, "a sale asks for more than the branch holds"),
    /// Capacity must be at least 1.
    InvalidCapacity = ("invalid_capacity", UNPROCESSABLE_ENTITY, "capacity must be at least 1"),
    /// Empty or over 200 characters.
    InvalidCompanyName = ("invalid_company_name", UNPROCESSABLE_ENTITY, "empty or over 200 characters"),
    /// Not an email address.
    InvalidEmail = ("invalid_email", UNPROCESSABLE_ENTITY, "not an email address"),
    /// Not a duration.
    InvalidGrace = ("invalid_grace", UNPROCESSABLE_ENTITY, "not a duration"),
    /// Not a valid host name.
    InvalidHostName = ("invalid_host_name", UNPROCESSABLE_ENTITY, "not a valid host name"),
    /// Not a page size in range.
    InvalidLimit = ("invalid_limit", UNPROCESSABLE_ENTITY, "not a page size in range"),
    /// A field is missing or of the wrong type.
    InvalidRequest = ("invalid_request", UNPROCESSABLE_ENTITY, "a field is missing or of the wrong type"),
    /// The rollout's stages or failure limit are not valid.
    InvalidRollout = ("invalid_rollout", UNPROCESSABLE_ENTITY, "the rollout's stages or failure limit are not valid, or its lint risks are not accepted"),
    /// A rollback (or `--on-failure revert`) would undo a migration that has no revert script.
    RevertMissing = ("revert_missing", UNPROCESSABLE_ENTITY, "a migration the rollout would undo has no revert script"),
    /// Not a tenant status.
    InvalidStatus = ("invalid_status", UNPROCESSABLE_ENTITY, "not a tenant status"),
    /// Not a DNS label of 3–63 characters.
    InvalidSubdomain = ("invalid_subdomain", UNPROCESSABLE_ENTITY, "not a DNS label of 3–63 characters"),
    /// Not a subscription status.
    InvalidSubscription = ("invalid_subscription", UNPROCESSABLE_ENTITY, "not a subscription status"),
    /// The domain's challenge TXT record holds no live claim's token.
    DomainNotVerified = ("domain_not_verified", UNPROCESSABLE_ENTITY, "no TXT record at _silo-challenge.<domain> holds a live claim's token; the domain stays unverified and unrouted"),
    /// Not a PostgreSQL URL.
    InvalidUrl = ("invalid_url", UNPROCESSABLE_ENTITY, "not a PostgreSQL URL"),
    /// Not a schema version.
    InvalidVersion = ("invalid_version", UNPROCESSABLE_ENTITY, "not a schema version"),
    /// A reserved name.
    ReservedSubdomain = ("reserved_subdomain", UNPROCESSABLE_ENTITY, "a reserved name"),
    /// No such module.
    UnknownModule = ("unknown_module", UNPROCESSABLE_ENTITY, "no such module"),
    /// No such plan.
    UnknownPlan = ("unknown_plan", UNPROCESSABLE_ENTITY, "no such plan"),
    /// Fields are not valid; `error.fields` names each.
    ValidationFailed = ("validation_failed", UNPROCESSABLE_ENTITY, "fields are not valid; `error.fields` names each"),
    /// Too short or too easy to guess.
    WeakPassword = ("weak_password", UNPROCESSABLE_ENTITY, "too short or too easy to guess"),
    /// Too many requests; see Retry-After.
    RateLimited = ("rate_limited", TOO_MANY_REQUESTS, "too many requests; see Retry-After"),
    /// An unexpected failure (logged).
    Internal = ("internal", INTERNAL_SERVER_ERROR, "an unexpected failure (logged)"),
    /// The database host could not be reached with its admin URL.
    HostPrivileges = ("host_privileges", CONFLICT, "the host's admin role cannot keep tenant roles out of its shared databases (the message lists the statements to run)"),
    HostUnreachable = ("host_unreachable", BAD_GATEWAY, "the database host could not be reached with its admin URL"),
    /// The DNS resolver could not be asked (or none is set up).
    DnsUnavailable = ("dns_unavailable", BAD_GATEWAY, "the DNS resolver could not be asked, or none is set up"),
    /// Stripe refused or could not be reached.
    StripeUnavailable = ("stripe_unavailable", BAD_GATEWAY, "Stripe refused or could not be reached"),
    /// Password checks or file uploads are at capacity; see Retry-After.
    Busy = ("busy", SERVICE_UNAVAILABLE, "password checks or file uploads are at capacity; see Retry-After"),
    /// The host is at the router's connection budget.
    Capacity = ("capacity", SERVICE_UNAVAILABLE, "the host is at the router's connection budget"),
    /// No database host has room.
    NoCapacity = ("no_capacity", SERVICE_UNAVAILABLE, "no database host has room"),
    /// Stripe is not configured here.
    StripeNotConfigured = ("stripe_not_configured", SERVICE_UNAVAILABLE, "Stripe is not configured here"),
    /// The tenant is still being set up; see Retry-After.
    TenantProvisioning = ("tenant_provisioning", SERVICE_UNAVAILABLE, "the tenant is still being set up; see Retry-After"),
    /// The request ran past the server's request timeout.
    TimedOut = ("timed_out", SERVICE_UNAVAILABLE, "the request ran past the server's request timeout"),
    /// The tenant's database cannot be reached.
    TenantUnavailable = ("tenant_unavailable", SERVICE_UNAVAILABLE, "the tenant's database cannot be reached"),
    /// The control-plane database cannot be reached.
    Unavailable = ("unavailable", SERVICE_UNAVAILABLE, "the control-plane database cannot be reached"),
    /// The process should not get traffic: draining, or its control plane is not ready.
    NotReady = ("not_ready", SERVICE_UNAVAILABLE, "the process is draining or its control plane is not ready"),
}

impl ErrorCode {
    /// The code with this name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|code| code.as_str() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An error answer: a code, a sentence saying what to do, and optional details.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_seconds: Option<u32>,
    /// For validation errors: field name → what is wrong with it.
    pub fields: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_seconds: None,
            fields: None,
        }
    }

    /// The status this error is answered with (its code's).
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// 422 `validation_failed`, naming each field that is wrong.
    pub fn validation(fields: BTreeMap<String, String>) -> Self {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut error = Self::new(
            ErrorCode::ValidationFailed,
            format!("Some fields are not valid: {}.", names.join(", ")),
        );
        error.fields = Some(fields);
        error
    }

    pub fn tenant_not_found() -> Self {
        Self::new(
            ErrorCode::TenantNotFound,
            "No tenant lives at this address. Check the subdomain, or sign up on the main site.",
        )
    }

    /// For failures the client cannot fix; the cause is logged where it is handled.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "Something went wrong on our side. Try again; if it persists, contact support.",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "The service cannot reach its database right now. Try again in a few seconds.",
        )
        .retry_after(5)
    }

    /// 429 `rate_limited` with a sentence about what was limited and the wait.
    pub fn rate_limited(what: &str, seconds: u32) -> Self {
        Self::new(
            ErrorCode::RateLimited,
            format!("{what} Try again in {seconds} seconds."),
        )
        .retry_after(seconds)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
                fields: self.fields.as_ref(),
            },
        });
        let mut response = (self.code.status(), body).into_response();
        response.extensions_mut().insert(self.shown());
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<control_plane::store::StoreError> for ApiError {
    fn from(error: control_plane::store::StoreError) -> Self {
        use control_plane::store::StoreError;
        match error {
            StoreError::SubdomainTaken => ApiError::new(
                ErrorCode::SubdomainTaken,
                "That subdomain is already taken. Pick another one.",
            ),
            StoreError::NotFound => {
                ApiError::new(ErrorCode::NotFound, "Nothing with that id exists.")
            }
            StoreError::UnknownPlan => ApiError::new(
                ErrorCode::UnknownPlan,
                "There is no such plan; see GET /api/v1/admin/plans.",
            ),
            StoreError::UnknownModule => ApiError::new(
                ErrorCode::UnknownModule,
                format!(
                    "There is no such module; modules are {}.",
                    control_plane::plans::MODULES.join(", ")
                ),
            ),
            StoreError::PlanLimitReached { .. } => ApiError::new(
                ErrorCode::PlanLimitReached,
                format!("{error}. Remove one first, or upgrade to add more."),
            ),
            StoreError::DomainTaken => ApiError::new(
                ErrorCode::DomainTaken,
                "That domain is already registered to a workspace.",
            ),
            StoreError::DomainNotProven { .. } => ApiError::new(
                ErrorCode::DomainNotVerified,
                format!(
                    "Not verified: {error}. Publish the claim's verification_token as a TXT \
                     record there, wait for DNS to carry it, and verify again."
                ),
            ),
            StoreError::DomainClaimExpired => ApiError::new(
                ErrorCode::DomainClaimExpired,
                "Every claim on that domain expired before it was verified; the owner adds the \
                 domain again for a new token.",
            ),
            StoreError::InvalidTransition { .. } => ApiError::new(
                ErrorCode::InvalidTransition,
                format!("{error}; see the subscription lifecycle in the README."),
            ),
            StoreError::WrongStatus(_) => {
                ApiError::new(ErrorCode::WrongStatus, format!("{error}."))
            }
            StoreError::RolloutNotAllowed { state, action } => ApiError::new(
                ErrorCode::WrongStatus,
                format!("This rollout is {state}, so it cannot be {action}; nothing was changed."),
            ),
            StoreError::ImportRunning => ApiError::new(
                ErrorCode::ImportRunning,
                "An import is already queued or running for this workspace; wait for it to end.",
            ),
            StoreError::HostInUse(_)
            | StoreError::HostNameTaken
            | StoreError::AdminExists
            | StoreError::RolloutOpen => ApiError::new(ErrorCode::Conflict, error.to_string()),
            StoreError::Unavailable(source) => {
                tracing::warn!(error = %source, "control-plane database unavailable");
                ApiError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "control-plane store error");
                ApiError::internal()
            }
        }
    }
}

impl From<control_plane::dns::DnsError> for ApiError {
    fn from(error: control_plane::dns::DnsError) -> Self {
        tracing::warn!(%error, "DNS lookup failed");
        ApiError::new(
            ErrorCode::DnsUnavailable,
            format!("{error}. Try again in a moment; nothing was changed."),
        )
    }
}

impl From<control_plane::passwords::Busy> for ApiError {
    fn from(_: control_plane::passwords::Busy) -> Self {
        ApiError::new(
            ErrorCode::Busy,
            "Too many password checks are running right now. Try again in a moment.",
        )
        .retry_after(1)
    }
}

impl From<control_plane::signup::InvalidSignup> for ApiError {
    fn from(error: control_plane::signup::InvalidSignup) -> Self {
        let code = ErrorCode::from_name(error.code()).unwrap_or(ErrorCode::ValidationFailed);
        ApiError::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_found_by_name() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} is listed twice");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name} is not snake_case"
            );
            assert_eq!(ErrorCode::from_name(name), Some(*code));
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
        assert_eq!(ErrorCode::from_name("no_such_code"), None);
    }

    #[test]
    fn every_signup_refusal_has_its_own_code() {
        use control_plane::signup::InvalidSignup;
        for refusal in [
            InvalidSignup::Subdomain,
            InvalidSignup::ReservedSubdomain("www".into()),
            InvalidSignup::CompanyName,
            InvalidSignup::Email,
            InvalidSignup::ShortPassword,
            InvalidSignup::GuessablePassword(String::new()),
        ] {
            let name = refusal.code();
            let error = ApiError::from(refusal);
            assert_eq!(error.code.as_str(), name);
            assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    #[test]
    fn the_body_carries_the_code_and_the_status_is_the_codes() {
        let response = ApiError::rate_limited("Too many.", 7).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
