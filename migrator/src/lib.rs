//! Applies tenant-schema migrations to one tenant database safely: under an advisory lock, with
//! lock and statement timeouts, recording history in the tenant's own database. The rollout
//! engine and the `migrator` CLI build on this.
//!
//! Invariant: two processes migrating the same database never both apply a migration; the
//! advisory lock serialises them and refinery's history makes the second a no-op.

pub mod drift;
pub mod lint;
pub mod rollout;

use std::sync::Arc;
use std::time::Duration;

use tenant_schema::Migration;
use tokio_postgres::Client;

/// The advisory lock key every Silo migrator takes in a tenant database (advisory locks are
/// scoped to the database, so one constant serves every tenant).
const MIGRATION_LOCK_KEY: i64 = 0x0511_105C_4E3A;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("tenant database query failed: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
}

/// Timeouts that keep a migration from stalling tenant traffic.
#[derive(Debug, Clone, Copy)]
pub struct MigrationLimits {
    /// How long a statement may wait for a table lock before the migration fails.
    pub lock_timeout: Duration,
    /// How long one statement may run.
    pub statement_timeout: Duration,
}

impl Default for MigrationLimits {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(300),
        }
    }
}

/// How the migrator's tenant connections present themselves (10 s connect timeout).
pub const MIGRATOR_CONNECTION: control_plane::connect::ConnectOptions =
    control_plane::connect::ConnectOptions::named("silo-migrator");

/// Connects to a tenant database from its sealed URL, as the migrator. The error is safe to
/// show: it never contains the URL.
pub async fn connect_tenant(
    keyring: &control_plane::Keyring,
    tenant_id: uuid::Uuid,
    sealed: Option<&control_plane::Sealed>,
) -> Result<Client, String> {
    control_plane::connect::connect_tenant(keyring, tenant_id, sealed, MIGRATOR_CONNECTION)
        .await
        .map_err(|error| error.to_string())
}

/// Whether the tenant database has a migration history table yet.
pub async fn has_history(client: &Client) -> Result<bool, MigrateError> {
    Ok(client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&tenant_schema::HISTORY_TABLE],
        )
        .await?
        .get(0))
}

/// One row of a tenant's own migration history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedMigration {
    pub version: i32,
    pub name: String,
    pub applied_on: Option<String>,
}

/// The tenant's own migration history, oldest first (empty when it has none yet).
pub async fn history(client: &Client) -> Result<Vec<AppliedMigration>, MigrateError> {
    if !has_history(client).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, name, applied_on FROM {} ORDER BY version",
                tenant_schema::HISTORY_TABLE
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| AppliedMigration {
            version: row.get("version"),
            name: row.get("name"),
            applied_on: row.get("applied_on"),
        })
        .collect())
}

/// The newest applied version recorded in the tenant's own history (0 when none).
pub async fn applied_version(client: &Client) -> Result<i32, MigrateError> {
    if !has_history(client).await? {
        return Ok(0);
    }
    let statement = format!(
        "SELECT coalesce(max(version), 0) FROM {}",
        tenant_schema::HISTORY_TABLE
    );
    Ok(client.query_one(&statement, &[]).await?.get(0))
}

/// The migrations a process knows: the embedded tenant schema, or (in tests and tools) that plus
/// more. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Arc<Vec<Migration>>,
}

impl MigrationSet {
    /// The migrations built into this binary.
    pub fn embedded() -> Self {
        Self {
            migrations: Arc::new(tenant_schema::migrations()),
        }
    }

    /// The embedded migrations plus `extra` (`V{n}__name` and its SQL), for tests and tools.
    pub fn with_extra(extra: &[(&str, &str)]) -> Result<Self, MigrateError> {
        let mut migrations = tenant_schema::migrations();
        for (name, sql) in extra {
            migrations.push(Migration::unapplied(name, sql)?);
        }
        migrations.sort_by_key(Migration::version);
        Ok(Self {
            migrations: Arc::new(migrations),
        })
    }

    /// The newest version in the set.
    pub fn latest(&self) -> i32 {
        self.migrations
            .iter()
            .map(Migration::version)
            .max()
            .unwrap_or(0)
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    fn runner(&self) -> refinery::Runner {
        let mut runner = refinery::Runner::new(&self.migrations);
        runner.set_migration_table_name(tenant_schema::HISTORY_TABLE);
        runner
    }
}

/// Applies every pending migration of `set` up to `target` (all, when `None`) and returns the
/// version the database is at afterwards.
pub async fn migrate_to(
    client: &mut Client,
    set: &MigrationSet,
    target: Option<i32>,
    limits: MigrationLimits,
) -> Result<i32, MigrateError> {
    // One round trip: the timeouts, then the lock (its key is a constant, not input).
    client
        .batch_execute(&format!(
            "SET lock_timeout = {}; SET statement_timeout = {}; SELECT pg_advisory_lock({MIGRATION_LOCK_KEY});",
            limits.lock_timeout.as_millis(),
            limits.statement_timeout.as_millis()
        ))
        .await?;
    let result = run_locked(client, set, target).await;
    // Unlock even when the migration failed; a lost connection releases it anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let version = result?;
    unlocked?;
    Ok(version)
}

async fn run_locked(
    client: &mut Client,
    set: &MigrationSet,
    target: Option<i32>,
) -> Result<i32, MigrateError> {
    let mut runner = set.runner();
    if let Some(version) = target {
        runner = runner.set_target(refinery::Target::Version(version));
    }
    runner.run_async(client).await?;
    applied_version(client).await
}
