//! API keys, managed by the tenant's owner (needs the `api_access` module): list (never the
//! secret), create (the whole key is in the answer, once), revoke, regenerate. A revocation
//! is applied to this router's cache before the answer and reaches every other router through
//! the key's change notification.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use control_plane::api_keys::{API_ACCESS_MODULE, ApiKey, KEY_ROLES, NewApiKey};
use control_plane::limits::Counted;
use control_plane::store::StoreError;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use web::ApiError;

use crate::auth::{Authed, Role};
use crate::common::{Body, Fields, Paged, Params, TextPage, invalid, not_found};
use tenant_router::RouterState;

#[derive(Debug, Deserialize)]
pub struct NewKeyRequest {
    pub name: String,
    pub role: Option<String>,
}

/// A key as created: its record and, this once, the whole key. (No `Debug`: it holds the key.)
#[derive(Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// `silo_<prefix>_<secret>`: shown only in this answer.
    pub secret: String,
}

impl From<NewApiKey> for CreatedKey {
    fn from(created: NewApiKey) -> Self {
        Self {
            secret: created.secret.expose_secret().to_owned(),
            key: created.key,
        }
    }
}

async fn require_owner_with_api_access(authed: &Authed) -> Result<(), ApiError> {
    authed.require_module(API_ACCESS_MODULE).await?;
    authed.require(Role::Owner)
}

/// A key id from the path; anything that is not one names no key.
fn key_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found("API key"))
}

#[tracing::instrument(name = "list_api_keys", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn list_api_keys(
    State(router): State<RouterState>,
    authed: Authed,
    Params(page): Params<TextPage>,
) -> Result<Json<Paged<ApiKey, Uuid>>, ApiError> {
    api_keys_page(&router, &authed, &page).await.map(Json)
}

/// One page of the workspace's keys, revoked ones included (owner, `api_access`).
pub async fn api_keys_page(
    router: &RouterState,
    authed: &Authed,
    page: &TextPage,
) -> Result<Paged<ApiKey, Uuid>, ApiError> {
    require_owner_with_api_access(authed).await?;
    let limit = page.limit()?;
    let after = page
        .cursor
        .as_deref()
        .map(Uuid::parse_str)
        .transpose()
        .map_err(|_| invalid("cursor", "must be the `next_cursor` of the previous page"))?;
    let keys = router
        .store()
        .api_keys_page(authed.connection.tenant.id, after, limit)
        .await?;
    Ok(Paged::cut(keys, limit, |key| key.id))
}

#[tracing::instrument(name = "create_api_key", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn create_api_key(
    State(router): State<RouterState>,
    authed: Authed,
    Body(new): Body<NewKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    require_owner_with_api_access(&authed).await?;
    let mut fields = Fields::default();
    fields.text("name", &new.name, 100);
    let role = new.role.as_deref().unwrap_or("read_only");
    fields.check(
        KEY_ROLES.contains(&role),
        "role",
        "must be staff or read_only (keys are never owners)",
    );
    fields.finish()?;
    let created = router
        .store()
        .create_api_key(
            authed.connection.tenant.id,
            new.name.trim(),
            role,
            &authed.actor(),
            Counted::ApiKeys.limit(&authed.connection.tenant.entitlements.plan),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[tracing::instrument(name = "revoke_api_key", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn revoke_api_key(
    State(router): State<RouterState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_owner_with_api_access(&authed).await?;
    let id = key_id(&id)?;
    match router
        .store()
        .revoke_api_key(authed.connection.tenant.id, id, &authed.actor())
        .await
    {
        Ok(revoked) => {
            router.forget_api_key(&revoked.prefix).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::NotFound) => Err(not_found("API key")),
        Err(other) => Err(other.into()),
    }
}

#[tracing::instrument(name = "regenerate_api_key", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn regenerate_api_key(
    State(router): State<RouterState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    require_owner_with_api_access(&authed).await?;
    let id = key_id(&id)?;
    match router
        .store()
        .regenerate_api_key(authed.connection.tenant.id, id, &authed.actor())
        .await
    {
        Ok((old, created)) => {
            router.forget_api_key(&old.prefix).await;
            Ok((StatusCode::CREATED, Json(created.into())))
        }
        Err(StoreError::NotFound) => Err(not_found("active API key")),
        Err(other) => Err(other.into()),
    }
}
