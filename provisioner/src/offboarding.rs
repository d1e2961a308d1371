//! Offboarding and backups: a cancelled tenant is exported with `pg_dump` (custom format) into
//! the export folder, and once its grace period has passed its database and role are dropped and
//! it ends `deprovisioned`. `export` and `restore` are also the on-demand backup commands.
//!
//! Invariants: nothing is dropped before an offboarding export is recorded; an export file
//! appears under its final name only when complete (written as `.partial`, then renamed); a
//! restore builds a new database beside the old one and swaps only after `pg_restore` succeeded,
//! so a bad file changes nothing. Each tenant is handled under its tenant lock, so several
//! workers never offboard the same tenant at once. Passwords reach `pg_dump`/`pg_restore`
//! through their environment, never their arguments (which `ps` shows).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use control_plane::model::TenantStatus;
use control_plane::settings::OffboardingSettings;
use control_plane::store::{StoreError, quote_identifier};
use control_plane::tenants::{TenantExport, TenantRecord};
use control_plane::{Keyring, Purpose, Store};
use secrecy::SecretString;
use tokio_postgres::config::Host;
use uuid::Uuid;

use crate::host_sql::connect;

/// The actor recorded in the audit log for work the workers do on their own.
const SYSTEM_ACTOR: &str = "system:offboarding";

/// Why an export, restore or drop failed. Never contains a password or a connection string.
#[derive(Debug, thiserror::Error)]
pub enum OffboardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealing(#[from] control_plane::sealing::SealingError),
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] control_plane::connect::ConnectError),
    #[error(transparent)]
    Tool(#[from] control_plane::embedded_postgres::EmbeddedError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the tenant is `{0}`, so it has no database to {1}")]
    NoDatabase(&'static str, &'static str),
    #[error("`{tool}` failed: {detail}")]
    Command { tool: &'static str, detail: String },
    #[error("{0} is not a pg_dump custom-format archive: {1}")]
    InvalidBackup(String, String),
    #[error("tenant migration history could not be read: {0}")]
    Migration(#[from] migrator::MigrateError),
}

/// Exports and drops cancelled tenants every `settings.check_interval` until `shutdown` resolves.
pub async fn run_offboarding(
    store: Store,
    keyring: Arc<Keyring>,
    export_dir: PathBuf,
    settings: OffboardingSettings,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        loop {
            if let Err(error) = offboard_due(&store, &keyring, &export_dir).await {
                tracing::warn!(%error, "offboarding pass failed; will try again");
            }
            tokio::time::sleep(settings.check_interval).await;
        }
    };
    tokio::select! {
        () = work => {},
        () = shutdown => {},
    }
}

/// One pass: every cancelled tenant gets its offboarding export; those past their grace period
/// are dropped and marked `deprovisioned`. Returns how many were deprovisioned.
pub async fn offboard_due(
    store: &Store,
    keyring: &Keyring,
    export_dir: &Path,
) -> Result<usize, OffboardError> {
    let mut deprovisioned = 0;
    for (tenant_id, due) in store.cancelled_tenants().await? {
        let lock = store.lock_tenant(tenant_id).await?;
        let result = offboard_one(store, keyring, export_dir, tenant_id, due).await;
        lock.release().await;
        match result {
            Ok(true) => deprovisioned += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(%tenant_id, %error, "offboarding a tenant failed"),
        }
    }
    Ok(deprovisioned)
}

async fn offboard_one(
    store: &Store,
    keyring: &Keyring,
    export_dir: &Path,
    tenant_id: Uuid,
    due: bool,
) -> Result<bool, OffboardError> {
    let tenant = store.tenant(tenant_id).await?;
    if tenant.status != TenantStatus::Cancelled {
        return Ok(false);
    }
    // A tenant cancelled before it was ever placed has nothing to export or drop.
    if tenant.host_id.is_some() {
        let exported = store
            .exports_of(tenant_id)
            .await?
            .iter()
            .any(|export| export.reason == "offboarding");
        if !exported && database_exists(store, keyring, &tenant).await? {
            let export = export(store, keyring, &tenant, "offboarding", export_dir, None).await?;
            tracing::info!(tenant = %tenant.slug, bytes = export.bytes, "offboarding export written");
        }
        if !due {
            return Ok(false);
        }
        drop_database_and_role(store, keyring, &tenant).await?;
    } else if !due {
        return Ok(false);
    }
    store.mark_deprovisioned(tenant_id, SYSTEM_ACTOR).await?;
    tracing::info!(tenant = %tenant.slug, "tenant deprovisioned");
    Ok(true)
}

/// Dumps the tenant's database (custom format) to `output`, or to a new file in `export_dir`,
/// and records it. The file is readable by its owner only.
pub async fn export(
    store: &Store,
    keyring: &Keyring,
    tenant: &TenantRecord,
    reason: &str,
    export_dir: &Path,
    output: Option<&Path>,
) -> Result<TenantExport, OffboardError> {
    let (admin_url, database, _) = tenant_location(store, keyring, tenant, "export").await?;
    let id = Uuid::new_v4();
    let path = match output {
        Some(path) => path.to_owned(),
        None => {
            create_private_dir(export_dir)?;
            export_dir.join(format!(
                "{}_{}_{reason}.dump",
                tenant.slug,
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ))
        }
    };
    let partial = path.with_extension("dump.partial");
    // Created empty with mode 0600 first, so the data is never readable by others.
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
    }
    let dumped = run_tool(
        "pg_dump",
        &admin_url,
        &[
            "--format=custom",
            "--no-password",
            "--file",
            path_str(&partial)?,
            "--dbname",
            &database,
        ],
    )
    .await;
    if let Err(error) = dumped {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, &path)?;
    let bytes = i64::try_from(std::fs::metadata(&path)?.len()).unwrap_or(i64::MAX);
    let export = TenantExport {
        id,
        tenant_id: tenant.id,
        reason: reason.to_owned(),
        path: path.display().to_string(),
        bytes,
        schema_version: tenant.schema_version,
    };
    store.record_export(&export).await?;
    Ok(export)
}

/// Replaces the tenant's database with the contents of `file` (a `pg_dump -Fc` archive). The
/// archive is restored into a new database first; only when that succeeded is it swapped in
/// under the tenant's database name and the old one dropped. Returns the restored schema version.
pub async fn restore(
    store: &Store,
    keyring: &Keyring,
    tenant: &TenantRecord,
    file: &Path,
    actor: &str,
) -> Result<i32, OffboardError> {
    if !matches!(
        tenant.status,
        TenantStatus::Active | TenantStatus::Suspended
    ) {
        return Err(OffboardError::NoDatabase(
            tenant.status.as_str(),
            "restore into",
        ));
    }
    let (admin_url, database, role) =
        tenant_location(store, keyring, tenant, "restore into").await?;
    let tenant_url = tenant
        .sealed_database_url
        .as_ref()
        .map(|sealed| keyring.open(Purpose::TenantDatabaseUrl, tenant.id, sealed))
        .transpose()?
        .ok_or(OffboardError::NoDatabase(
            tenant.status.as_str(),
            "restore into",
        ))?;
    let file_str = path_str(file)?;
    // Read the archive's table of contents before touching anything.
    run_tool("pg_restore", &admin_url, &["--list", file_str])
        .await
        .map_err(|error| {
            OffboardError::InvalidBackup(file.display().to_string(), error.to_string())
        })?;

    let admin = connect(&admin_url).await?;
    let suffix = &Uuid::new_v4().simple().to_string()[..12];
    let incoming = format!("silo_restore_{suffix}");
    let replaced = format!("silo_replaced_{suffix}");
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0",
            quote_identifier(&incoming),
            quote_identifier(&role)
        ))
        .await?;
    let restored = async {
        admin
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                quote_identifier(&incoming)
            ))
            .await?;
        // Restored as the tenant's own role, through its own credentials: whatever the archive
        // holds runs with the tenant's privileges, never the host admin's (a crafted archive
        // could `SET ROLE` or `RESET ROLE` past a `--role` given to an admin session).
        run_tool(
            "pg_restore",
            &tenant_url,
            &[
                "--no-password",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "--dbname",
                &incoming,
                file_str,
            ],
        )
        .await
    }
    .await;
    if let Err(error) = restored {
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_identifier(&incoming)
            ))
            .await;
        return Err(error);
    }
    // Swap: refuse new connections to the old database, end the open ones, rename both.
    let (old, new, aside) = (
        quote_identifier(&database),
        quote_identifier(&incoming),
        quote_identifier(&replaced),
    );
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {old} WITH ALLOW_CONNECTIONS false"
        ))
        .await?;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&database],
        )
        .await?;
    admin
        .batch_execute(&format!("ALTER DATABASE {old} RENAME TO {aside}"))
        .await?;
    admin
        .batch_execute(&format!("ALTER DATABASE {new} RENAME TO {old}"))
        .await?;
    admin
        .batch_execute(&format!("DROP DATABASE {aside} WITH (FORCE)"))
        .await?;

    let client = connect(&tenant_url).await?;
    let version = migrator::applied_version(&client).await?;
    store.set_schema_version(tenant.id, version).await?;
    store
        .audit(
            actor,
            "tenant.restore",
            Some(tenant.id),
            serde_json::json!({"file": file.display().to_string(), "schema_version": version}),
        )
        .await?;
    Ok(version)
}

/// Whether the tenant's database exists on its host (it may not, if it was cancelled while
/// still provisioning).
async fn database_exists(
    store: &Store,
    keyring: &Keyring,
    tenant: &TenantRecord,
) -> Result<bool, OffboardError> {
    let (admin_url, database, _) = tenant_location(store, keyring, tenant, "export").await?;
    let admin = connect(&admin_url).await?;
    Ok(crate::templates::database_exists(&admin, &database).await?)
}

async fn drop_database_and_role(
    store: &Store,
    keyring: &Keyring,
    tenant: &TenantRecord,
) -> Result<(), OffboardError> {
    let (admin_url, database, role) = tenant_location(store, keyring, tenant, "drop").await?;
    let admin = connect(&admin_url).await?;
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

/// The host admin URL, database name and role name of a placed tenant.
pub(crate) async fn tenant_location(
    store: &Store,
    keyring: &Keyring,
    tenant: &TenantRecord,
    purpose: &'static str,
) -> Result<(SecretString, String, String), OffboardError> {
    let no_database = || OffboardError::NoDatabase(tenant.status.as_str(), purpose);
    if tenant.status == TenantStatus::Deprovisioned {
        return Err(no_database());
    }
    let host_id = tenant.host_id.ok_or_else(no_database)?;
    let database = tenant.database_name.clone().ok_or_else(no_database)?;
    let role = tenant.role_name.clone().ok_or_else(no_database)?;
    let host = store.host(host_id).await?;
    let admin_url = keyring.open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)?;
    Ok((admin_url, database, role))
}

/// Runs a PostgreSQL client tool against the server of `admin_url`, passing the connection
/// through `PG*` environment variables. Its stderr (which never holds the password) becomes the
/// error text.
async fn run_tool(
    tool: &'static str,
    admin_url: &SecretString,
    args: &[&str],
) -> Result<(), OffboardError> {
    let program = control_plane::embedded_postgres::find_tool(tool)?;
    let target = control_plane::connect::Target::parse(admin_url)?;
    let config = &target.config;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_remove("PGSERVICE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => {
            command.env("PGHOST", host);
        }
        Some(Host::Unix(path)) => {
            command.env("PGHOST", path);
        }
        None => {}
    }
    if let Some(port) = config.get_ports().first() {
        command.env("PGPORT", port.to_string());
    }
    if let Some(user) = config.get_user() {
        command.env("PGUSER", user);
    }
    if let Some(password) = config.get_password() {
        command.env("PGPASSWORD", String::from_utf8_lossy(password).as_ref());
    }
    // The same TLS as every other connection: PGSSLMODE, and PGSSLROOTCERT when verifying.
    command.env_remove("PGSSLROOTCERT");
    for (name, value) in target.tls.libpq_environment()? {
        command.env(name, value);
    }
    let output = command.output().await?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(OffboardError::Command {
            tool,
            detail: stderr.trim().lines().take(5).collect::<Vec<_>>().join("; "),
        })
    }
}

fn path_str(path: &Path) -> Result<&str, OffboardError> {
    path.to_str().ok_or_else(|| {
        OffboardError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not valid UTF-8", path.display()),
        ))
    })
}

fn create_private_dir(dir: &Path) -> Result<(), OffboardError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    Ok(())
}
