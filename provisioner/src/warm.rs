//! The warm pool: each host keeps N databases (with their roles) created from its template ahead
//! of demand, so a signup claims one and only seeds its admin and activates.
//!
//! Invariant: a warm database is handed out only at the released schema version; older ones are
//! dropped and replaced here, never claimed. Rows are written before anything is created, so a
//! refiller that dies leaves a `creating` row that the next refill finishes, not an orphan.

use std::sync::Arc;
use std::time::Duration;

use control_plane::hosts::{DatabaseHost, WarmDatabase};
use control_plane::settings::ProvisioningSettings;
use control_plane::store::quote_identifier;
use control_plane::{Keyring, Purpose, Store};
use uuid::Uuid;

use crate::host_sql::{ProvisionError, connect, ensure_role, generate_names, released_version};

/// Refills every active host's warm pool to `settings.warm_pool` until `shutdown` resolves.
pub async fn run_warm_pool(
    store: Store,
    keyring: Arc<Keyring>,
    settings: ProvisioningSettings,
    shutdown: impl Future<Output = ()>,
) {
    let refill = async {
        loop {
            match store.hosts().await {
                Ok(hosts) => {
                    for host in hosts.iter().filter(|host| host.status == "active") {
                        if let Err(error) = refill_host(&store, &keyring, &settings, host).await {
                            tracing::warn!(host = %host.name, %error, "warm pool refill failed");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot list hosts for the warm pool"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::select! {
        () = refill => {},
        () = shutdown => {},
    }
}

/// One pass over one host: drop databases at an old version, finish half-made ones, and create
/// new ones up to the target (never past the host's capacity). One worker per host at a time.
pub async fn refill_host(
    store: &Store,
    keyring: &Keyring,
    settings: &ProvisioningSettings,
    host: &DatabaseHost,
) -> Result<(), ProvisionError> {
    let Some(lock) = store.try_lock_warm_pool(host.id).await? else {
        return Ok(());
    };
    let result = async {
        let migrations = migrator::MigrationSet::embedded();
        let version = released_version(store, &migrations).await?;
        let admin_url = keyring.open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)?;
        let mut current = 0_i64;
        for warm in store.warm_databases(host.id).await? {
            if warm.schema_version != version {
                drop_warm(store, &admin_url, &warm).await?;
            } else {
                if !warm.ready {
                    finish(store, keyring, settings, host, &admin_url, &warm).await?;
                }
                current += 1;
            }
        }
        while current < i64::from(settings.warm_pool)
            && host.tenant_count + current < i64::from(host.capacity)
        {
            let (database_name, role_name, password) = generate_names();
            let id = Uuid::new_v4();
            let url = crate::host_sql::tenant_database_url(
                &admin_url,
                &role_name,
                &password,
                &database_name,
            )?;
            let warm = WarmDatabase {
                id,
                host_id: host.id,
                database_name,
                role_name,
                sealed_database_url: keyring.seal(Purpose::WarmDatabaseUrl, id, &url),
                schema_version: version,
                ready: false,
            };
            store.insert_warm(&warm).await?;
            finish(store, keyring, settings, host, &admin_url, &warm).await?;
            current += 1;
        }
        Ok(())
    }
    .await;
    lock.release().await;
    result
}

async fn finish(
    store: &Store,
    keyring: &Keyring,
    settings: &ProvisioningSettings,
    host: &DatabaseHost,
    admin_url: &secrecy::SecretString,
    warm: &WarmDatabase,
) -> Result<(), ProvisionError> {
    let url = keyring.open(Purpose::WarmDatabaseUrl, warm.id, &warm.sealed_database_url)?;
    let admin = connect(admin_url).await?;
    ensure_role(&admin, &warm.role_name, &url).await?;
    let template = crate::templates::ensure_template(
        store,
        &migrator::MigrationSet::embedded(),
        &admin,
        admin_url,
        host.id,
        warm.schema_version,
    )
    .await?;
    crate::templates::create_from_template(
        &admin,
        admin_url,
        &template,
        &warm.database_name,
        &warm.role_name,
        settings.create_strategy,
    )
    .await?;
    store.mark_warm_ready(warm.id).await?;
    tracing::debug!(host = %host.name, database = %warm.database_name, "warm database ready");
    Ok(())
}

/// Removes a host that holds no tenants: drops its warm databases and templates from the server,
/// then the record. Refused (and nothing dropped) while tenants live there.
pub async fn remove_host(
    store: &Store,
    keyring: &Keyring,
    host: &DatabaseHost,
    actor: &str,
) -> Result<(), ProvisionError> {
    if host.tenant_count > 0 {
        return Err(control_plane::store::StoreError::HostInUse(host.tenant_count).into());
    }
    // Stop refills first, so nothing new appears while we clean up.
    if host.status != "draining" {
        store.set_host_status(&host.name, "draining", actor).await?;
    }
    let admin_url = keyring.open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)?;
    for warm in store.warm_databases(host.id).await? {
        drop_warm(store, &admin_url, &warm).await?;
    }
    let admin = connect(&admin_url).await?;
    crate::templates::drop_templates(store, &admin, host.id).await?;
    store.delete_host(host.id, actor).await?;
    Ok(())
}

/// Forgets a host whose server is gone for good: removes the record (and with it the records of
/// its warm databases and templates) without contacting the server, and returns the names of the
/// databases and roles left on it, for the operator to drop by hand should the server come back.
/// Refused while tenants live there, as [`remove_host`] is; audited with what was left behind.
pub async fn forget_host(
    store: &Store,
    host: &DatabaseHost,
    actor: &str,
) -> Result<Vec<String>, ProvisionError> {
    if host.tenant_count > 0 {
        return Err(control_plane::store::StoreError::HostInUse(host.tenant_count).into());
    }
    if host.status != "draining" {
        store.set_host_status(&host.name, "draining", actor).await?;
    }
    let mut left_behind: Vec<String> = Vec::new();
    for warm in store.warm_databases(host.id).await? {
        left_behind.push(format!("database {}", warm.database_name));
        left_behind.push(format!("role {}", warm.role_name));
    }
    for (_, template) in store.templates_of(host.id).await? {
        left_behind.push(format!("database {template}"));
    }
    store
        .delete_host_recording(host.id, actor, Some(&left_behind))
        .await?;
    tracing::warn!(host = %host.name, left = left_behind.len(), "forgot a host without cleaning its server");
    Ok(left_behind)
}

async fn drop_warm(
    store: &Store,
    admin_url: &secrecy::SecretString,
    warm: &WarmDatabase,
) -> Result<(), ProvisionError> {
    let admin = connect(admin_url).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(&warm.database_name)
        ))
        .await?;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {}",
            quote_identifier(&warm.role_name)
        ))
        .await?;
    store.delete_warm(warm.id).await?;
    tracing::info!(database = %warm.database_name, version = warm.schema_version, "dropped a warm database at an old version");
    Ok(())
}
