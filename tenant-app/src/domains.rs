//! Custom domains, managed by the tenant's owner: add one (and get the token to publish as a
//! TXT record at `_silo-challenge.<domain>`), list them with their state, remove one. An
//! operator verifies a domain (admin API); from then on requests for it reach this tenant.
//! Every write is keyed by the resolved tenant's id, so no tenant can touch another's domains.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use control_plane::domains::{CustomDomain, normalise_domain};
use control_plane::store::StoreError;
use serde::Deserialize;
use web::ApiError;

use crate::auth::{Authed, Role};
use crate::common::{Body, invalid, not_found};
use tenant_router::RouterState;

#[derive(Debug, Deserialize)]
pub struct NewDomain {
    domain: String,
}

pub async fn list_domains(
    State(router): State<RouterState>,
    authed: Authed,
) -> Result<Json<Vec<CustomDomain>>, ApiError> {
    authed.require(Role::Owner)?;
    Ok(Json(
        router
            .store()
            .domains_of(authed.connection.tenant.id)
            .await?,
    ))
}

pub async fn add_domain(
    State(router): State<RouterState>,
    authed: Authed,
    Body(new): Body<NewDomain>,
) -> Result<(StatusCode, Json<CustomDomain>), ApiError> {
    authed.require(Role::Owner)?;
    let domain = normalise_domain(&new.domain)
        .ok_or_else(|| invalid("domain", "must be a host name such as shop.example.com"))?;
    let base = router.base_domain();
    if domain == base || domain.ends_with(&format!(".{base}")) {
        return Err(invalid(
            "domain",
            "must be outside this service's own domain",
        ));
    }
    let added = router
        .store()
        .add_domain(authed.connection.tenant.id, &domain, &authed.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(added)))
}

pub async fn remove_domain(
    State(router): State<RouterState>,
    authed: Authed,
    Path(domain): Path<String>,
) -> Result<StatusCode, ApiError> {
    authed.require(Role::Owner)?;
    let domain = normalise_domain(&domain).ok_or_else(|| not_found("domain"))?;
    match router
        .store()
        .remove_domain(authed.connection.tenant.id, &domain, &authed.actor())
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(not_found("domain")),
        Err(other) => Err(other.into()),
    }
}
