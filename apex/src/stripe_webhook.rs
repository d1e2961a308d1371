//! `POST /api/v1/webhooks/stripe`: the HTTP side of Stripe's webhook. The signature check and
//! the event's effect are the control plane's (`control_plane::stripe`); this only maps them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use control_plane::store::StoreError;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use web::{ApiError, ErrorCode};

use crate::ApexState;

/// `POST /api/v1/webhooks/stripe`.
#[tracing::instrument(name = "stripe_webhook", skip_all)]
pub async fn webhook(
    State(state): State<ApexState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let secret = state
        .billing
        .stripe_webhook_secret
        .as_ref()
        .filter(|secret| !secret.expose_secret().is_empty());
    let Some(secret) = secret else {
        return Err(ApiError::new(
            ErrorCode::StripeNotConfigured,
            "Stripe webhooks are not configured here: set SILO_STRIPE_WEBHOOK_SECRET.",
        ));
    };
    let header = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    control_plane::stripe::verify_signature(header, &body, secret, Utc::now().timestamp())
        .map_err(|error| {
            tracing::warn!(%error, "Stripe webhook refused");
            ApiError::new(
                ErrorCode::InvalidSignature,
                format!("{error}; the event was not processed."),
            )
        })?;
    let event: control_plane::stripe::Event = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidEvent,
            "The body is not a Stripe event (id, type, created, data.object).",
        )
    })?;
    let outcome = state
        .store
        .apply_stripe_event(&event, &state.lifecycle)
        .await
        .map_err(|error| match error {
            StoreError::Unavailable(_) => ApiError::from(error),
            other => {
                tracing::error!(error = %other, event = %event.id, "Stripe event failed");
                ApiError::internal()
            }
        })?;
    tracing::info!(event = %event.id, kind = %event.kind, outcome = outcome.as_str(), "Stripe event");
    Ok(Json(
        serde_json::json!({"received": true, "outcome": outcome.as_str()}),
    ))
}
