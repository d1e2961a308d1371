//! White-label settings on the tenant's host: anyone may read them (the tenant app's login page
//! shows them before anyone signs in); the owner changes them when the plan includes
//! `custom_branding`. They are cached with the resolved tenant, so reading costs nothing.

use axum::Json;
use axum::extract::State;
use control_plane::branding::{Branding, validate_branding};
use control_plane::model::TenantChanged;
use serde::Serialize;
use web::ApiError;

use crate::ResolvedOnly;
use crate::auth::{Authed, Role};
use crate::common::Body;
use tenant_router::seam::{ResolvedTenant, RouterState};

/// The module a tenant needs to change its branding.
pub const CUSTOM_BRANDING_MODULE: &str = "custom_branding";

/// The branding in force: the tenant's own settings, or the defaults.
#[derive(Debug, Serialize)]
pub struct EffectiveBranding {
    pub display_name: String,
    pub logo_url: Option<String>,
    pub primary_color: String,
    /// Whether the tenant set any branding of its own.
    pub custom: bool,
}

impl EffectiveBranding {
    pub fn of(tenant: &ResolvedTenant) -> Self {
        Self::from_parts(tenant, tenant.branding.clone())
    }

    /// `own`: the tenant's own settings, if any, with the tenant's defaults for what is unset.
    fn from_parts(tenant: &ResolvedTenant, own: Option<Branding>) -> Self {
        let custom = own.is_some();
        let in_force = own.unwrap_or_default().in_force(&tenant.display_name);
        Self {
            display_name: in_force.display_name,
            logo_url: in_force.logo_url,
            primary_color: in_force.primary_color,
            custom,
        }
    }
}

/// `GET /api/v1/branding` (public).
#[tracing::instrument(name = "get_branding", skip_all, fields(tenant = %tenant.slug))]
pub async fn get_branding(ResolvedOnly(tenant): ResolvedOnly) -> Json<EffectiveBranding> {
    Json(EffectiveBranding::of(&tenant))
}

/// `PUT /api/v1/branding` (owner, `custom_branding`): replaces the branding; a field left out
/// or null goes back to its default.
#[tracing::instrument(name = "put_branding", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn put_branding(
    State(router): State<RouterState>,
    authed: Authed,
    Body(input): Body<Branding>,
) -> Result<Json<EffectiveBranding>, ApiError> {
    authed.require(Role::Owner)?;
    authed.require_module(CUSTOM_BRANDING_MODULE).await?;
    let branding = validate_branding(&input).map_err(ApiError::validation)?;
    let tenant = &authed.connection.tenant;
    router
        .store()
        .set_branding(tenant.id, &branding, &authed.actor())
        .await?;
    // The change's notification drops the cached tenant on every router; dropping it here too
    // means this router's next answer has it even if the notification is still on its way.
    router
        .invalidate(&TenantChanged {
            id: tenant.id,
            slug: tenant.slug.clone(),
            domain: None,
            api_key: None,
            sessions_ended: None,
        })
        .await;
    Ok(Json(EffectiveBranding::from_parts(tenant, Some(branding))))
}
