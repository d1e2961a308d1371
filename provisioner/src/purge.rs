//! `silo tenants purge-failed`: an operator's cleanup of tenants whose provisioning failed.
//! Each is handled under its tenant lock (so no worker is provisioning it meanwhile): whatever
//! half-made database and role it has on its host is dropped (`IF EXISTS`, so a second run, or
//! one after a crash midway, converges), and only then is its record removed, audited, which
//! frees its subdomain for a new signup. Only what Silo made is dropped: a role of the tenant's
//! generated name without Silo's marker, or a database of its name owned by anyone but that
//! role, is left alone and the tenant refused. A tenant whose host cannot be reached, or that
//! is refused, keeps its record (and its subdomain) and is reported, so nothing is left behind
//! unrecorded.

use control_plane::model::TenantStatus;
use control_plane::tenants::TenantRecord;
use control_plane::{Keyring, Store};
use serde::Serialize;
use uuid::Uuid;

use control_plane::store::{StoreError, quote_identifier};

use crate::host_sql::{ROLE_MARKER, connect};
use crate::offboarding::{OffboardError, tenant_location};

/// Why a failed tenant could not be purged (or listed).
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Offboard(#[from] OffboardError),
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error(
        "the {kind} `{name}` on its host was not made by Silo for this tenant, so it is left \
         alone; remove it by hand if it is debris, then purge again"
    )]
    NotOurs { kind: &'static str, name: String },
}

/// One failed tenant and what the cleanup did with it.
#[derive(Debug, Clone, Serialize)]
pub struct FailedTenant {
    pub tenant_id: Uuid,
    pub slug: String,
    /// The host it was placed on, if it got that far.
    pub host: Option<String>,
    pub database: Option<String>,
    pub failure_reason: Option<String>,
    /// Whether its database, role and record are gone (always `false` in a dry run).
    pub purged: bool,
    /// Why it could not be purged (its record and subdomain are kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Purges every failed tenant (or, with `dry_run`, only lists them), auditing each under
/// `actor`. Per-tenant failures are reported in the result, not returned as an error.
pub async fn purge_failed(
    store: &Store,
    keyring: &Keyring,
    dry_run: bool,
    actor: &str,
) -> Result<Vec<FailedTenant>, PurgeError> {
    let mut report = Vec::new();
    for tenant in store.failed_tenants().await? {
        let host = match tenant.host_id {
            Some(host_id) => Some(store.host(host_id).await?.name),
            None => None,
        };
        let mut entry = FailedTenant {
            tenant_id: tenant.id,
            slug: tenant.slug.clone(),
            host,
            database: tenant.database_name.clone(),
            failure_reason: tenant.failure_reason.clone(),
            purged: false,
            error: None,
        };
        if !dry_run {
            let lock = store.lock_tenant(tenant.id).await?;
            let result = purge_one(store, keyring, &entry, actor).await;
            lock.release().await;
            match result {
                Ok(purged) => entry.purged = purged,
                Err(error) => {
                    tracing::warn!(tenant = %entry.slug, %error, "purging a failed tenant failed");
                    entry.error = Some(error.to_string());
                }
            }
        }
        report.push(entry);
    }
    Ok(report)
}

/// Drops what exists on the host, then removes the record. `false` if the tenant was no
/// longer failed once locked (retried meanwhile): then nothing is touched.
async fn purge_one(
    store: &Store,
    keyring: &Keyring,
    entry: &FailedTenant,
    actor: &str,
) -> Result<bool, PurgeError> {
    let tenant: TenantRecord = store.tenant(entry.tenant_id).await?;
    if tenant.status != TenantStatus::Failed {
        return Ok(false);
    }
    if tenant.host_id.is_some() && tenant.database_name.is_some() && tenant.role_name.is_some() {
        drop_what_silo_made(store, keyring, &tenant).await?;
    }
    let detail = serde_json::json!({
        "tenant_id": tenant.id,
        "slug": tenant.slug,
        "before": "failed",
        "after": "purged",
        "host": entry.host,
        "database": tenant.database_name,
        "role": tenant.role_name,
        "failure_reason": tenant.failure_reason,
    });
    Ok(store.forget_failed_tenant(tenant.id, actor, detail).await?)
}

/// Drops the tenant's database and role on its host, if they exist and are Silo's: the role
/// carries Silo's marker and owns the database. Anything else of those names is refused and
/// nothing is dropped.
async fn drop_what_silo_made(
    store: &Store,
    keyring: &Keyring,
    tenant: &TenantRecord,
) -> Result<(), PurgeError> {
    let (admin_url, database, role) = tenant_location(store, keyring, tenant, "purge").await?;
    let admin = connect(&admin_url).await.map_err(OffboardError::from)?;
    let marker: Option<Option<String>> = admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?
        .map(|row| row.get(0));
    if matches!(&marker, Some(comment) if comment.as_deref() != Some(ROLE_MARKER)) {
        return Err(PurgeError::NotOurs {
            kind: "role",
            name: role,
        });
    }
    let owner: Option<String> = admin
        .query_opt(
            "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
             WHERE d.datname = $1",
            &[&database],
        )
        .await?
        .map(|row| row.get(0));
    if owner.is_some() && (marker.is_none() || owner.as_deref() != Some(role.as_str())) {
        return Err(PurgeError::NotOurs {
            kind: "database",
            name: database,
        });
    }
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(&database)
        ))
        .await?;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_identifier(&role)))
        .await?;
    Ok(())
}
