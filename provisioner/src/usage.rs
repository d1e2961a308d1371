//! The usage sampler (a worker job): every tenant database's size, read with one
//! `pg_database_size` query per host, and its counts (branches, active users, items — as the
//! plan limits count them), read over the tenant's own credentials a few tenants at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use control_plane::model::TenantStatus;
use control_plane::tenants::TenantRecord;
use control_plane::usage::UsageSample;
use control_plane::{Keyring, Purpose, Store};
use uuid::Uuid;

use crate::host_sql::connect;

/// Tenants sampled at once (each over its own connection).
const CONCURRENCY: usize = 4;

/// Samples every served tenant every `interval` until `shutdown` resolves.
pub async fn run_usage_sampler(
    store: Store,
    keyring: Arc<Keyring>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        loop {
            match sample_all(&store, &keyring).await {
                Ok(sampled) => tracing::debug!(sampled, "usage sampled"),
                Err(error) => tracing::warn!(%error, "usage sampling failed; will try again"),
            }
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        () = work => {},
        () = shutdown => {},
    }
}

/// One pass over every active or suspended tenant. Returns how many were sampled; a tenant or
/// host that cannot be read is skipped (and logged), not fatal.
pub async fn sample_all(
    store: &Store,
    keyring: &Keyring,
) -> Result<usize, control_plane::store::StoreError> {
    let tenants: Vec<TenantRecord> = store
        .tenants()
        .await?
        .into_iter()
        .filter(|tenant| {
            matches!(
                tenant.status,
                TenantStatus::Active | TenantStatus::Suspended
            )
        })
        .collect();
    let sizes = database_sizes(store, keyring, &tenants).await;
    let mut sampled = 0;
    for chunk in tenants.chunks(CONCURRENCY) {
        let results = futures::future::join_all(
            chunk
                .iter()
                .map(|tenant| sample_one(store, keyring, tenant, sizes.get(&tenant.id).copied())),
        )
        .await;
        sampled += results.into_iter().filter(|recorded| *recorded).count();
    }
    Ok(sampled)
}

async fn sample_one(
    store: &Store,
    keyring: &Keyring,
    tenant: &TenantRecord,
    database_bytes: Option<i64>,
) -> bool {
    let counts = counts(keyring, tenant).await;
    let sample = UsageSample {
        database_bytes,
        users: counts.map(|c| c.1),
        items: counts.map(|c| c.2),
        branches: counts.map(|c| c.0),
        sampled_at: chrono::Utc::now(),
    };
    match store.record_usage_sample(tenant.id, &sample).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(tenant = %tenant.slug, %error, "usage sample not recorded");
            false
        }
    }
}

/// Each tenant database's size, one query per host over its admin connection.
async fn database_sizes(
    store: &Store,
    keyring: &Keyring,
    tenants: &[TenantRecord],
) -> HashMap<Uuid, i64> {
    let mut by_host: HashMap<Uuid, Vec<&TenantRecord>> = HashMap::new();
    for tenant in tenants {
        if let (Some(host), Some(_)) = (tenant.host_id, &tenant.database_name) {
            by_host.entry(host).or_default().push(tenant);
        }
    }
    let mut sizes = HashMap::new();
    for (host_id, tenants) in by_host {
        let read = async {
            let host = store.host(host_id).await.map_err(|e| e.to_string())?;
            let admin_url = keyring
                .open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)
                .map_err(|e| e.to_string())?;
            let client = connect(&admin_url).await.map_err(|e| e.to_string())?;
            let names: Vec<&str> = tenants
                .iter()
                .filter_map(|tenant| tenant.database_name.as_deref())
                .collect();
            client
                .query(
                    "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname = ANY($1)",
                    &[&names],
                )
                .await
                .map_err(|e| e.to_string())
        };
        match read.await {
            Ok(rows) => {
                let by_name: HashMap<String, i64> =
                    rows.iter().map(|row| (row.get(0), row.get(1))).collect();
                for tenant in tenants {
                    if let Some(size) = tenant
                        .database_name
                        .as_ref()
                        .and_then(|name| by_name.get(name))
                    {
                        sizes.insert(tenant.id, *size);
                    }
                }
            }
            Err(error) => tracing::warn!(%host_id, %error, "database sizes not read"),
        }
    }
    sizes
}

/// `(branches, users, items)` read from the tenant's own database, or `None` if it cannot be.
async fn counts(keyring: &Keyring, tenant: &TenantRecord) -> Option<(i32, i32, i32)> {
    tenant.sealed_database_url.as_ref()?;
    let read = async {
        let client = control_plane::connect::connect_tenant(
            keyring,
            tenant.id,
            tenant.sealed_database_url.as_ref(),
            control_plane::connect::ConnectOptions::named("silo-usage-sampler"),
        )
        .await?;
        Ok::<_, control_plane::connect::ConnectError>(
            client
                .query_one(tenant_schema::USAGE_COUNTS_SQL, &[])
                .await?,
        )
    };
    match read.await {
        Ok(row) => {
            let count = |name: &str| i32::try_from(row.get::<_, i64>(name)).unwrap_or(i32::MAX);
            Some((count("branches"), count("users"), count("items")))
        }
        Err(error) => {
            tracing::warn!(tenant = %tenant.slug, %error, "tenant counts not read");
            None
        }
    }
}
