//! Drift: a tenant whose applied history differs from the migrations this build knows — a
//! migration missing below its newest applied one, an applied one this build does not know, or
//! one whose checksum changed since it was applied. Reported, never "fixed": refinery refuses to
//! migrate a drifted database (divergent and missing checks stay on).

use serde::Serialize;
use tokio_postgres::Client;

use crate::{MigrateError, MigrationSet};

/// How a tenant's history differs from the known migrations. Empty everywhere: no drift.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Known versions at or below the newest applied one that were never applied.
    pub missing: Vec<i32>,
    /// Applied versions this build does not know.
    pub extra: Vec<i32>,
    /// Applied versions whose checksum differs from the known migration's.
    pub changed: Vec<i32>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }
}

/// Compares the tenant database's history with `set`.
pub async fn detect(client: &Client, set: &MigrationSet) -> Result<Drift, MigrateError> {
    if !crate::has_history(client).await? {
        return Ok(Drift::default());
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, checksum FROM {} ORDER BY version",
                tenant_schema::HISTORY_TABLE
            ),
            &[],
        )
        .await?;
    let applied: Vec<(i32, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let newest = applied
        .iter()
        .map(|(version, _)| *version)
        .max()
        .unwrap_or(0);
    let mut drift = Drift::default();
    for (version, checksum) in &applied {
        match set.migrations().iter().find(|m| m.version() == *version) {
            None => drift.extra.push(*version),
            Some(known) if known.checksum().to_string() != *checksum => {
                drift.changed.push(*version)
            }
            Some(_) => {}
        }
    }
    for known in set.migrations() {
        let version = known.version();
        if version <= newest && !applied.iter().any(|(applied, _)| *applied == version) {
            drift.missing.push(version);
        }
    }
    Ok(drift)
}

/// A drifted tenant of the fleet, or one whose history could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct TenantDrift {
    pub slug: String,
    /// `Ok` with the differences, or `Err` with why the tenant could not be read.
    pub drift: Result<Drift, String>,
}

/// Reads every tenant's history (one connection at a time) and returns those that drifted or
/// could not be read; tenants without a database yet are skipped.
pub async fn scan_fleet(
    store: &control_plane::Store,
    keyring: &control_plane::Keyring,
    set: &MigrationSet,
) -> control_plane::store::StoreResult<Vec<TenantDrift>> {
    let mut drifted = Vec::new();
    for tenant in store.tenants().await? {
        let Some(sealed) = tenant.sealed_database_url.as_ref() else {
            continue;
        };
        let drift = match crate::connect_tenant(keyring, tenant.id, Some(sealed)).await {
            Ok(client) => match detect(&client, set).await {
                Ok(found) if found.is_empty() => continue,
                Ok(found) => Ok(found),
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(error),
        };
        drifted.push(TenantDrift {
            slug: tenant.slug,
            drift,
        });
    }
    Ok(drifted)
}
