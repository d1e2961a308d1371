//! Custom domains, managed by the tenant's owner: add one (and get the token to publish as a
//! TXT record at `_silo-challenge.<domain>`), list them with their state, remove one. An
//! operator verifies a domain (admin API); from then on requests for it reach this tenant.
//! Every write is keyed by the resolved tenant's id, so no tenant can touch another's domains.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use control_plane::domains::{CustomDomain, normalise_domain};
use control_plane::limits::{Counted, PageRequest};
use control_plane::store::StoreError;
use serde::Deserialize;
use web::ApiError;

use crate::auth::{Authed, Role};
use crate::common::{Body, Paged, Params, TextPage, invalid, not_found};
use tenant_router::RouterState;

#[derive(Debug, Deserialize)]
pub struct NewDomain {
    pub domain: String,
}

/// `GET /api/v1/domains?limit=&cursor=` (owner): by name; the cursor is the last domain shown.
pub async fn list_domains(
    State(router): State<RouterState>,
    authed: Authed,
    Params(page): Params<TextPage>,
) -> Result<Json<Paged<CustomDomain, String>>, ApiError> {
    domains_page(&router, &authed, &page).await.map(Json)
}

/// One page of the workspace's domains (owner).
pub async fn domains_page(
    router: &RouterState,
    authed: &Authed,
    page: &TextPage,
) -> Result<Paged<CustomDomain, String>, ApiError> {
    authed.require(Role::Owner)?;
    let limit = page.limit()?;
    let request = PageRequest {
        after: page.cursor.as_deref(),
        limit,
    };
    let domains = router
        .store()
        .domains_page(authed.connection.tenant.id, request)
        .await?;
    Ok(Paged::cut(domains, limit, |domain| domain.domain.clone()))
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
        .add_domain(
            authed.connection.tenant.id,
            &domain,
            &authed.actor(),
            Counted::CustomDomains.limit(&authed.connection.tenant.entitlements.plan),
        )
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
