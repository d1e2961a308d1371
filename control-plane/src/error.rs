//! `ApiError`: the one type that knows HTTP. Every error response is
//! `{"error": {"code": "snake_case", "message": "…"}}` with a stable code; nothing internal
//! (SQL, host names of tenant databases, connection strings) reaches the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_seconds: Option<u32>,
    /// For validation errors: field name → what is wrong with it.
    pub fields: Option<std::collections::BTreeMap<String, String>>,
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
    fields: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_seconds: None,
            fields: None,
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// 422 `validation_failed`, naming each field that is wrong.
    pub fn validation(fields: std::collections::BTreeMap<String, String>) -> Self {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("Some fields are not valid: {}.", names.join(", ")),
        );
        error.fields = Some(fields);
        error
    }

    pub fn tenant_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "tenant_not_found",
            "No tenant lives at this address. Check the subdomain, or sign up on the main site.",
        )
    }

    /// For failures the client cannot fix; the cause is logged where it is handled.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side. Try again; if it persists, contact support.",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service cannot reach its database right now. Try again in a few seconds.",
        )
        .retry_after(5)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                fields: self.fields.as_ref(),
            },
        });
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::SubdomainTaken => ApiError::new(
                StatusCode::CONFLICT,
                "subdomain_taken",
                "That subdomain is already taken. Pick another one.",
            ),
            StoreError::NotFound => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "Nothing with that id exists.",
            ),
            StoreError::UnknownPlan => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_plan",
                "There is no such plan; see GET /api/v1/admin/plans.",
            ),
            StoreError::UnknownModule => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_module",
                format!(
                    "There is no such module; modules are {}.",
                    crate::plans::MODULES.join(", ")
                ),
            ),
            StoreError::DomainTaken => ApiError::new(
                StatusCode::CONFLICT,
                "domain_taken",
                "That domain is already registered to a workspace.",
            ),
            StoreError::InvalidTransition { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_transition",
                format!("{error}; see the subscription lifecycle in the README."),
            ),
            StoreError::WrongStatus(_) => {
                ApiError::new(StatusCode::CONFLICT, "wrong_status", format!("{error}."))
            }
            StoreError::HostInUse(_)
            | StoreError::HostNameTaken
            | StoreError::AdminExists
            | StoreError::RolloutOpen => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
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
