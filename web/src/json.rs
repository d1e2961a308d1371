//! JSON request bodies whose rejections are stable [`ApiError`]s (415, 400 or 422), never axum's
//! plain text and never an echo of the body.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::{ApiError, ErrorCode};

/// Maps axum's JSON rejections to our error shape without echoing the body back.
pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Send the request body as JSON with `Content-Type: application/json`.",
        ),
        rejection if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                "The request body is larger than this server accepts. Send less at once.",
            )
        }
        JsonRejection::JsonDataError(_) => ApiError::new(
            ErrorCode::InvalidRequest,
            "The JSON body is missing a field or has a field of the wrong type; see the API documentation.",
        ),
        _ => ApiError::new(
            ErrorCode::MalformedJson,
            "The request body is not valid JSON.",
        ),
    }
}

/// A JSON body whose rejection is a stable `ApiError` (415, 400 or 422), not axum's text.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| Self(value))
            .map_err(json_rejection)
    }
}
