//! Integration credentials (owner only): list (name, last four characters, when changed),
//! put (create or replace), remove. The secret goes into the control plane sealed and never
//! comes back out through this API.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use control_plane::integrations::{Integration, SECRET_LENGTH, valid_name};
use control_plane::limits::{Counted, PageRequest};
use control_plane::store::StoreError;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use web::ApiError;

use crate::auth::{Authed, Role};
use crate::common::{Body, Fields, Paged, Params, TextPage, not_found};
use tenant_router::RouterState;

#[derive(Debug, Deserialize)]
pub struct PutIntegration {
    pub secret: SecretString,
}

/// What a tenant sees of a credential.
#[derive(Debug, Serialize)]
pub struct IntegrationView {
    pub name: String,
    pub last4: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Integration> for IntegrationView {
    fn from(integration: Integration) -> Self {
        Self {
            name: integration.name,
            last4: integration.last4,
            updated_at: integration.updated_at,
        }
    }
}

#[tracing::instrument(name = "list_integrations", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn list_integrations(
    State(router): State<RouterState>,
    authed: Authed,
    Params(page): Params<TextPage>,
) -> Result<Json<Paged<IntegrationView, String>>, ApiError> {
    integrations_page(&router, &authed, &page).await.map(Json)
}

/// One page of the workspace's credentials, never their secrets (owner).
pub async fn integrations_page(
    router: &RouterState,
    authed: &Authed,
    page: &TextPage,
) -> Result<Paged<IntegrationView, String>, ApiError> {
    authed.require(Role::Owner)?;
    let limit = page.limit()?;
    let request = PageRequest {
        after: page.cursor.as_deref(),
        limit,
    };
    let integrations = router
        .store()
        .integrations_page(authed.connection.tenant.id, request)
        .await?;
    let views = integrations
        .into_iter()
        .map(IntegrationView::from)
        .collect();
    Ok(Paged::cut(views, limit, |view: &IntegrationView| {
        view.name.clone()
    }))
}

#[tracing::instrument(name = "put_integration", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn put_integration(
    State(router): State<RouterState>,
    authed: Authed,
    Path(name): Path<String>,
    Body(put): Body<PutIntegration>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    authed.require(Role::Owner)?;
    let mut fields = Fields::default();
    fields.check(
        valid_name(&name),
        "name",
        "must be 2 to 40 lowercase letters, digits or `_`, starting with a letter",
    );
    let secret = put.secret.expose_secret();
    fields.check(
        SECRET_LENGTH.contains(&secret.chars().count()) && secret.trim() == secret,
        "secret",
        &format!(
            "must be {} to {} characters, without leading or trailing spaces",
            SECRET_LENGTH.start(),
            SECRET_LENGTH.end()
        ),
    );
    fields.finish()?;
    let (integration, created) = router
        .store()
        .put_integration(
            router.keyring(),
            authed.connection.tenant.id,
            &name,
            &put.secret,
            &authed.actor(),
            Counted::Integrations.limit(&authed.connection.tenant.entitlements.plan),
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(integration.into())))
}

#[tracing::instrument(name = "remove_integration", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn remove_integration(
    State(router): State<RouterState>,
    authed: Authed,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    authed.require(Role::Owner)?;
    if !valid_name(&name) {
        return Err(not_found("integration"));
    }
    match router
        .store()
        .remove_integration(authed.connection.tenant.id, &name, &authed.actor())
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found("integration")),
        Err(other) => Err(other.into()),
    }
}
